"""Fitting a run: the steps every protocol shares, in the order that refuses before writing.

plan (or reopen) the run folder -> lock it -> read its data and fill the feature cache -> let the
protocol check that the data suits it -> write config.yaml and run.json -> fit -> save.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from weldfusion.config import Config
from weldfusion.protocols.base import DefectProtocol
from weldfusion.runs import load_run_data
from weldfusion.registry import PROTOCOLS
from weldfusion.runs import Run, locked, new_run, open_run, resume_run, write_run


def fit_run(out: Path, root: Path | None = None, config: Config | None = None, manifest: Path | None = None, *,
            resume: bool = False, overrides: list[str] | None = None, protocol: str | None = None,
            say: Callable[[str], None] = print, progress: Callable[[str, int, int], None] | None = None,
            device: str = "cpu", **fit_options: object) -> DefectProtocol:  # fmt: skip
    """Fit `config.protocol` on the data under `root` into the new run folder `out`; or, with `resume`,
    continue the run in `out` (`overrides` may extend it; `protocol`, if given, must be the run's).
    `fit_options` go to the protocol's fit (devices, num_nodes, accelerator, debug, progress_bar)."""
    if _ddp_child():  # a process Lightning launched for another device: rank 0 has planned and written the run
        return _fit_child(open_run(out), resume, say, fit_options)
    if resume:
        run = resume_run(out, overrides or [], protocol)
    else:
        if config is None or root is None:
            raise ValueError("a new run needs the dataset root and a config")
        run = new_run(out, config, Path(root), Path(manifest or Path(root) / "manifest.csv"))
    return _fit(run, resume, say, progress, device, fit_options)


def _ddp_child() -> bool:
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def _fit_child(run: Run, resume: bool, say: Callable[[str], None], fit_options: dict) -> DefectProtocol:
    """Rank > 0 under DDP: no lock (rank 0 holds it), no check, nothing written but what training shares."""
    fitted = PROTOCOLS.get(run.protocol)()
    fitted.fit(load_run_data(run, prepare=False), say=say, resume=resume, **fit_options)
    return fitted


def _fit(run: Run, resume: bool, say: Callable[[str], None], progress: Callable | None, device: str,
         fit_options: dict) -> DefectProtocol:  # fmt: skip
    with locked(run.paths):
        data = load_run_data(run, progress=progress, device=device)
        fitted = PROTOCOLS.get(run.protocol)()
        fitted.check(data, resume=resume)
        if not resume:
            write_run(run)
        fitted.fit(data, say=say, resume=resume, **fit_options)
        fitted.save(run.paths.model)
    return fitted
