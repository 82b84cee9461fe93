"""Class-balanced batches for SupCon: P classes x K welds per batch, every weld seen each epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from weldfusion.errors import InputError


def contrastive_ready(labels: Sequence[int]) -> bool:
    """At least two classes with at least two welds: the minimum for a positive and a negative pair."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int((counts >= 2).sum()) >= 2


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of `batch_size` indices drawn as P = batch_size // K classes with K (or K+1) welds each.

    Each epoch every weld is drawn at least once: batches take the classes with the most welds
    not yet drawn this epoch; when a chosen class has no undrawn weld left, it is topped up with
    re-drawn welds of that class (reported as `redrawn`). The epoch's plan depends only on
    (seed, epoch), so resuming at an epoch reproduces it; call `set_epoch` before each epoch.
    Under DDP every rank computes the same plan and takes every `world_size`-th batch (the plan
    is padded by wrapping around so that all ranks run the same number of steps).
    """

    def __init__(self, labels: Sequence[int], batch_size: int, samples_per_class: int = 4, seed: int = 0,
                 rank: int = 0, world_size: int = 1):  # fmt: skip
        self.labels = np.asarray(labels, dtype=int)
        if not contrastive_ready(self.labels):
            raise InputError("the training split cannot form contrastive batches: it needs at least 2 classes with at "
                             "least 2 welds each")  # fmt: skip
        if batch_size < 4 or samples_per_class < 2:
            raise InputError(f"batch size {batch_size} / samples per class {samples_per_class}: need >= 4 and >= 2")
        self.classes = np.unique(self.labels)
        self.k = min(samples_per_class, batch_size // 2)
        self.p = min(batch_size // self.k, len(self.classes))
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._plan: tuple[int, list[list[int]], int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> ClassBalancedBatchSampler:
        """Lightning sets each epoch (also the first one after a resume) through `batch_sampler.sampler.set_epoch`."""
        return self

    def describe(self) -> str:
        batches, redrawn = len(self.plan()[0]), self.plan()[1]
        return (f"{self.p} classes x {self.k}+ welds per batch of {self.batch_size}; {batches} batches cover all "
                f"{len(self.labels)} welds each epoch ({redrawn} re-drawn to fill batches)")  # fmt: skip

    def plan(self) -> tuple[list[list[int]], int]:
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, *self._make_plan())
        return self._plan[1], self._plan[2]

    def _make_plan(self) -> tuple[list[list[int]], int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        members = {c: rng.permutation(np.flatnonzero(self.labels == c)).tolist() for c in self.classes}
        unused = {c: list(members[c]) for c in self.classes}
        batches: list[list[int]] = []
        redrawn = 0
        while any(unused.values()):
            order = rng.permutation(self.classes)  # random tie-break, then most undrawn first
            chosen = sorted(order, key=lambda c: -len(unused[c]))[: self.p]
            batch: list[int] = []
            for c, want in zip(chosen, self._sizes(chosen)):
                take = unused[c][:want]
                del unused[c][:want]
                if len(take) < want:
                    pool = [j for j in members[c] if j not in take]
                    fill = rng.choice(pool, size=want - len(take), replace=False).tolist()
                    take += fill
                    redrawn += len(fill)
                batch += take
            batches.append([int(j) for j in rng.permutation(batch)])
        return batches, redrawn

    def _sizes(self, chosen: list[int]) -> list[int]:
        """K per class (capped by the class size), the rest of the batch spread over classes with room."""
        room = [int((self.labels == c).sum()) for c in chosen]
        sizes = [min(self.k, r) for r in room]
        while sum(sizes) < self.batch_size and any(s < r for s, r in zip(sizes, room)):
            for i in range(len(sizes)):
                if sizes[i] < room[i] and sum(sizes) < self.batch_size:
                    sizes[i] += 1
        return sizes

    def _shard(self) -> list[list[int]]:
        batches = self.plan()[0]
        per_rank = -(-len(batches) // self.world_size)
        padded = [batches[i % len(batches)] for i in range(per_rank * self.world_size)]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())
