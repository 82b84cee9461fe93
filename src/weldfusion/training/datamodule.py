"""The LightningDataModule: the feature cache filled inside the DDP context (each rank its share),
class-balanced loaders over a run's data, standardisation statistics."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from weldfusion.data.dataset import Standardisation
from weldfusion.data.sampler import ClassBalancedBatchSampler, contrastive_ready
from weldfusion.data.samples import Sample
from weldfusion.models.cache import CachedDataset
from weldfusion.models.devices import pin_memory
from weldfusion.runs import RunData, load_standardisation, save_standardisation


def epoch_index(trainer: L.Trainer) -> int:
    """The epoch being run, as Lightning counts it for samplers (right during a resumed epoch too)."""
    return trainer.fit_loop.epoch_progress.current.processed


class WeldDataModule(L.LightningDataModule):
    """Loaders over a run's data; the standardisation statistics are fitted on train once and kept in
    RUN/standardisation.json."""

    def __init__(self, data: RunData):
        super().__init__()
        self.data = data
        self.config = data.run.config
        self.stats: Standardisation = {}

    def split(self, name: str) -> list[Sample]:
        return self.data.split(name)

    def prepare_data(self) -> None:
        path = self.data.run.paths.standardisation
        if not path.is_file():
            save_standardisation(path, self.data.features.fit_standardisation(self.split("train")))

    def setup(self, stage: str | None = None) -> None:
        """Each rank computes its share of the missing cache entries on its device; all wait for all."""
        trainer = self.trainer
        self.data.features.prepare(self.data.samples, (trainer.global_rank, trainer.world_size), trainer.strategy.root_device)
        trainer.strategy.barrier("feature cache")
        self.stats = load_standardisation(self.data.run.paths.standardisation)

    def dataset(self, samples: list[Sample]) -> CachedDataset:
        return self.data.features.dataset(samples, self.stats)

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
                          num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=pin_memory(self.trainer.strategy.root_device))  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", 0)

    def val_dataloader(self) -> DataLoader | list:
        labels = [s.label for s in self.split("val")]
        return self._loader("val", 1) if contrastive_ready(labels) else []
