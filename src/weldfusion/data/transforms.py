"""Encoder-specific preprocessing: decoded arrays -> the tensors an encoder expects (SPEC §2).

- video (V-JEPA 2) and images (DINOv2) share one recipe with each checkpoint's own parameters:
  resize the shortest edge, centre crop, /255, mean/std. V-JEPA 2's transformers processor needs
  torchvision, which we do not use, so the steps are implemented here; DINOv2's processor settings
  are the same steps. Resizing uses OpenCV's area filter (antialiased; 5x faster than PIL bicubic,
  mean difference to transformers' DINOv2 processor ~0.01 in normalised units, see tests).
- images: the paper tag (found inside the configured search box) is blanked to the mean colour first.
- audio: AST's own log-mel fbank (transformers' Kaldi-compatible spectrogram with the feature
  extractor's filters, window and normalisation), on clips spread evenly over the recording.
- sensor: per-channel standardisation with statistics of the training split, stored with the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from transformers import ASTFeatureExtractor
from transformers.audio_utils import spectrogram_batch

from weldfusion.errors import InputError
from weldfusion.io import write_json_atomic

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
    """One PIL photo -> (3, crop, crop) float32; the paper tag is blanked to the mean colour first.

    `tag_box` ([x0, y0, x1, y1] as fractions; the whole photo is [0, 0, 1, 1]) is where to look for the
    tag: a patch of paper, i.e. low-saturation pixels clearly brighter than the median of their
    neighbourhood (so lighting gradients and dark holes nearby do not count), evenly lit inside (matte
    paper, unlike metal), forming a compact, roughly rectangular blob (so the long bright crown of a
    bead does not count). Every such patch found there is blanked, with a margin for its blurred edges,
    wherever the session's photographer put it; nothing else is touched.
    """

    DETECT_SIDE = 480  # the tag is searched on a copy whose long side is at most this
    NEIGHBOURHOOD = 0.5  # side of the neighbourhood whose median grey is the local brightness (fraction of the short side)
    BRIGHTER = 1.3  # a paper pixel is at least this much brighter than its neighbourhood ...
    BRIGHTER_MEAN = 1.55  # ... and the whole tag this much on average (or it is white: over-exposed)
    PAPER_SHARE = 0.85  # within a bright blob, paper is at least this share of its bright end (90th percentile)
    MAX_SATURATION = 0.2  # (max - min) / max of the paper's RGB
    MIN_AREA = 0.006  # smallest tag, as a fraction of the photo (e.g. 134 x 80 pixels of a 2000 x 900 one)
    MIN_FILL = 0.3  # bright share of the tag's bounding box (the rest is print)
    MAX_ASPECT = 3.0  # longest over shortest side of the tag
    MAX_VARIATION = 0.05  # std / mean of the grey levels inside the paper (its blurred rim left out)
    MARGIN = 0.12  # blanked beyond the found edges, as a fraction of the tag's size
    WHITE = 245.0  # a grey level that counts as paper whatever its surroundings (over-exposed)

    def __init__(self, resize: ResizeCrop, tag_box: list[float] | None = None):
        self.resize = resize
        self.tag_box = tag_box
        self.fill = tuple(int(round(255 * m)) for m in resize.mean)  # becomes ~0 after normalising

    def __call__(self, image: Image.Image) -> np.ndarray:
        rgb = np.asarray(image.convert("RGB"))
        if self.tag_box is not None:
            rgb = rgb.copy()
            for x0, y0, x1, y1 in self.find_tags(rgb):
                rgb[y0:y1, x0:x1] = self.fill
        return self.resize.normalise(self.resize.frame(rgb)[None])[0]

    def find_tags(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Pixel boxes (x0, y0, x1, y1) of the paper tags inside `tag_box`."""
        height, width = rgb.shape[:2]
        scale = max(max(width, height) / self.DETECT_SIDE, 1.0)
        small = cv2.resize(rgb, (round(width / scale), round(height / scale)), interpolation=cv2.INTER_AREA) if scale > 1 else rgb
        grey, local, paper = self.paper(small)
        paper = cv2.morphologyEx(paper.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # drop scratches and specks
        count, labels, stats, _ = cv2.connectedComponentsWithStats(paper, connectivity=8)
        boxes = []
        for i, (left, top, w, h, area) in enumerate(stats[1:count], start=1):
            crop = np.s_[top : top + h, left : left + w]
            found = self.tag_in(labels[crop] == i, grey[crop], local[crop]) if area >= self.MIN_AREA * paper.size else None
            if found:
                x0, y0, x1, y1 = found
                pad_x, pad_y = self.MARGIN * (x1 - x0) + 1, self.MARGIN * (y1 - y0) + 1
                x0, y0, x1, y1 = ((left + x0 - pad_x) * scale, (top + y0 - pad_y) * scale, (left + x1 + pad_x) * scale, (top + y1 + pad_y) * scale)
                boxes.append((max(int(x0), 0), max(int(y0), 0), min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)))
        return boxes

    def paper(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grey levels, their neighbourhood's median, and the paper-like pixels inside `tag_box`."""
        h, w = rgb.shape[:2]
        side = max(int(self.NEIGHBOURHOOD * min(h, w)) | 1, 3)
        local = cv2.medianBlur(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY), side).astype(np.float32)
        values = rgb.astype(np.float32)
        grey, high, low = values.mean(axis=2), values.max(axis=2), values.min(axis=2)
        paper = (grey >= np.minimum(self.BRIGHTER * local, self.WHITE)) & (high - low <= self.MAX_SATURATION * np.maximum(high, 1))
        x0, y0, x1, y1 = self.tag_box
        region = np.zeros_like(paper)
        region[int(y0 * h) : int(np.ceil(y1 * h)), int(x0 * w) : int(np.ceil(x1 * w))] = True
        return grey, local, paper & region

    def tag_in(self, blob: np.ndarray, grey: np.ndarray, local: np.ndarray) -> tuple[int, int, int, int] | None:
        """The box (x0, y0, x1, y1) of the paper tag in one bright blob (a mask over its bounding box), or
        None if the blob is no tag. The paper is the blob's brightest part: dimmer plate stuck to it is left out."""
        paper = blob & (grey >= self.PAPER_SHARE * np.percentile(grey[blob], 90))
        ys, xs = np.nonzero(paper)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        paper, grey, local = paper[y0:y1, x0:x1], grey[y0:y1, x0:x1], local[y0:y1, x0:x1]
        h, w = paper.shape
        bright = grey[paper].mean() >= min(self.BRIGHTER_MEAN * local[paper].mean(), self.WHITE)
        if not bright or paper.sum() < self.MIN_FILL * h * w or max(w / h, h / w) > self.MAX_ASPECT:
            return None
        core = cv2.erode(paper.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        levels = grey[core if core.sum() >= 10 else paper]
        return (int(x0), int(y0), int(x1), int(y1)) if levels.std() <= self.MAX_VARIATION * levels.mean() else None


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

    video: ResizeCrop
    images: ImageTransform
    audio: AudioTransform
