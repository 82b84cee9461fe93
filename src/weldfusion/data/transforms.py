"""Encoder-specific preprocessing: decoded arrays -> the tensors an encoder expects (SPEC §2).

- video (V-JEPA 2) and images (DINOv2) share one recipe with each checkpoint's own parameters:
  resize the shortest edge, centre crop, /255, mean/std. V-JEPA 2's transformers processor needs
  torchvision, which we do not use, so the steps are implemented here; DINOv2's processor settings
  are the same steps. Resizing uses OpenCV's area filter (antialiased; 5x faster than PIL bicubic,
  mean difference to transformers' DINOv2 processor ~0.01 in normalised units, see tests).
- images: the paper-tag box is blanked to the mean colour first when configured.
- audio: AST's own log-mel fbank (transformers' Kaldi-compatible spectrogram with the feature
  extractor's filters, window and normalisation), on clips spread evenly over the recording.
- per-channel standardisation (the sensor log) with statistics of the training split, stored with the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw
from transformers import ASTFeatureExtractor
from transformers.audio_utils import spectrogram_batch

from weldfusion.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AST_MEAN, AST_STD = -4.2677393, 4.5689974  # AudioSet fbank statistics (ASTFeatureExtractor defaults)
FBANK_HOP = 160  # 10 ms at 16 kHz, as in AST's Kaldi-style fbank
FBANK_WINDOW = 400  # 25 ms


@dataclass(frozen=True)
class ResizeCrop:
    """Shortest edge -> `short_edge`, centre crop `crop` x `crop`, then /255 and mean/std."""

    short_edge: int
    crop: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    @classmethod
    def for_crop(cls, crop: int, **kwargs: tuple[float, ...]) -> ResizeCrop:
        """The V-JEPA 2 / DINOv2 convention: shortest edge = crop * 256 / 224."""
        return cls(int(crop * 256 / 224), crop, **kwargs)

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        """One uint8 RGB image (H, W, 3) -> resized, centre-cropped uint8 (crop, crop, 3)."""
        height, width = rgb.shape[:2]
        short, long = sorted((height, width))
        resized_long = int(self.short_edge * long / short)  # as transformers computes it
        size = (self.short_edge, resized_long) if width < height else (resized_long, self.short_edge)
        interpolation = cv2.INTER_AREA if short > self.short_edge else cv2.INTER_LINEAR
        resized = cv2.resize(np.ascontiguousarray(rgb), size, interpolation=interpolation)
        top, left = (size[1] - self.crop) // 2, (size[0] - self.crop) // 2
        return resized[top : top + self.crop, left : left + self.crop]

    def normalise(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32."""
        x = frames.astype(np.float32) / 255.0
        x = (x - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class ImageTransform:
    """One PIL photo -> (3, crop, crop) float32; the tag box is blanked to the mean colour first."""

    def __init__(self, resize: ResizeCrop, tag_box: list[float] | None = None):
        self.resize = resize
        self.tag_box = tag_box
        self.fill = tuple(int(round(255 * m)) for m in resize.mean)  # becomes ~0 after normalising

    def __call__(self, image: Image.Image) -> np.ndarray:
        if self.tag_box is not None:
            image = image.copy()
            width, height = image.size
            x0, y0, x1, y1 = self.tag_box
            ImageDraw.Draw(image).rectangle((x0 * width, y0 * height, x1 * width, y1 * height), fill=self.fill)
        return self.resize.normalise(self.resize.frame(np.asarray(image))[None])[0]


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
        """Same numbers as `extractor(pieces)` (tested), batched instead of a Python loop per frame."""
        ex = self.extractor
        starts = np.linspace(0, max(len(wave) - self.window, 0), self.clips).round().astype(int)
        pieces = [wave[s : s + self.window] for s in starts]
        if not hasattr(ex, "mel_filters"):  # torchaudio present: the extractor uses its Kaldi fbank
            return ex(pieces, sampling_rate=ex.sampling_rate, return_tensors="np")["input_values"].astype(np.float32)
        fbanks = spectrogram_batch(
            pieces, ex.window, frame_length=FBANK_WINDOW, hop_length=FBANK_HOP, fft_length=512, power=2.0,
            center=False, preemphasis=0.97, mel_filters=ex.mel_filters, log_mel="log",
            mel_floor=1.192092955078125e-07, remove_dc_offset=True,
        )  # fmt: skip
        out = np.zeros((self.clips, ex.max_length, ex.num_mel_bins), np.float32)  # AST pads with 0 before normalising
        for i, fbank in enumerate(fbanks):
            frames = fbank.T[: ex.max_length]
            out[i, : len(frames)] = frames
        return ex.normalize(out).astype(np.float32) if ex.do_normalize else out


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean/std of the training split's values of one modality; stored with the run."""

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, channels: list[str], arrays: list[np.ndarray], what: str = "sensor log") -> ChannelStats:
        if not arrays:
            raise InputError(f"no readable {what} in the training split: cannot compute its standardisation statistics")
        stacked = np.concatenate(arrays, axis=0).astype(np.float64)
        std = np.maximum(stacked.std(axis=0), 1e-6)
        return cls(tuple(channels), tuple(stacked.mean(axis=0).tolist()), tuple(std.tolist()))

    def apply(self, values: np.ndarray) -> np.ndarray:
        return ((values - np.array(self.mean)) / np.array(self.std)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"channels": list(self.channels), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> ChannelStats:
        return cls(tuple(data["channels"]), tuple(data["mean"]), tuple(data["std"]))
