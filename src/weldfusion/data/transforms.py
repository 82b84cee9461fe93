"""Encoder-specific preprocessing: decoded arrays -> the tensors an encoder expects (SPEC §2).

- video: V-JEPA 2's video processor steps (its transformers class needs torchvision, which we do
  not use): resize the shortest edge to crop*256/224, centre crop, /255, mean/std.
- images: DINOv2's own image processor from transformers (`BitImageProcessorPil`), after blanking
  the paper-tag box when configured.
- audio: AST's own feature extractor (`ASTFeatureExtractor`, log-mel fbank, its mean/std),
  applied to clips spread evenly over the recording.
- sensor: per-channel standardisation with statistics of the training split, stored with the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from transformers import ASTFeatureExtractor, BitImageProcessorPil

from weldfusion.config import Config
from weldfusion.errors import InputError
from weldfusion.io import write_json_atomic

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FBANK_HOP = 160  # 10 ms at 16 kHz, as in AST's Kaldi-style fbank
FBANK_WINDOW = 400  # 25 ms


@dataclass(frozen=True)
class VideoTransform:
    crop: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def short_edge(self) -> int:
        return int(self.crop * 256 / 224)

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        """One uint8 RGB frame -> shortest edge resized, centre-cropped uint8 (crop, crop, 3)."""
        height, width = rgb.shape[:2]
        scale = self.short_edge / min(height, width)
        size = (max(self.short_edge, round(width * scale)), max(self.short_edge, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(rgb, size, interpolation=interpolation)
        top, left = (size[1] - self.crop) // 2, (size[0] - self.crop) // 2
        return resized[top : top + self.crop, left : left + self.crop]

    def normalise(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, 3, H, W) float32: /255 then mean/std."""
        x = frames.astype(np.float32) / 255.0
        x = (x - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class ImageTransform:
    """One PIL photo -> (3, S, S) float32 through DINOv2's image processor, tag box blanked first."""

    def __init__(self, processor: BitImageProcessorPil, tag_box: list[float] | None = None):
        self.processor = processor
        self.tag_box = tag_box
        self.fill = tuple(int(round(255 * m)) for m in processor.image_mean)  # becomes 0 after normalising

    @property
    def min_size(self) -> int:
        size = self.processor.size
        return int(size.get("shortest_edge") or min(size.get("height", 0), size.get("width", 0)))

    @property
    def crop(self) -> int:
        return int(self.processor.crop_size["height"])

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self.tag_box is not None:
            image = image.copy()
            width, height = image.size
            x0, y0, x1, y1 = self.tag_box
            ImageDraw.Draw(image).rectangle((x0 * width, y0 * height, x1 * width, y1 * height), fill=self.fill)
        return self.processor(images=image, return_tensors="np")["pixel_values"][0].astype(np.float32)


def dinov2_processor(crop: int) -> BitImageProcessorPil:
    """The settings of facebook/dinov2-base's preprocessor_config.json, for a given crop size."""
    return BitImageProcessorPil(
        do_resize=True, size={"shortest_edge": int(crop * 256 / 224)}, resample=Image.Resampling.BICUBIC,
        do_center_crop=True, crop_size={"height": crop, "width": crop}, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )  # fmt: skip


class AudioTransform:
    """Mono waveform -> (clips, frames, mel_bins) float32: AST fbank of clips spread over the recording."""

    def __init__(self, extractor: ASTFeatureExtractor, clips: int):
        self.extractor = extractor
        self.clips = clips

    @property
    def window(self) -> int:
        """Samples per clip: exactly `max_length` fbank frames."""
        return (self.extractor.max_length - 1) * FBANK_HOP + FBANK_WINDOW

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        starts = np.linspace(0, max(len(wave) - self.window, 0), self.clips).round().astype(int)
        pieces = [wave[s : s + self.window] for s in starts]
        features = self.extractor(pieces, sampling_rate=self.extractor.sampling_rate, return_tensors="np")
        return features["input_values"].astype(np.float32)


@dataclass(frozen=True)
class SensorStats:
    """Per-channel mean/std of the training split's resampled logs; stored with the run."""

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, channels: list[str], logs: list[np.ndarray]) -> SensorStats:
        if not logs:
            raise InputError("no readable sensor log in the training split: cannot compute sensor statistics")
        stacked = np.concatenate(logs, axis=0).astype(np.float64)
        std = np.maximum(stacked.std(axis=0), 1e-6)
        return cls(tuple(channels), tuple(stacked.mean(axis=0).tolist()), tuple(std.tolist()))

    def apply(self, log: np.ndarray) -> np.ndarray:
        return ((log - np.array(self.mean)) / np.array(self.std)).astype(np.float32)

    def save(self, path: Path) -> None:
        write_json_atomic(path, {"channels": self.channels, "mean": self.mean, "std": self.std})

    @classmethod
    def load(cls, path: Path) -> SensorStats:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(tuple(data["channels"]), tuple(data["mean"]), tuple(data["std"]))


@dataclass
class Transforms:
    """The preprocessing of every modality for one configuration."""

    video: VideoTransform
    images: ImageTransform
    audio: AudioTransform


def default_transforms(config: Config) -> Transforms:
    """Transforms with the real checkpoints' preprocessing settings at the configured sizes."""
    d = config.data
    extractor = ASTFeatureExtractor(num_mel_bins=d.audio.mel_bins, max_length=d.audio.frames,
                                    sampling_rate=d.audio.sample_rate)  # fmt: skip
    return Transforms(
        video=VideoTransform(crop=d.video.size or 256),
        images=ImageTransform(dinov2_processor(d.images.size or 224), d.images.tag_box),
        audio=AudioTransform(extractor, d.audio.clips),
    )
