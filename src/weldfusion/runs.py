"""The run folder (SPEC §10): its layout, `run.json`, creating, opening, resuming and locking a run.

A run folder holds one protocol. Creating one refuses, before writing anything, a folder that holds
another run; a lock (`RUN/.lock`) makes a second process writing the same run refuse with one line.
`RunData` is a run's data: its usable welds by split and the feature source that reads them. This
module imports no training code, so `predict` and `evaluate` never load Lightning.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from filelock import FileLock, Timeout

from weldfusion import __version__
from weldfusion.config import Config, load_config, save_config
from weldfusion.data.dataset import Standardisation
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import Sample, build_samples
from weldfusion.data.transforms import ChannelStats
from weldfusion.errors import InputError
from weldfusion.features import FeatureSource
from weldfusion.io import write_json_atomic
from weldfusion.models.backbones import digest

FORMAT = 1
# `--set` keys that a resumed run may change: they extend or pace the run, never its results so far
RESUMABLE = ("train.epochs", "train.patience", "data.num_workers", "train.debug_batches")


class RunPaths:
    """The run folder layout of SPEC §10."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"
        self.run_info = self.root / "run.json"
        self.checkpoints = self.root / "checkpoints"
        self.model = self.root / "model"
        self.logs = self.root / "logs"
        self.standardisation = self.root / "standardisation.json"

    def eval(self, split: str) -> Path:
        return self.root / "eval" / split


@dataclass
class Run:
    paths: RunPaths
    config: Config
    protocol: str
    data_root: Path
    manifest: Path


def read_info(paths: RunPaths) -> dict:
    try:
        info = json.loads(paths.run_info.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{paths.root}: not a weldfusion run folder (run.json missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{paths.run_info}: damaged ({exc.__class__.__name__}); the run folder cannot be used") from None
    if not isinstance(info, dict) or not {"data_root", "manifest", "protocol"} <= set(info):
        raise InputError(f"{paths.run_info}: not a weldfusion run.json (needs data_root, manifest, protocol)")
    return info


def open_run(run: Path) -> Run:
    paths = RunPaths(Path(run))
    info = read_info(paths)
    if not paths.config.is_file():
        raise InputError(f"{paths.root}: not a weldfusion run folder (config.yaml missing)")
    config = load_config(str(paths.config))
    return Run(paths, config, info["protocol"], Path(info["data_root"]), Path(info["manifest"]))


def new_run(out: Path, config: Config, data_root: Path, manifest: Path) -> Run:
    """A run for `config.protocol` in `out`, not written yet (`write_run`); refuses a folder that holds a run."""
    paths = RunPaths(Path(out))
    if paths.root.exists() and not paths.root.is_dir():
        raise InputError(f"{paths.root}: exists and is not a folder; choose another --out")
    if paths.run_info.exists() or paths.config.exists():
        raise InputError(f"{paths.root}: already holds a run; use --resume to continue it or choose another --out")
    return Run(paths, config, config.protocol, Path(data_root).resolve(), Path(manifest).resolve())


def discard_run(run: Run) -> None:
    """Undo `write_run` for a new run that failed before producing a checkpoint or a model."""
    if not (run.paths.checkpoints.exists() or run.paths.model.exists()):
        for path in (run.paths.config, run.paths.run_info, run.paths.standardisation):
            path.unlink(missing_ok=True)
        shutil.rmtree(run.paths.logs, ignore_errors=True)


def wait_for_run(out: Path, timeout: float = 3600.0) -> Run:
    """The run that another process (DDP rank 0) is writing: wait until its run.json exists."""
    deadline = time.monotonic() + timeout
    while not RunPaths(Path(out)).run_info.is_file():
        if time.monotonic() > deadline:
            raise InputError(f"{out}: rank 0 did not write run.json within {timeout:.0f} s")
        time.sleep(1.0)
    return open_run(out)


def write_run(run: Run) -> None:
    run.paths.root.mkdir(parents=True, exist_ok=True)
    save_config(run.config, run.paths.config)
    write_json_atomic(run.paths.run_info, {"format": FORMAT, "protocol": run.protocol, "data_root": str(run.data_root),
                                           "manifest": str(run.manifest), "weldfusion": __version__})  # fmt: skip


def resume_run(out: Path, overrides: list[str], protocol: str | None = None) -> Run:
    """The run in `out` with its saved configuration; only `RESUMABLE` keys may be changed."""
    if not RunPaths(Path(out)).run_info.is_file():
        raise InputError(f"{out}: not a weldfusion run folder (run.json missing); nothing to resume")
    run = open_run(out)
    if protocol and protocol != run.protocol:
        raise InputError(f"{run.paths.root}: holds a {run.protocol} run; it cannot be resumed as {protocol}")
    refused = [item.partition("=")[0].strip() for item in overrides if item.partition("=")[0].strip() not in RESUMABLE]
    if refused:
        raise InputError(f"--set {refused[0]}: cannot change on --resume (the run's results so far depend on it); "
                         f"allowed: {', '.join(RESUMABLE)}; start a new run for other changes")  # fmt: skip
    if overrides:
        run.config = run.config.copy_with(overrides)  # saved by the caller once the resume is accepted
    return run


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold `folder/.lock` (a run folder, or one of its eval/<split> folders); a second writer refuses at
    once with one line. A folder made only for the lock is removed again if nothing else was written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder; choose another --out")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(f"{folder}: in use by another weldfusion process (lock {path}); wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()
        if created and [p.name for p in folder.iterdir()] == [path.name]:
            path.unlink()
            folder.rmdir()


@dataclass
class RunData:
    """A run's data: usable welds by split, what was skipped and why, and the feature source."""

    run: Run
    root: Path
    samples: list[Sample]
    skipped: dict[str, str]
    features: FeatureSource
    fingerprint: str = ""

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]


def load_run_data(run: Run, data_root: Path | None = None, progress: Callable | None = None,
                  device: torch.device | None = None, prepare: bool = True) -> RunData:  # fmt: skip
    """The run's manifest (or `data_root`'s manifest.csv), its usable welds, and their feature source
    on `device` (default: a GPU when there is one), its cache filled when `prepare`."""
    root = Path(data_root) if data_root else run.data_root
    manifest_path = root / "manifest.csv" if data_root else run.manifest
    manifest = read_manifest(manifest_path)
    manifest.raise_errors()
    samples, problems = build_samples(root, manifest)
    skipped = {p.sample: p.problem for p in problems if p.modality is None and p.sample}
    modalities = run.config.model.modalities
    usable = []
    for sample in samples:
        if any(sample.available(m) for m in modalities):
            usable.append(sample)
        else:
            skipped.setdefault(sample.key, "no usable modality: " + "; ".join(f"{m}: {sample.missing.get(m, '?')}" for m in modalities))
    if not usable:
        raise InputError(f"{manifest_path}: no usable weld under {root} (every modality of every row is missing or "
                         "unreadable); run `weldfusion data check` for the details")  # fmt: skip
    features = FeatureSource(run.config, device=device, progress=progress)
    if prepare:
        features.prepare(usable)
    return RunData(run, root, usable, skipped, features, data_fingerprint(manifest_path, usable))


def save_standardisation(path: Path, stats: Standardisation) -> None:
    write_json_atomic(path, {m: s.to_dict() for m, s in stats.items()})


def load_standardisation(path: Path) -> Standardisation:
    if not path.is_file():
        return {}
    try:
        return {m: ChannelStats.from_dict(v) for m, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: damaged ({exc.__class__.__name__}); refit the run") from None


def data_fingerprint(manifest: Path, samples: list[Sample]) -> str:
    """The manifest's bytes and every sample's file names and sizes (cheap: no media is read)."""
    files = [(s.key, [(p.name, p.stat().st_size) for ps in s.files.values() for p in ps]) for s in samples]
    return digest({"manifest": manifest.read_bytes().decode("utf-8", "replace"), "files": files})
