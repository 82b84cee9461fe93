"""Localisation figures against the ground truth of synthetic welds (SPEC §7; format: docs/ground_truth.md).

The inputs are what a scorer reports per weld (SPEC §10 `localisation`): per time-based modality a
profile `[[t, score], ...]` over seconds from the start of that recording, and per photo a heatmap
(a 2-D array spanning the whole original photo, any resolution). Figures:

- per time-based modality: the share of the defective welds that carry an event in that modality
  whose highest-scoring moment lies inside one of the event windows widened by `tolerance` seconds
  on each side (default 0.5 s), beside `chance`, the share a scorer with random scores would reach
  (the share of the profile's time points inside the widened windows);
- photos: pixel-level AUROC over all given heatmaps (pixels inside a true box are positives; photos
  without a box, e.g. of Good welds, add negatives), and the share of photos with a box whose
  hottest pixel lies inside one, beside its chance (the boxes' share of the photo area).

A figure for which no profile or heatmap was given is None ("unavailable"), never 0.
Pure functions: the only I/O is reading the ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from weldfusion.errors import InputError

FORMAT = "weldfusion-ground-truth"
VERSION = 1
FILENAME = "ground_truth.json"
SYNTHETIC_MARK = "synthetic.json"  # written by `weldfusion synth` beside the manifest: reports say the data is synthetic
TOLERANCE = 0.5  # seconds a peak may lie outside a true window and still count
TIME_MODALITIES = ("video", "audio", "sensor")
MAX_SIDE = 128  # heatmaps with a longer side are area-averaged down to it before the pixel AUROC

Box = tuple[float, float, float, float]
Profile = Sequence[Sequence[float]] | np.ndarray


@dataclass(frozen=True)
class WeldTruth:
    """One weld's ground truth: its category, the windows per recording and the boxes per photo."""

    category: str
    windows: dict[str, list[tuple[float, float]]]  # recording -> windows (seconds from its start)
    boxes: dict[int, list[Box]]  # view -> boxes (fractions of the photo)

    @property
    def defective(self) -> bool:
        return bool(self.windows or self.boxes)


def find_ground_truth(root: Path) -> Path | None:
    path = Path(root) / FILENAME
    return path if path.is_file() else None


def read_ground_truth(path: Path) -> dict[str, WeldTruth]:
    """SUBDIRS -> WeldTruth, from a ground-truth file; InputError naming the file if it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} version {VERSION} file")
        return {key: weld_truth(weld) for key, weld in data["welds"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: unreadable ground truth ({exc})") from None


def weld_truth(weld: Mapping) -> WeldTruth:
    windows: dict[str, list[tuple[float, float]]] = {}
    boxes: dict[int, list[Box]] = {}
    for event in weld["events"]:
        for recording, (a, b) in event["windows"].items():
            windows.setdefault(recording, []).append((float(a), float(b)))
        for photo in event["photos"]:
            boxes.setdefault(int(photo["view"]), []).append(tuple(float(v) for v in photo["box"]))  # type: ignore[arg-type]
    return WeldTruth(str(weld["category"]), windows, boxes)


def peak_time(profile: Profile) -> float | None:
    """The time of the highest score (the first, on ties); None for an empty or all-NaN profile."""
    values = np.asarray(profile, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(values[:, 1])
    if not finite.any():
        return None
    return float(values[finite][np.argmax(values[finite, 1]), 0])


def inside(times: np.ndarray, windows: list[tuple[float, float]], tolerance: float) -> np.ndarray:
    return np.any([(times >= a - tolerance) & (times <= b + tolerance) for a, b in windows], axis=0)


def share(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def time_localisation(truth: Mapping[str, WeldTruth], profiles: Mapping[str, Mapping[str, Profile]],
                      tolerance: float = TOLERANCE) -> dict[str, dict | None]:  # fmt: skip
    """Per time-based modality: peak-in-window share over the defective welds carrying an event there."""
    result: dict[str, dict | None] = {}
    for modality in TIME_MODALITIES:
        hits, chances, by_category = [], [], {}
        for key, per_modality in profiles.items():
            weld = truth.get(key)
            windows = weld.windows.get(modality) if weld else None
            peak = peak_time(per_modality[modality]) if windows and modality in per_modality else None
            if peak is None:
                continue
            times = np.asarray(per_modality[modality], dtype=np.float64).reshape(-1, 2)[:, 0]
            hit = bool(inside(np.array([peak]), windows, tolerance)[0])
            hits.append(hit)
            chances.append(float(inside(times, windows, tolerance).mean()))
            by_category.setdefault(weld.category, []).append(hit)
        result[modality] = None if not hits else {
            "peak_in_window": share(hits), "chance": share(chances), "n": len(hits),
            "per_category": {c: share(v) for c, v in sorted(by_category.items())},
        }  # fmt: skip
    return result


def box_mask(boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels whose centres lie inside any of the boxes (fractions of the photo)."""
    height, width = shape
    xs, ys = (np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height
    mask = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        mask |= ((ys >= y0) & (ys <= y1))[:, None] & ((xs >= x0) & (xs <= x1))[None, :]
    return mask


def reduced(heat: np.ndarray) -> np.ndarray:
    """The heatmap as float32, area-averaged so that its longer side is at most MAX_SIDE."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"a heatmap must be 2-D, got shape {heat.shape}")
    longest = max(heat.shape)
    if longest <= MAX_SIDE:
        return heat
    size = (max(round(heat.shape[1] * MAX_SIDE / longest), 1), max(round(heat.shape[0] * MAX_SIDE / longest), 1))
    return cv2.resize(heat, size, interpolation=cv2.INTER_AREA)


def photo_localisation(truth: Mapping[str, WeldTruth], heatmaps: Mapping[str, Mapping[int, np.ndarray]]) -> dict | None:
    """Pixel AUROC over every given heatmap of a weld in the ground truth, and the peak-in-box share."""
    scores, labels, hits, chances = [], [], [], []
    for key, views in heatmaps.items():
        if key not in truth:
            continue
        for view, heat in views.items():
            boxes = truth[key].boxes.get(int(view), [])
            peak_mask = box_mask(boxes, np.shape(heat))
            if boxes:
                hits.append(bool(peak_mask.flat[int(np.argmax(np.nan_to_num(heat, nan=-np.inf)))]))
                chances.append(float(peak_mask.mean()))
            small = reduced(heat)
            scores.append(np.nan_to_num(small, nan=float(np.nanmin(small)) if np.isfinite(small).any() else 0.0).ravel())
            labels.append(box_mask(boxes, small.shape).ravel())
    if not scores:
        return None
    y, s = np.concatenate(labels), np.concatenate(scores)
    auroc = round(float(roc_auc_score(y, s)), 4) if 0 < y.sum() < len(y) else None
    return {"pixel_auroc": auroc, "peak_in_box": share(hits), "chance": share(chances), "n_photos": len(scores),
            "n_with_box": len(hits)}  # fmt: skip


def localisation_metrics(truth: Mapping[str, WeldTruth], profiles: Mapping[str, Mapping[str, Profile]] | None = None,
                         heatmaps: Mapping[str, Mapping[int, np.ndarray]] | None = None,
                         tolerance: float = TOLERANCE) -> dict:  # fmt: skip
    """All localisation figures; a modality without profiles (or photos without heatmaps) is None."""
    times = time_localisation(truth, profiles or {}, tolerance)
    return {"tolerance_s": tolerance, **times, "images": photo_localisation(truth, heatmaps or {})}
