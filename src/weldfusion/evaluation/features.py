"""Each modality on its own, without training: what the per-modality figures and the anomaly
protocol are computed from.

- video, images, audio: the frozen encoder's tokens from the feature cache, pooled over the valid
  tokens as mean and standard deviation (the spread keeps local events such as sparks, pores or
  pops that a mean alone averages away); meaningful without any label.
- sensor: no pretrained encoder exists, and a network trained on Good welds alone would have to
  invent its target. Robust arc-on statistics per channel are used instead: median, interquartile
  range, 10th and 90th percentiles and roughness (median absolute step) of the arc-on part of the
  log. They measure exactly what the welder controls (current, voltage, wire feed, gas flow), are
  insensitive to the arc-off margins and to a few bad cells, and need no labels.
All features are standardised with the reference set's mean and std before any distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from weldfusion.config import Config
from weldfusion.data.dataset import decode_modality
from weldfusion.data.samples import Sample
from weldfusion.data.transforms import Transforms
from weldfusion.errors import ModalityError
from weldfusion.models.cache import FeatureCache

SENSOR_STATISTICS = ("median", "iqr", "p10", "p90", "roughness")


@dataclass
class Features:
    values: np.ndarray  # (N, D); rows of unavailable samples are NaN
    available: np.ndarray  # (N,) bool


def pool_statistics(tokens: torch.Tensor, valid: torch.Tensor) -> np.ndarray | None:
    """(N, D) tokens of one weld -> (2D,) mean and std over its valid tokens; None if none is valid."""
    if not valid.any():
        return None
    kept = tokens[valid].float()
    return torch.cat([kept.mean(0), kept.std(0, unbiased=False)]).numpy().astype(np.float64)


def stack(rows: list[np.ndarray | None]) -> Features:
    width = next((r.shape[0] for r in rows if r is not None), 1)
    values = np.stack([r if r is not None else np.full(width, np.nan) for r in rows])
    return Features(values, np.array([r is not None for r in rows], bool))


def pooled(samples: list[Sample], cache: FeatureCache) -> Features:
    return stack([pool_statistics(*cache.load(sample)[:2]) for sample in samples])


def sensor_statistics(log: np.ndarray) -> np.ndarray:
    """(steps, channels) arc-on log -> (channels * 5,) robust statistics."""
    q10, q25, q50, q75, q90 = np.percentile(log, [10, 25, 50, 75, 90], axis=0)
    roughness = np.median(np.abs(np.diff(log, axis=0)), axis=0)
    return np.concatenate([q50, q75 - q25, q10, q90, roughness])


def sensor(samples: list[Sample], config: Config, transforms: Transforms) -> Features:
    rows: list[np.ndarray | None] = []
    for sample in samples:
        try:
            if not sample.available("sensor"):
                raise ModalityError(sample.folder, "missing")
            rows.append(sensor_statistics(decode_modality(sample, "sensor", config, transforms).value.astype(np.float64)))
        except ModalityError:
            rows.append(None)
    return stack(rows)


def modality_features(samples: list[Sample], modality: str, caches: dict[str, FeatureCache], config: Config,
                      transforms: Transforms) -> Features:  # fmt: skip
    if modality == "sensor":
        return sensor(samples, config, transforms)
    return pooled(samples, caches[modality])


def standardise(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """z-score every array with the reference rows' (finite) mean and std."""
    mean = np.nanmean(reference, axis=0)
    std = np.nanstd(reference, axis=0)
    std[~np.isfinite(std) | (std < 1e-8)] = 1.0
    return [(a - mean) / std for a in (reference, *others)]
