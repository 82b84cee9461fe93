"""A window's tokens: the run's frozen encoders (video, audio) on the window, or statistics of the
sensor rows in it, standardised with the run's sensor channel statistics.

Video frames are resized on arrival with the run's own transform (`ResizeCrop.frame`), sampled evenly
over the window and normalised as the encoder's checkpoint wants; audio windows get AST's fbank of the
window (padded as AST pads; tokens over the padding are dropped). Each window's token grid (time x
height x width) is average-pooled to at most `monitor.<modality>.pool`. Sensor windows give one token per
window: per channel the mean, std, minimum, maximum and mean absolute step of the standardised rows.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from weldfusion.config import Config
from weldfusion.data.readers import evenly_spaced
from weldfusion.data.transforms import AudioTransform, ChannelStats, ResizeCrop, one_torch_thread
from weldfusion.features import build_transforms
from weldfusion.models.encoders import pool_grid
from weldfusion.registry import MODALITIES


class WindowEncoder:
    """Window data -> (n, D) float32 tokens for each monitored modality."""

    def __init__(self, config: Config, modalities: list[str], stats: ChannelStats | None, device: torch.device):
        self.config, self.modalities, self.stats, self.device = config, modalities, stats, device
        transforms = build_transforms(config, [m for m in modalities if m != "sensor"])
        self.video: ResizeCrop | None = transforms.get("video")
        self.audio: AudioTransform | None = None
        if "audio" in transforms:
            self.audio = copy.copy(transforms["audio"])
            self.audio.clips = 1  # one clip: the window itself
        self.encoders = {m: MODALITIES.get(m).build_encoder(config).to(device).eval() for m in modalities if m != "sensor"}
        if "sensor" in modalities and stats is None:
            raise ValueError("the sensor windows need the run's sensor channel statistics")

    @property
    def sample_rate(self) -> int:
        return self.config.data.audio.sample_rate

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        """One arriving video frame (H, W, 3) uint8 RGB or (H, W) grey -> the encoder's frame size, uint8 RGB."""
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"frame shape: {rgb.shape} is not an (H, W, 3) RGB or (H, W) grey image")
        return self.video.frame(np.ascontiguousarray(rgb, dtype=np.uint8))  # type: ignore[union-attr]

    def row(self, values: np.ndarray) -> np.ndarray:
        """One sensor row (channels,) -> standardised float32."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if len(values) != len(self.stats.channels):  # type: ignore[union-attr]
            raise ValueError(f"row width: {len(values)} values, expected {len(self.stats.channels)} ({', '.join(self.stats.channels)})")  # type: ignore[union-attr]
        if not np.isfinite(values).all():
            raise ValueError("row values: non-finite value in a sensor row")
        return self.stats.apply(values)  # type: ignore[union-attr]

    def tokens(self, modality: str, data: np.ndarray) -> np.ndarray:
        """One window's tokens. On the CPU torch runs one thread: a window is a few milliseconds of work,
        which torch's thread pool slows down when other processes hold the cores."""
        if modality == "sensor":
            return sensor_token(data)[None]
        if self.device.type != "cpu":
            return self._encode(modality, data)
        with one_torch_thread():
            return self._encode(modality, data)

    @torch.inference_mode()
    def _encode(self, modality: str, data: np.ndarray) -> np.ndarray:
        if modality == "sensor":
            return sensor_token(data)[None]
        encoder, covered = self.encoders[modality], 1.0
        if modality == "video":
            frames = data[evenly_spaced(len(data), self.config.monitor.video.frames)]
            x = torch.from_numpy(self.video.normalise(frames))[None]  # type: ignore[union-attr]
        else:
            x = torch.from_numpy(self.audio(data))[None]  # type: ignore[misc]
            covered = min(len(data) / self.audio.window, 1.0)  # type: ignore[union-attr]
        tokens, _ = encoder(x.to(self.device), torch.ones(1, 1, dtype=torch.bool, device=self.device))
        grid = tokens.reshape(1, *encoder.grid, tokens.shape[-1])[:, : math.ceil(encoder.grid[0] * covered)]
        pooled = pool_grid(grid, self.config.monitor.window(modality).pool)
        return pooled.reshape(-1, pooled.shape[-1]).float().cpu().numpy()


def sensor_token(rows: np.ndarray) -> np.ndarray:
    """(n, channels) standardised rows -> (5 * channels,) window statistics."""
    steps = np.abs(np.diff(rows, axis=0)).mean(axis=0) if len(rows) > 1 else np.zeros(rows.shape[1])
    return np.concatenate([rows.mean(0), rows.std(0), rows.min(0), rows.max(0), steps]).astype(np.float32)
