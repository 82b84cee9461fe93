"""Defect events of the realistic generator: when, where and in which recordings a defect shows.

A defective weld carries one or more events. A *local* event starts somewhere in the middle of the
weld and lasts a fraction of a second to a few seconds; a *global* one spans the whole weld; an
*end* event sits at the crater. Times are on the weld's clock (seconds after the arc starts); every
recording starts and stops on its own clock (`Clock`), as the real, unsynchronised recordings do.
Each event has a severity that scales all its signals; `DEFECT` scales every severity at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weldfusion.synth import render
from weldfusion.synth.nuisance import VIEWS, Session, View, jitter_view

DEFECT = 1.0  # global strength of the defect signals
RECORDINGS = ("video", "audio", "sensor")
FADE = 1.0  # seconds a mark left in the bead stays visible in the video while the bead cools
EDGE = 0.08  # seconds over which an event's signals ramp up and down


@dataclass(frozen=True)
class Kind:
    """How one kind of defect shows: where, for how long, in which modalities and photos."""

    modalities: tuple[str, ...]
    extent: str  # local | global | end
    seconds: tuple[float, float] = (0.0, 0.0)  # duration range of a local event
    cap: float = 1.0  # a local event lasts at most this share of the arc
    views: tuple[int, int] = (VIEWS, VIEWS)  # how many of the photos show it
    marks: bool = False  # leaves marks in the glowing bead that the video sees while they cool


KINDS: dict[str, Kind] = {
    "pores": Kind(("video", "images", "audio", "sensor"), "local", (0.3, 1.5), 0.35, (2, 4), marks=True),
    "spatter": Kind(("video", "images", "audio", "sensor"), "local", (0.5, 2.5), 0.4, (3, 5)),
    "burnthrough": Kind(("video", "images", "audio", "sensor"), "local", (0.3, 1.2), 0.3, (3, 5), marks=True),
    "heat": Kind(("video", "images", "sensor"), "local", (1.0, 3.0), 0.6),
    "undercut": Kind(("video", "images", "sensor"), "local", (0.5, 2.0), 0.4, (2, 4), marks=True),
    "overlap": Kind(("video", "images", "sensor"), "local", (0.4, 1.5), 0.35, (2, 4), marks=True),
    "cold": Kind(("video", "images", "audio", "sensor"), "local", (0.5, 2.0), 0.4, (1, 3)),
    "convexity": Kind(("video", "images", "audio", "sensor"), "global"),
    "warping": Kind(("video", "images", "sensor"), "global"),
    "crater": Kind(("images", "audio", "sensor"), "end", views=(2, 4)),
}
CLASS_KINDS: dict[int, tuple[str, ...]] = {
    0: (), 1: ("heat",), 2: ("burnthrough",), 3: ("pores",), 4: ("pores", "heat"), 5: ("undercut",), 6: ("overlap",),
    7: ("cold",), 8: ("convexity",), 9: ("spatter",), 10: ("warping",), 11: ("crater",),
}  # fmt: skip


@dataclass(frozen=True)
class Clock:
    """One weld's arc duration and each recording's margins before and after it."""

    arc: float
    pre: dict[str, float]
    post: dict[str, float]

    def timing(self, recording: str) -> render.Timing:
        return render.Timing(self.pre[recording], self.arc, self.post[recording])


@dataclass(frozen=True)
class Event:
    kind: str
    start: float  # weld clock, seconds after the arc starts
    end: float
    severity: float
    views: tuple[int, ...]  # the photos that show it
    side: int  # +1 / -1: which edge of the bead (undercut, overlap)
    windows: dict[str, tuple[float, float]]  # recording -> window on the weld clock
    span: tuple[float, float]  # the stretch of bead it marks, as weld progress (0 = start, 1 = end)

    def level(self, recording: str, t: np.ndarray) -> np.ndarray:
        """0..1 envelope of the event in `recording` at weld times `t` (ramps of EDGE seconds)."""
        if recording not in self.windows:
            return np.zeros_like(t, dtype=np.float64)
        a, b = self.windows[recording]
        return np.clip(np.minimum(t - a, b - t) / EDGE + 0.5, 0.0, 1.0)


@dataclass(frozen=True)
class Layout:
    """Everything random about one realistic weld that the renderers and the ground truth share."""

    clock: Clock
    events: tuple[Event, ...]
    views: tuple[View, ...]

    def of(self, kind: str) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.kind == kind)

    def level(self, kind: str, recording: str, t: np.ndarray) -> np.ndarray:
        """Severity-weighted envelope of every event of `kind` (0 where none is active)."""
        total = np.zeros_like(t, dtype=np.float64)
        for event in self.of(kind):
            total = np.maximum(total, event.severity * event.level(recording, t))
        return total


def draw_clock(rng: np.random.Generator, seconds: float) -> Clock:
    arc = seconds * rng.uniform(0.85, 1.15)
    pre = {r: float(rng.uniform(0.3, 1.5)) for r in RECORDINGS}
    post = {r: float(rng.uniform(0.4, 1.5)) for r in RECORDINGS}
    return Clock(float(arc), pre, post)


def draw_times(rng: np.random.Generator, spec: Kind, arc: float) -> tuple[float, float]:
    """Start and end on the weld clock: local events in the middle part of the weld."""
    if spec.extent == "local":
        duration = min(rng.uniform(*spec.seconds), spec.cap * arc)
        start = rng.uniform(0.15 * arc, max(0.85 * arc - duration, 0.15 * arc))
        return float(start), float(start + duration)
    return (arc, arc) if spec.extent == "end" else (0.0, arc)


def draw_windows(rng: np.random.Generator, spec: Kind, start: float, end: float, clock: Clock) -> dict[str, tuple[float, float]]:
    """Where each recording carrying the event sees or hears it, on the weld clock."""
    if spec.extent == "end":  # no crater fill: the current stops dead; the cooling crater cracks audibly
        cooling = min(rng.uniform(0.3, 0.8), clock.post["audio"] - 0.05)
        return {"sensor": (end - 0.35, end + 0.35), "audio": (end, float(end + cooling))}
    return {r: (start, end + (FADE if spec.marks and r == "video" else 0.0)) for r in RECORDINGS if r in spec.modalities}


def draw_event(rng: np.random.Generator, kind: str, clock: Clock) -> Event:
    spec = KINDS[kind]
    start, end = draw_times(rng, spec, clock.arc)
    windows = draw_windows(rng, spec, start, end, clock)
    views = tuple(sorted(int(v) for v in rng.choice(VIEWS, int(rng.integers(spec.views[0], spec.views[1] + 1)), replace=False)))
    severity, side = DEFECT * rng.uniform(0.3, 1.0), int(rng.choice([-1, 1]))
    return Event(kind, start, end, float(severity), views, side, windows, (start / clock.arc, end / clock.arc))


def draw_layout(session: Session, label: int, seconds: float, seed: tuple[int, ...]) -> Layout:
    rng = np.random.default_rng([*seed, 9])
    clock = draw_clock(rng, seconds)
    views = tuple(jitter_view(rng, view) for view in session.views)
    return Layout(clock, tuple(draw_event(rng, kind, clock) for kind in CLASS_KINDS[label]), views)
