"""The welder's log: `<part>.csv`, 6 channels picked by name, arc-on part resampled to 256 steps and
standardised with training-set statistics; a Transformer trained from scratch (SPEC §2-3).

Untrained features (per-modality figures, pooled anomaly scorer): no pretrained encoder exists, and
a network trained on Good welds alone would have to invent its target, so robust arc-on statistics
per channel are used: median, interquartile range, 10th and 90th percentiles and roughness (median
absolute step). They measure what the welder controls, ignore the arc-off margins and a few bad
cells, and need no labels. The token-level scorer sees windows of the log instead (an eighth of
the steps each, half overlapping): per channel their mean, standard deviation and roughness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from weldfusion.config import Config, DataConfig, SensorData, SensorEncoderConfig
from weldfusion.data.readers import Decoded, read_sensor
from weldfusion.models.cache import Entry
from weldfusion.models.encoders import SensorEncoder
from weldfusion.models.layout import TokenSet
from weldfusion.modalities.base import ModalitySpec


class Sensor(ModalitySpec):
    name = "sensor"
    extensions = (".csv",)
    data_settings = SensorData
    model_settings = SensorEncoderConfig
    standardised = True

    def channels(self, data: DataConfig, width: int) -> list[str]:
        return list(data.sensor.channels)

    def input_shape(self, data: DataConfig, transform: None) -> tuple[int, ...]:
        return (data.sensor.steps, len(data.sensor.channels))

    def read(self, files: tuple[Path, ...], data: DataConfig, transform: None) -> Decoded:
        return read_sensor(files[0], data.sensor, data.max_file_mb)

    def build_encoder(self, config: Config, weights: bool = True) -> SensorEncoder:
        return SensorEncoder(config.model.sensor, config.data.sensor.steps, len(config.data.sensor.channels))

    def encoder_dim(self, config: Config) -> int:
        return config.model.sensor.d_model

    def has_untrained(self, config: Config) -> bool:
        return True

    def untrained_features(self, tokens: torch.Tensor | None, valid: torch.Tensor | None, value: np.ndarray | None,
                           ) -> np.ndarray | None:  # fmt: skip
        return None if value is None else robust_statistics(value.astype(np.float64))

    def tokens(self, entry: Entry | None, decoded: Decoded | None) -> TokenSet | None:
        return None if decoded is None else windows(decoded.value.astype(np.float64), decoded.span)


def robust_statistics(log: np.ndarray) -> np.ndarray:
    """(steps, channels) arc-on log in raw units -> (channels * 5,) robust statistics."""
    q10, q25, q50, q75, q90 = np.percentile(log, [10, 25, 50, 75, 90], axis=0)
    roughness = np.median(np.abs(np.diff(log, axis=0)), axis=0)
    return np.concatenate([q50, q75 - q25, q10, q90, roughness])


def windows(log: np.ndarray, span: np.ndarray | None) -> TokenSet:
    """(steps, channels) arc-on log -> a token per window (an eighth of the steps, hop half of it): per
    channel the mean, std and mean absolute step; its time is the window's centre within `span`."""
    steps = len(log)
    width = max(2, steps // 8)
    starts = np.arange(0, steps - width + 1, max(1, width // 2))
    parts = np.stack([log[s : s + width] for s in starts])
    values = np.concatenate([parts.mean(1), parts.std(1), np.abs(np.diff(parts, axis=1)).mean(1)], axis=1)
    centre = (starts + width / 2) / steps
    start, end = span[0] if span is not None else (np.nan, np.nan)
    n = len(starts)
    return TokenSet(values.astype(np.float32), np.zeros(n, int), start + centre * (end - start), np.full(n, 0.5), centre, (n, 1, 1))
