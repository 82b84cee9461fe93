"""What every evaluation needs: the run, its configuration, the data and the feature cache."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from weldfusion import MODALITIES
from weldfusion.config import Config, load_config
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import Sample, build_samples
from weldfusion.data.transforms import Transforms
from weldfusion.errors import InputError
from weldfusion.models.cache import FeatureCache, fill_cache, frozen_modalities, open_caches
from weldfusion.models.preprocessing import build_transforms
from weldfusion.training.run import RunPaths, data_fingerprint


@dataclass
class EvalContext:
    paths: RunPaths
    config: Config
    info: dict  # run.json: data_root, manifest, protocol
    root: Path
    manifest: Path
    samples: list[Sample]  # usable ones
    skipped: dict[str, str]  # SUBDIRS -> why the weld is left out
    transforms: Transforms
    caches: dict[str, FeatureCache] = field(default_factory=dict)
    fingerprint: str = ""

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]


def open_run(run: Path) -> tuple[RunPaths, Config, dict]:
    paths = RunPaths(Path(run))
    if not paths.config.is_file() or not paths.run_info.is_file():
        raise InputError(f"{paths.root}: not a weldfusion run folder (config.yaml / run.json missing)")
    info = json.loads(paths.run_info.read_text(encoding="utf-8"))
    return paths, load_config(str(paths.config)), info


def open_context(run: Path, data_root: Path | None = None, progress=None) -> EvalContext:
    """The run's data (or `data_root`'s manifest.csv), its usable welds, and a filled feature cache."""
    paths, config, info = open_run(run)
    root = Path(data_root) if data_root else Path(info["data_root"])
    manifest_path = root / "manifest.csv" if data_root else Path(info["manifest"])
    manifest = read_manifest(manifest_path)
    manifest.raise_errors()
    samples, problems = build_samples(root, manifest, MODALITIES)
    skipped = {p.sample: p.problem for p in problems if p.modality is None and p.sample}
    modalities = config.model.modalities
    usable = []
    for sample in samples:
        if any(sample.available(m) for m in modalities):
            usable.append(sample)
        else:
            skipped.setdefault(sample.key, "no usable modality: " + "; ".join(f"{m}: {sample.missing.get(m, '?')}" for m in modalities))
    transforms = build_transforms(config)
    caches = open_caches(config, transforms, frozen_modalities(config))
    fill_cache(usable, config, transforms, caches, progress=progress)
    return EvalContext(paths, config, info, root, manifest_path, usable, skipped, transforms, caches,
                       data_fingerprint(manifest_path, usable))  # fmt: skip
