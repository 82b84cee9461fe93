"""The LightningDataModule: sample tables per split, sensor statistics, feature cache, loaders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from weldfusion import MODALITIES
from weldfusion.config import Config
from weldfusion.data.dataset import WeldDataset, decode_modality
from weldfusion.data.manifest import read_manifest
from weldfusion.data.sampler import ClassBalancedBatchSampler, contrastive_ready
from weldfusion.data.samples import Sample, build_samples
from weldfusion.data.transforms import SensorStats, Transforms
from weldfusion.errors import InputError, ModalityError
from weldfusion.models.cache import CachedDataset, FeatureCache, fill_cache, frozen_modalities, open_caches


def epoch_index(trainer: L.Trainer) -> int:
    """The epoch being run, as Lightning counts it for samplers (right during a resumed epoch too)."""
    return trainer.fit_loop.epoch_progress.current.processed


def load_samples(root: Path, manifest_path: Path | None, modalities: list[str]) -> list[Sample]:
    """Usable samples of a manifest (rows with no usable modality are left out); manifest errors raise."""
    manifest = read_manifest(manifest_path or Path(root) / "manifest.csv")
    manifest.raise_errors()
    samples, _ = build_samples(Path(root), manifest, tuple(MODALITIES))
    usable = [s for s in samples if any(s.available(m) for m in modalities)]
    if not usable:
        raise InputError(f"{manifest.path}: no usable weld under {root} (every modality of every row is missing or "
                         "unreadable); run `weldfusion data check` for the details")  # fmt: skip
    return usable


def fit_sensor_stats(samples: list[Sample], config: Config, transforms: Transforms) -> SensorStats:
    logs = []
    for sample in samples:
        if sample.available("sensor"):
            try:
                logs.append(decode_modality(sample, "sensor", config, transforms).value)
            except ModalityError:
                continue
    return SensorStats.fit(config.data.sensor.channels, logs)


class WeldDataModule(L.LightningDataModule):
    def __init__(self, samples: list[Sample], config: Config, transforms: Transforms, stats_path: Path,
                 progress: Callable[[str, int, int], None] | None = None):  # fmt: skip
        super().__init__()
        self.samples = samples
        self.config = config
        self.transforms = transforms
        self.stats_path = stats_path
        self.progress = progress
        self.cached = frozen_modalities(config)
        self.live = [m for m in config.model.modalities if m not in self.cached]
        self.caches: dict[str, FeatureCache] = {}
        self.sensor_stats: SensorStats | None = None

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def prepare_data(self) -> None:
        """Once per node: fill the feature cache of every split, fit the sensor statistics on train."""
        caches = open_caches(self.config, self.transforms, self.cached)
        fill_cache(self.samples, self.config, self.transforms, caches, progress=self.progress)
        if "sensor" in self.config.model.modalities and not self.stats_path.is_file():
            fit_sensor_stats(self.split("train"), self.config, self.transforms).save(self.stats_path)

    def setup(self, stage: str | None = None) -> None:
        self.caches = open_caches(self.config, self.transforms, self.cached)
        if "sensor" in self.config.model.modalities:
            self.sensor_stats = SensorStats.load(self.stats_path)

    def dataset(self, samples: list[Sample]) -> CachedDataset:
        live = WeldDataset(samples, self.live, self.config, self.transforms, self.sensor_stats)
        return CachedDataset(live, self.caches)

    def _sampler(self, name: str, seed_offset: int) -> ClassBalancedBatchSampler:
        t, trainer = self.config.train, self.trainer
        sampler = ClassBalancedBatchSampler([s.label for s in self.split(name)], t.batch_size, t.samples_per_class,
                                            seed=self.config.seed + seed_offset,
                                            rank=trainer.global_rank if trainer else 0,
                                            world_size=trainer.world_size if trainer else 1)  # fmt: skip
        # Lightning creates the first iterator before it sets the epoch; after a resume the restored
        # epoch is already known here, so the first epoch's batch plan is the right one.
        sampler.set_epoch(epoch_index(trainer) if trainer else 0)
        return sampler

    def steps_per_epoch(self) -> int:
        """Training steps of one epoch on this rank, without creating a loader iterator (which would
        fix the first epoch's batch plan before a resumed run has restored its epoch)."""
        return len(self._sampler("train", 0))

    def _loader(self, name: str, seed_offset: int) -> DataLoader:
        workers = self.config.data.num_workers
        return DataLoader(self.dataset(self.split(name)), batch_sampler=self._sampler(name, seed_offset),
                          num_workers=workers, persistent_workers=workers > 0)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", 0)

    def val_dataloader(self) -> DataLoader | list:
        labels = [s.label for s in self.split("val")]
        return self._loader("val", 1) if contrastive_ready(labels) else []


def require_contrastive(samples: list[Sample], split: str, manifest: Path) -> None:
    """Refuse supervised training on a split that cannot make SupCon batches, and say what to do."""
    labels = [s.label for s in samples if s.split == split]
    if not contrastive_ready(labels):
        classes = len(set(labels))
        raise InputError(
            f"{manifest}: the {split} split ({len(labels)} usable welds, {classes} class{'es' if classes != 1 else ''}) "
            "cannot train supervised contrastive learning, which needs at least 2 classes with at least 2 welds each "
            "(every batch would hold one class and the loss would be a constant such as log(31)). If this is the "
            "dataset's official split (TRAIN = Good only), use `--protocol anomaly`; to train the classifier, write a "
            "labelled session-disjoint split with `weldfusion data split ROOT --out split.csv` and pass `--manifest split.csv`."
        )
