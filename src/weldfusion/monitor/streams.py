"""One modality's chunks as they arrive -> its completed sliding windows, in bounded memory.

Windows end on a fixed grid, `seconds + j * hop` (seconds from the start of that recording); a window
is complete once an item at or after its end has arrived, and is scored only when its items cover
`coverage` of it (a gap leaves windows unscored, reported once when it is seen). The buffer keeps only
the items of windows not yet complete: at most `seconds + hop` of stream, and never more than
`MAX_ITEMS` items. Bad items (out of order, wrong shape, not finite) are dropped with a `Problem`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from weldfusion.config import MonitorConfig, MonitorWindow

MAX_ITEMS = 4096  # items kept per buffer at most, whatever their rate
EPS = 1e-6  # seconds: timestamps this close count as equal


@dataclass
class Window:
    modality: str
    start: float
    end: float
    data: np.ndarray  # the window's items, stacked (video frames, sensor rows) or concatenated (audio samples)


@dataclass
class Problem:
    modality: str
    t: float
    message: str


Output = list[Window | Problem]


class Stream:
    """Timestamped items of one modality -> windows. Subclasses say how an item is checked and stored."""

    def __init__(self, modality: str, window: MonitorWindow, settings: MonitorConfig):
        self.modality = modality
        self.seconds, self.hop = window.seconds, window.hop
        self.settings = settings
        self.items: deque[tuple[float, Any]] = deque(maxlen=MAX_ITEMS)
        self.index = 0  # grid position of the next window to complete
        self.clock = 0.0  # stream time up to which items have arrived
        self.last: float | None = None  # time of the last accepted item
        self.steps: deque[float] = deque(maxlen=32)  # recent spacings (the period estimate)
        self.disordered = False
        self.reported: set[str] = set()
        self.dropped = 0
        self.peak_items = 0  # most items ever held (memory bound checks)

    @property
    def next_end(self) -> float:
        return self.seconds + self.index * self.hop

    @property
    def period(self) -> float:
        return float(np.median(self.steps)) if self.steps else 0.0

    def _accept(self, t: float) -> Output:
        """Order and gap checks for an item starting at `t`; [] when it may be stored."""
        if not math.isfinite(t) or (self.last is not None and t < self.last - EPS):
            self.dropped += 1
            if self.disordered:
                return []
            self.disordered = True
            return [Problem(self.modality, self.clock, f"out-of-order timestamp {t:.3f} s after {self.last or 0:.3f} s; dropped until time moves on")]
        self.disordered = False
        if self.last is None:
            return []
        gap, step = self._gap(t), t - self.last
        if step > EPS:
            self.steps.append(step)
        if gap > max(self.settings.gap_seconds, 3 * self.period):
            return [Problem(self.modality, t, f"gap of {gap:.2f} s ({t - gap:.2f} s -> {t:.2f} s); windows inside it are not scored")]
        return []

    def _gap(self, t: float) -> float:
        """Seconds without data before an item at `t`."""
        return t - (self.last or 0.0)

    def _once(self, kind: str, t: float, message: str) -> Output:
        """A problem reported once per weld and kind (later ones are only counted)."""
        self.dropped += 1
        if kind in self.reported:
            return []
        self.reported.add(kind)
        return [Problem(self.modality, t, message + " (reported once; later ones are dropped too)")]

    def _advance(self, clock: float) -> Output:
        """Every window that ends at or before `clock`."""
        out: Output = []
        self.clock = max(self.clock, clock)
        while self.next_end <= self.clock + EPS:
            start, end = self.next_end - self.seconds, self.next_end
            while self.items and self._item_end(self.items[0]) < start - EPS:  # an item at the start belongs to the window
                self.items.popleft()
            if not self.items or self.items[0][0] >= end - EPS:  # nothing in this window: jump to the next that holds an item
                first = self.items[0][0] if self.items else self.clock
                self.index = max(self.index + 1, math.floor((first - self.seconds) / self.hop + EPS) + 1)
                continue
            window = self._window(start, end)
            if window is not None:
                out.append(window)
            self.index += 1
        return out

    def finish(self) -> Output:
        """The last windows: those the stream's end (plus one period) completes."""
        return self._advance(self.clock + self.period)

    def _store(self, t: float, value: Any) -> None:
        self.items.append((t, value))
        self.last = t
        self.peak_items = max(self.peak_items, len(self.items))

    def _item_end(self, item: tuple[float, Any]) -> float:
        return item[0]

    def _window(self, start: float, end: float) -> Window | None:
        raise NotImplementedError


class PointStream(Stream):
    """Items at instants: video frames, sensor rows. `prepare` checks and converts one (or raises ValueError)."""

    def __init__(self, modality: str, window: MonitorWindow, settings: MonitorConfig,
                 prepare: Callable[[np.ndarray], np.ndarray], min_items: int = 2):  # fmt: skip
        super().__init__(modality, window, settings)
        self.prepare = prepare
        self.min_items = min_items

    def push(self, t: float, value: np.ndarray) -> Output:
        out = self._advance(t) if math.isfinite(t) else []
        out += self._accept(t)
        if self.disordered:
            return out
        try:
            prepared = self.prepare(np.asarray(value))
        except ValueError as exc:
            return out + self._once(str(exc).split(":")[0], t, str(exc))
        self._store(t, prepared)
        return out

    def _window(self, start: float, end: float) -> Window | None:
        inside = [(t, v) for t, v in self.items if start - EPS <= t < end - EPS]
        if len(inside) < self.min_items:
            return None
        span = inside[-1][0] - inside[0][0] + (self.period or 0.0)
        if span < self.settings.coverage * self.seconds:
            return None
        return Window(self.modality, start, end, np.stack([v for _, v in inside]))


class AudioStream(Stream):
    """Blocks of samples, each with its start time and rate; resampled to `rate`, mixed to mono."""

    def __init__(self, window: MonitorWindow, settings: MonitorConfig, rate: int):
        super().__init__("audio", window, settings)
        self.rate = rate
        self.piece = max(1, int(window.hop * rate))  # blocks are stored in pieces of at most one hop

    def push(self, t0: float, samples: np.ndarray, rate: int) -> Output:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        if samples.ndim != 1 or rate <= 0:
            return self._once("shape", t0, f"audio block of shape {samples.shape} at rate {rate}: expected mono samples at a positive rate")
        if not len(samples):
            return []
        if not np.isfinite(samples).all():
            return self._once("finite", t0, "audio block with non-finite samples")
        if rate != self.rate:
            g = math.gcd(int(rate), self.rate)
            samples = resample_poly(samples, self.rate // g, int(rate) // g).astype(np.float32)
        end = t0 + len(samples) / self.rate
        out = self._accept(t0)
        if self.disordered:
            return out
        overlap = int(round((self._item_end(self.items[-1]) - t0) * self.rate)) if self.items else 0
        if overlap > 0:  # overlaps its predecessor: keep only the new part
            samples, t0 = samples[overlap:], t0 + overlap / self.rate
        for i in range(0, len(samples), self.piece):
            self._store(t0 + i / self.rate, samples[i : i + self.piece])
        return out + self._advance(end)

    def _item_end(self, item: tuple[float, Any]) -> float:
        return item[0] + len(item[1]) / self.rate

    def _gap(self, t: float) -> float:
        return t - self._item_end(self.items[-1]) if self.items else 0.0

    def _window(self, start: float, end: float) -> Window | None:
        parts = []
        for t0, block in self.items:
            a = max(0, int(round((start - t0) * self.rate)))
            b = min(len(block), int(round((end - t0) * self.rate)))
            if b > a:
                parts.append(block[a:b])
        samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        if len(samples) < self.settings.coverage * self.seconds * self.rate:
            return None
        return Window(self.modality, start, end, samples)
