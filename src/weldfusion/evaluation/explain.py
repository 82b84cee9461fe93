"""Pictures of where a weld's anomaly score comes from: a timeline of the time-based modalities'
profiles, and each photo with its heatmap laid over the whole original photo (`predict --explain`,
and the report's highest-scoring welds).

Inputs are one weld's `localisation` (`protocols/tokens.py::localise`): per time-based modality a
profile `[[t, score], ...]` and its peak; per photo view a heatmap over the photo's token grid, its
peak (x, y as fractions of the photo) and score.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MAX_WIDTH = 900  # photos are shown downscaled to this width


def png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def timeline_picture(localisation: dict, title: str) -> bytes | None:
    """One row per time-based modality: its score over seconds of its recording, the peak marked."""
    profiles = {m: v for m, v in localisation.items() if isinstance(v, dict) and v.get("profile")}
    if not profiles:
        return None
    figure, axes = plt.subplots(len(profiles), 1, figsize=(8, 1.6 * len(profiles) + 0.6), squeeze=False, sharex=True)
    for axis, (modality, found) in zip(axes[:, 0], profiles.items()):
        profile = np.asarray(found["profile"], dtype=float)
        axis.plot(profile[:, 0], profile[:, 1], lw=1.2)
        axis.axvline(found["peak_s"], color="crimson", ls="--", lw=1)
        axis.set_ylabel(modality)
    axes[-1, 0].set_xlabel("seconds from the start of each recording (peak dashed)")
    axes[0, 0].set_title(title, fontsize=9)
    return png(figure)


def overlay_picture(photo: Path, heatmap: np.ndarray, peak: list[float], title: str) -> bytes:
    """The whole photo with the heatmap (stretched over it) laid on top and the peak circled."""
    with Image.open(photo) as image:
        image.draft("RGB", (MAX_WIDTH, MAX_WIDTH))
        rgb = image.convert("RGB")
        rgb.thumbnail((MAX_WIDTH, MAX_WIDTH))
        pixels = np.asarray(rgb)
    height, width = pixels.shape[:2]
    heat = np.where(np.isfinite(heatmap), heatmap, np.nanmin(np.where(np.isfinite(heatmap), heatmap, np.nan)))
    heat = cv2.resize(heat.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    figure, axis = plt.subplots(figsize=(8, 8 * height / width + 0.4))
    axis.imshow(pixels)
    shown = axis.imshow(heat, cmap="inferno", alpha=0.45)
    axis.scatter([peak[0] * width], [peak[1] * height], s=250, facecolors="none", edgecolors="cyan", linewidths=2)
    figure.colorbar(shown, ax=axis, fraction=0.025, label="token score (z)")
    axis.set_title(title, fontsize=9)
    axis.axis("off")
    return png(figure)


def weld_pictures(localisation: dict, photos: tuple[Path, ...], name: str) -> dict[str, bytes]:
    """`<name>_timeline.png` and `<name>_view<k>.png` for one weld (what exists of them)."""
    out = {}
    timeline = timeline_picture(localisation, name)
    if timeline:
        out[f"{name}_timeline.png"] = timeline
    for view in localisation.get("images", []):
        if "heatmap" in view and view["view"] < len(photos):
            title = f"{name}, view {view['view']} ({photos[view['view']].name}): peak score {view['score']:.2f}"
            out[f"{name}_view{view['view']}.png"] = overlay_picture(photos[view["view"]], view["heatmap"], view["peak"], title)
    return out
