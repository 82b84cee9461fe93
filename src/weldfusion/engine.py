"""Fitting a run: the steps every protocol shares, in the order that refuses before writing.

lock the run folder -> plan the run (or reopen it for --resume) -> read its data -> let the protocol
check that the data suits it and compute the features it needs up front -> write config.yaml and
run.json -> fit -> save. A new run that fails before it has a checkpoint or a model is removed again,
so the folder can be reused. Features are computed on the device of `accelerator` (classify fills the
cache inside training, where DDP ranks share the work).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from weldfusion.config import Config
from weldfusion.data.check import CheckReport, check_dataset
from weldfusion.features import build_transforms
from weldfusion.models.devices import resolve_device
from weldfusion.protocols.base import DefectProtocol
from weldfusion.registry import MODALITIES, PROTOCOLS
from weldfusion.runs import discard_run, load_run_data, locked, new_run, resume_run, wait_for_run, write_run


def fit_run(out: Path, root: Path | None = None, config: Config | None = None, manifest: Path | None = None, *,
            resume: bool = False, overrides: list[str] | None = None, protocol: str | None = None,
            say: Callable[[str], None] = print, progress: Callable[[str, int, int], None] | None = None,
            accelerator: str = "auto", devices: int = 1, **fit_options: object) -> DefectProtocol:  # fmt: skip
    """Fit `config.protocol` on the data under `root` into the new run folder `out`; or, with `resume`,
    continue the run in `out` (`overrides` may extend it; `protocol`, if given, must be the run's).
    `accelerator` and `devices` choose where features are computed and training runs; they and
    `fit_options` go to the protocol's fit (num_nodes, debug, progress_bar)."""
    device = resolve_device(accelerator, devices)
    fit_options.update(accelerator=accelerator, devices=devices)
    if secondary_process():  # launched for another device: rank 0 plans and writes the run
        run = wait_for_run(out)
        fitted = PROTOCOLS.get(run.protocol)()
        fitted.fit(load_run_data(run, device=device, prepare=False), say=say, resume=resume, **fit_options)
        return fitted
    with locked(Path(out)):
        if resume:
            run = resume_run(out, overrides or [], protocol)
        else:
            if config is None or root is None:
                raise ValueError("a new run needs the dataset root and a config")
            run = new_run(out, config, Path(root), Path(manifest or Path(root) / "manifest.csv"))
        data = load_run_data(run, progress=progress, device=device, prepare=False)
        fitted = PROTOCOLS.get(run.protocol)()
        fitted.check(data, resume=resume)
        fitted.prepare(data)
        write_run(run)
        try:
            fitted.fit(data, say=say, resume=resume, **fit_options)
        except BaseException:
            if not resume:
                discard_run(run)
            raise
        fitted.save(run.paths.model)
    return fitted


def check_data(root: Path, config: Config, manifest: Path | None = None, deep: bool = True) -> CheckReport:
    """`weldfusion data check`: every registered modality probed with this configuration's readers."""
    transforms = build_transforms(config, MODALITIES.names()) if deep else {}
    return check_dataset(Path(root), config.data, transforms, manifest, deep)


def secondary_process() -> bool:
    """A process that a launcher (Lightning's DDP, torchrun, SLURM) started besides global rank 0."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name]) > 0
    return int(os.environ.get("NODE_RANK", "0")) > 0 or int(os.environ.get("LOCAL_RANK", "0")) > 0
