"""The one feature path: what fit, evaluate, predict (and later streaming) feed the protocols.

A `FeatureSource` gives, for any list of welds, the same items whether they come from the feature
cache (a dataset's welds) or are computed live (weld folders given to `predict`): the frozen
encoders' tokens are produced by the same `fill_cache` (same preprocessing, batching, autocast and
dtype) into the on-disk cache or into memory, and the modalities computed every time (trainable
encoders, the sensor log) are decoded by the same `WeldDataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from weldfusion.config import Config
from weldfusion.data.dataset import Standardisation, Transforms, WeldDataset, decode_modality
from weldfusion.data.readers import Decoded
from weldfusion.data.samples import Sample
from weldfusion.data.transforms import ChannelStats
from weldfusion.errors import ModalityError
from weldfusion.models.cache import CachedDataset, fill_cache, frozen_modalities, open_stores
from weldfusion.models.devices import resolve_device
from weldfusion.models.layout import TokenSet
from weldfusion.registry import MODALITIES


def build_transforms(config: Config, modalities: list[str] | tuple[str, ...] | None = None) -> Transforms:
    """Each modality's preprocessing for this configuration (the checkpoints' processor settings)."""
    return {m: MODALITIES.get(m).build_transform(config) for m in modalities or config.model.modalities}


@dataclass
class Features:
    """One modality's untrained representation of a list of welds."""

    values: np.ndarray  # (N, D); rows of unavailable welds are NaN
    available: np.ndarray  # (N,) bool
    reasons: list[str]  # why each unavailable weld has no representation ("" where available)


def stack(rows: list[np.ndarray | None], reasons: list[str]) -> Features:
    width = next((r.shape[0] for r in rows if r is not None), 1)
    values = np.stack([r if r is not None else np.full(width, np.nan) for r in rows]) if rows else np.zeros((0, width))
    return Features(values, np.array([r is not None for r in rows], bool),
                    [why if r is None else "" for r, why in zip(rows, reasons)])  # fmt: skip


class FeatureSource:
    """Items and untrained features of welds for one configuration; `persistent=False` keeps the
    frozen encoders' outputs in memory instead of the on-disk cache. `device` is where the frozen
    encoders run and where protocols put their models (default: a GPU when there is one)."""

    def __init__(self, config: Config, persistent: bool = True, device: torch.device | str | None = None,
                 progress: Callable[[str, int, int], None] | None = None):  # fmt: skip
        self.config = config
        self.transforms = build_transforms(config)
        self.stores = open_stores(config, self.transforms, persistent)
        self.frozen = frozen_modalities(config)
        self.live = [m for m in config.model.modalities if m not in self.frozen]
        self.device = resolve_device() if device is None else torch.device(device)
        self.progress = progress

    def prepare(self, samples: list[Sample], shard: tuple[int, int] = (0, 1), device: torch.device | None = None,
                ) -> dict[str, int]:  # fmt: skip
        """Compute the frozen encoders' outputs that are not stored yet (of this process's `shard`,
        on `device` or the source's own)."""
        return fill_cache(samples, self.config, self.transforms, self.stores, device or self.device, self.progress,
                          shard=shard)  # fmt: skip

    def dataset(self, samples: list[Sample], stats: Standardisation | None = None) -> CachedDataset:
        """Model inputs: stored tokens of the frozen modalities, decoded inputs of the others."""
        return CachedDataset(WeldDataset(samples, self.live, self.config.data, self.transforms, stats), self.stores)

    def fit_standardisation(self, samples: list[Sample]) -> Standardisation:
        """Per-channel statistics of the standardised modalities over `samples` (the train split)."""
        out = {}
        for modality in self.config.model.modalities:
            spec = MODALITIES.get(modality)
            if spec.standardised:
                values = [d.value for d, _ in self._decoded(samples, modality) if d is not None]
                channels = spec.channels(self.config.data, values[0].shape[-1]) if values else []
                out[modality] = ChannelStats.fit(channels, values, f"{modality} data")
        return out

    def untrained(self, samples: list[Sample], modality: str) -> Features:
        """Each weld's representation without training (mean/std of frozen tokens, or the spec's own)."""
        spec = MODALITIES.get(modality)
        if modality in self.stores:
            entries = [self.stores[modality].load(s) for s in samples]
            rows = [spec.untrained_features(e.tokens, e.valid, None) for e in entries]
            return stack(rows, [e.problem or "no valid token" for e in entries])
        decoded = self._decoded(samples, modality)
        return stack([spec.untrained_features(None, None, d.value if d else None) for d, _ in decoded], [why for _, why in decoded])

    def tokens(self, samples: list[Sample], modality: str) -> tuple[list[TokenSet | None], list[str]]:
        """Each weld's tokens of `modality` with their places (None where unusable), and why not."""
        spec = MODALITIES.get(modality)
        if modality in self.stores:
            entries = [self.stores[modality].load(s) for s in samples]
            sets = [spec.tokens(e, None) for e in entries]
            return sets, ["" if t is not None else e.problem or "no valid token" for t, e in zip(sets, entries)]
        decoded = self._decoded(samples, modality)
        return [spec.tokens(None, d) if d else None for d, _ in decoded], [why for _, why in decoded]

    def _decoded(self, samples: list[Sample], modality: str) -> list[tuple[Decoded | None, str]]:
        out: list[tuple[Decoded | None, str]] = []
        for sample in samples:
            try:
                if not sample.available(modality):
                    raise ModalityError(sample.folder, sample.missing.get(modality, "not available"))
                out.append((decode_modality(sample, modality, self.config.data, self.transforms), ""))
            except ModalityError as exc:
                out.append((None, str(exc)))
        return out


def standardise(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """z-score every array with the reference rows' (finite) mean and std."""
    mean = np.nanmean(reference, axis=0)
    std = np.nanstd(reference, axis=0)
    std[~np.isfinite(std) | (std < 1e-8)] = 1.0
    return [(a - mean) / std for a in (reference, *others)]
