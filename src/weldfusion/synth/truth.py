"""The ground truth of a realistic synthetic dataset: `<root>/ground_truth.json` (docs/ground_truth.md).

Per weld (keyed by SUBDIRS): each recording's duration and arc window, and per defect event its
kind, the modalities that carry it, its window in seconds from the start of each recording that
carries it, and a box per photo that shows it (fractions of the original photo, views numbered
from 0 in sorted file order).
"""

from __future__ import annotations

from pathlib import Path

from weldfusion.data.categories import CATEGORIES
from weldfusion.metrics.localisation import FILENAME, FORMAT, VERSION  # the reader owns the format
from weldfusion.io import write_json_atomic
from weldfusion.synth.events import KINDS, RECORDINGS, Clock, Event, Layout
from weldfusion.synth.photos import footprint, visible

DRAWN = ("video", "images", "audio", "sensor")  # the modalities the synthetic generator draws


def seconds(value: float) -> float:
    return round(float(value), 3)


def event_truth(event: Event, layout: Layout, aspect: float) -> dict:
    clock = layout.clock
    windows = {}
    for recording, (a, b) in event.windows.items():
        timing = clock.timing(recording)
        windows[recording] = [seconds(max(a + timing.pre, 0.0)), seconds(min(b + timing.pre, timing.total))]
    photos = [{"view": v, "box": footprint(event, layout.views[v], visible(layout, v), aspect)} for v in event.views]
    return {
        "kind": event.kind, "extent": KINDS[event.kind].extent, "severity": round(event.severity, 3),
        "modalities": [m for m in DRAWN if m in KINDS[event.kind].modalities], "windows": windows, "photos": photos,
    }  # fmt: skip


def recordings_truth(clock: Clock) -> dict:
    return {r: {"duration": seconds(clock.timing(r).total), "arc": [seconds(clock.pre[r]), seconds(clock.pre[r] + clock.arc)]}
            for r in RECORDINGS}  # fmt: skip


def weld_truth(label: int, layout: Layout, aspect: float) -> dict:
    return {"category": CATEGORIES[label], "recordings": recordings_truth(layout.clock),
            "events": [event_truth(e, layout, aspect) for e in layout.events]}  # fmt: skip


def write_ground_truth(root: Path, welds: dict[str, dict], generator: dict) -> Path:
    """Write `welds` (SUBDIRS -> `weld_truth`) with the format header; returns the file's path."""
    path = Path(root) / FILENAME
    write_json_atomic(path, {
        "format": FORMAT, "version": VERSION, "generator": generator,
        "units": {"windows": "seconds from the start of each recording", "box": "[x0, y0, x1, y1], fractions of the photo",
                  "view": "photo index from 0 in sorted file order"},
        "welds": dict(sorted(welds.items())),
    })  # fmt: skip
    return path
