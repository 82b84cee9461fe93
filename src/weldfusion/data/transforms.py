"""Encoder-specific preprocessing: decoded arrays -> the tensors an encoder expects (SPEC §2).

- video (V-JEPA 2) and images (DINOv2) share one recipe with each checkpoint's own parameters:
  resize the shortest edge, centre crop, /255, mean/std. V-JEPA 2's transformers processor needs
  torchvision, which we do not use, so the steps are implemented here; DINOv2's processor settings
  are the same steps. Resizing uses OpenCV's area filter (antialiased; 5x faster than PIL bicubic,
  mean difference to transformers' DINOv2 processor ~0.01 in normalised units, see tests).
- images: the paper tag (found inside the configured search box) is blanked to the mean colour first.
- audio: AST's own log-mel fbank (transformers' Kaldi-compatible spectrogram with the feature
  extractor's filters, window and normalisation) computed in torch, on clips spread evenly over the
  recording.
- per-channel standardisation (the sensor log) with statistics of the training split, stored with the run.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image
from transformers import ASTFeatureExtractor
from transformers.audio_utils import mel_filter_bank, window_function

from weldfusion.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AST_MEAN, AST_STD = -4.2677393, 4.5689974  # AudioSet fbank statistics (ASTFeatureExtractor defaults)
FBANK_HOP = 160  # 10 ms at 16 kHz, as in AST's Kaldi-style fbank
FBANK_WINDOW = 400  # 25 ms
FBANK_FFT = 512
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07  # float32 epsilon, Kaldi's floor


@dataclass(frozen=True)
class ResizeCrop:
    """Shortest edge -> `short_edge`, centre crop `crop` x `crop`, then /255 and mean/std; or, with
    `width`, the whole image resized to `crop` x `width` (height x width): nothing of the frame or photo
    is cut away (a 2000x900 photo's centre square drops 55 % of the bead)."""

    short_edge: int
    crop: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    width: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the output."""
        return (self.crop, self.width or self.crop)

    @classmethod
    def for_crop(cls, crop: int, **kwargs: tuple[float, ...]) -> ResizeCrop:
        """The V-JEPA 2 / DINOv2 convention: shortest edge = crop * 256 / 224."""
        return cls(int(crop * 256 / 224), crop, **kwargs)

    def frame(self, rgb: np.ndarray) -> np.ndarray:
        """One uint8 RGB image (H, W, 3) -> resized (and centre-cropped) uint8 (*shape, 3)."""
        height, width = rgb.shape[:2]
        if self.width:
            shrink = height > self.crop or width > self.width
            return cv2.resize(np.ascontiguousarray(rgb), (self.width, self.crop), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
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
    """Mono waveform -> (clips, frames, mel_bins) float32: AST fbank of clips spread over the recording.

    The fbank is the Kaldi-compatible one of transformers' `ASTFeatureExtractor` (DC offset removed per
    frame, pre-emphasis, symmetric Hann window, |512-point rFFT|^2, Kaldi mel filters, log, zero padding
    to `max_length`, normalisation), computed in torch for all clips at once instead of a Python loop per
    frame; equal to the extractor within 1e-4 (tested; ~1e-7 in practice).
    """

    def __init__(self, extractor: ASTFeatureExtractor, clips: int):
        self.extractor = extractor
        self.clips = clips
        self.hann = torch.from_numpy(window_function(FBANK_WINDOW, "hann", periodic=False))  # float64, hann[0] == 0
        self.bands = mel_bands(kaldi_mel_filters(extractor))

    @property
    def window(self) -> int:
        """Samples per clip: exactly `max_length` fbank frames."""
        return (self.extractor.max_length - 1) * FBANK_HOP + FBANK_WINDOW

    def starts(self, samples: int) -> np.ndarray:
        """First sample of each clip: spread evenly, the first at 0 and the last ending with the recording."""
        return np.linspace(0, max(samples - self.window, 0), self.clips).round().astype(int)

    def spans(self, samples: int) -> np.ndarray:
        """(clips, 2) seconds each clip's fbank covers (a clip longer than the recording is zero-padded)."""
        starts = self.starts(samples)
        return np.stack([starts, starts + self.window], axis=1) / self.extractor.sampling_rate

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        ex = self.extractor
        clips = torch.from_numpy(np.stack([wave[s : s + self.window] for s in self.starts(len(wave))], dtype=np.float64))
        with one_torch_thread():
            fbank = self.log_mel(clips)  # at most max_length frames: a clip is at most `window` long
        fbank = torch.nn.functional.pad(fbank, (0, 0, 0, ex.max_length - fbank.shape[1]))  # AST pads with 0, then normalises
        return (fbank.sub_(ex.mean).div_(ex.std * 2) if ex.do_normalize else fbank).numpy()

    def log_mel(self, clips: torch.Tensor) -> torch.Tensor:
        """(clips, samples) float64 -> (clips, frames, mel_bins) float32 log-mel energies.

        float64 up to the power spectrum: in float32 the weakest bins (the lowest, which pre-emphasis
        damps) drift by more than 1e-4 after the log.
        """
        frames = clips.unfold(-1, FBANK_WINDOW, FBANK_HOP)  # a view: (clips, frames, window)
        # pre-emphasis once over each clip: sample i >= 1 of a frame is x[i] - a x[i-1] - (1 - a) mean
        # (the DC offset removed first); sample 0 stays 0, as the window is 0 there
        emphasised = (clips[:, 1:] - PREEMPHASIS * clips[:, :-1]).unfold(-1, FBANK_WINDOW - 1, FBANK_HOP)
        padded = torch.zeros(*frames.shape[:-1], FBANK_FFT, dtype=torch.float64)
        torch.sub(emphasised, (1 - PREEMPHASIS) * frames.mean(dim=-1, keepdim=True), out=padded[..., 1:FBANK_WINDOW])
        padded[..., 1:FBANK_WINDOW] *= self.hann[1:]
        power = torch.view_as_real(torch.fft.rfft(padded)).square_().flatten(-2).float()  # (re^2, im^2) pairs
        mel = torch.cat([power[..., 2 * low : 2 * high] @ weights for low, high, weights in self.bands], dim=-1)
        return mel.clamp_min_(MEL_FLOOR).log_()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch at one thread for a few milliseconds of work: its intra-op pool gains little there, and
    stalls when other processes hold the cores (a 5-15x slower median fbank measured on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def mel_bands(filters: np.ndarray, size: int = 16) -> list[tuple[int, int, torch.Tensor]]:
    """The (fft bins, mel bins) filter matrix as blocks of `size` filters with the bins they cover:
    (first bin, end bin, weights), each bin's row twice so that the product with interleaved (re^2, im^2)
    also sums them into |X|^2. Triangular filters are sparse: a third of the dense product's work."""
    bands = []
    for first in range(0, filters.shape[1], size):
        block = filters[:, first : first + size]
        covered = np.flatnonzero(block.any(axis=1))
        low, high = (int(covered[0]), int(covered[-1]) + 1) if len(covered) else (0, 1)
        bands.append((low, high, torch.from_numpy(block[low:high]).float().repeat_interleave(2, dim=0)))
    return bands


def kaldi_mel_filters(extractor: ASTFeatureExtractor) -> np.ndarray:
    """(fft bins, mel bins): the filters ASTFeatureExtractor builds (without torchaudio; with it, the same
    Kaldi banks). Some of 128 filters over 257 bins are empty, as in AST itself: that warning is muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return mel_filter_bank(
            num_frequency_bins=FBANK_FFT // 2 + 1, num_mel_filters=extractor.num_mel_bins, min_frequency=20,
            max_frequency=extractor.sampling_rate // 2, sampling_rate=extractor.sampling_rate, norm=None,
            mel_scale="kaldi", triangularize_in_mel_space=True,
        )  # fmt: skip


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
