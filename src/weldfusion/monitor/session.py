"""The streaming API: a `Monitor` loaded once from an anomaly run, a `WeldSession` per weld.

    monitor = Monitor.load(run)                      # fits RUN/model/monitor/ the first time
    weld = monitor.start("weld-17", ["video", "audio", "sensor"])
    events = weld.video(t, frame) + weld.audio(t0, samples, rate) + weld.sensor(t, row) + ... + weld.finish()

Each call returns the events it caused (JSON-ready dicts): `window` (a fused window: the modalities'
standardised scores and the fused score), `alert`, `problem` and, from `finish`, the `verdict`. Times
are seconds from the start of the weld's recordings. Fused windows come every `tick` seconds once every
live modality's stream has reached that time; a modality `stall_seconds` behind the others is reported
stopped and fusion goes on without it (it rejoins when its data resumes).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from weldfusion.config import Config
from weldfusion.errors import InputError
from weldfusion.models.devices import resolve_device
from weldfusion.monitor.alerts import Hysteresis, fuse
from weldfusion.monitor.model import FOLDER, MonitorModel
from weldfusion.monitor.streams import EPS, AudioStream, Output, PointStream, Problem, Stream, Window
from weldfusion.monitor.tokens import WindowEncoder
from weldfusion.runs import Run, open_run

Event = dict
Scorer = Callable[[str, np.ndarray], tuple[float, float]]  # (modality, tokens) -> (raw, standardised)


class Monitor:
    def __init__(self, run: Run, model: MonitorModel, encoder: WindowEncoder):
        self.run, self.model, self.encoder = run, model, encoder
        self.settings = model.settings

    @classmethod
    def load(cls, run_path: Path, say: Callable[[str], None] = print, device: torch.device | str | None = None) -> Monitor:
        """The monitor of an anomaly run; its banks and threshold are fitted on first use (`fit_monitor`)."""
        from weldfusion.monitor.fit import fit_monitor  # fit replays welds through this module

        run = anomaly_run(run_path)
        folder = run.paths.model / FOLDER
        if not (folder / "monitor.json").is_file():
            fit_monitor(run_path, say=say, device=device)
        model = MonitorModel.load(folder)
        if model.settings != run.config.monitor:
            raise InputError(f"{folder}: fitted with other monitor settings than {run.paths.config}; delete the folder to refit")
        return cls(run, model, WindowEncoder(run.config, model.modalities, model.sensor_stats, resolve_device() if device is None else torch.device(device)))

    def start(self, weld: str, modalities: list[str] | None = None) -> WeldSession:
        """A weld whose recordings start now; `modalities`: the ones expected (default: all monitored)."""
        expected = [m for m in self.model.modalities if modalities is None or m in modalities]
        return WeldSession(weld, self.run.config, self.encoder, expected, self.model.score, self.model.weights, self.model.threshold)


def anomaly_run(run_path: Path) -> Run:
    run = open_run(run_path)
    if run.protocol != "anomaly":
        raise InputError(f"{run.paths.root}: holds a {run.protocol} run; the monitor scores windows against Good welds "
                         "and needs an anomaly run (weldfusion train ROOT --out RUN --protocol anomaly)")  # fmt: skip
    return run


class WeldSession:
    """One weld being watched. Push chunks in arrival order; `finish` at the end of the weld."""

    def __init__(self, weld: str, config: Config, encoder: WindowEncoder, modalities: list[str], scorer: Scorer,
                 weights: dict[str, float], threshold: float):  # fmt: skip
        self.weld, self.encoder, self.scorer, self.weights = weld, encoder, scorer, weights
        self.settings = s = config.monitor
        self.streams: dict[str, Stream] = {}
        for m in modalities:
            if m == "audio":
                self.streams[m] = AudioStream(s.audio, s, encoder.sample_rate)
            else:
                prepare = self._frame_check() if m == "video" else encoder.row
                self.streams[m] = PointStream(m, s.window(m), s, prepare, min_items=2)
        # modality -> its recent windows (end, raw, standardised): enough to fuse ticks held back by a lagging modality
        self.recent = {m: deque(maxlen=math.ceil(s.stall_seconds / s.window(m).hop) + 4) for m in modalities}
        self.stopped: set[str] = set()
        self.broken: set[str] = set()  # its windows cannot be scored any more (encoder failure)
        self.rule = Hysteresis(s.alert_k, s.alert_m, threshold)
        self.threshold = threshold
        self.tick = 1
        self.level = -math.inf
        self.peak_z: dict[str, float] = {}
        self.alerts = 0
        self.first_alert: float | None = None
        self.problems = 0
        self.windows = 0
        self.finished = False
        self.trace: list[float] | None = None  # when a list: every fused score, unrounded (fitting the threshold)

    # -- chunks ----------------------------------------------------------------------------------
    def video(self, t: float, frame: np.ndarray) -> list[Event]:
        return self._push("video", lambda s: s.push(t, frame))

    def sensor(self, t: float, values: np.ndarray) -> list[Event]:
        return self._push("sensor", lambda s: s.push(t, values))

    def audio(self, t0: float, samples: np.ndarray, rate: int) -> list[Event]:
        return self._push("audio", lambda s: s.push(t0, samples, rate))

    def report(self, modality: str, message: str, t: float | None = None) -> list[Event]:
        """A problem found outside the monitor (a reader's, a replay's)."""
        clock = self.streams[modality].clock if modality in self.streams else 0.0
        return [self._problem(modality, clock if t is None else t, message)]

    def drop(self, modality: str) -> None:
        """Expect no data of `modality` in this weld (its file is missing): fusion never waits for it."""
        self.streams.pop(modality, None)
        self.recent.pop(modality, None)

    def finish(self) -> list[Event]:
        """Score the last windows, fuse up to the end of the longest stream, and give the verdict."""
        if self.finished:
            return []
        self.finished = True
        events: list[Event] = []
        for m, stream in self.streams.items():
            events += self._handle(m, stream.finish())
        end = max((s.clock for s in self.streams.values()), default=0.0)
        while self.tick * self.settings.tick <= end + EPS:
            events += self._fuse(self.tick * self.settings.tick)
            self.tick += 1
        return events + [self._verdict(end)]

    # -- internals -------------------------------------------------------------------------------
    def _push(self, modality: str, push: Callable[[Stream], Output]) -> list[Event]:
        stream = self.streams.get(modality)
        if stream is None or self.finished:
            return []
        try:
            out = push(stream)
        except Exception as exc:  # noqa: BLE001 - one modality's failure must not end the others
            out = [Problem(modality, stream.clock, f"chunk refused ({exc.__class__.__name__}: {exc})")]
        events = self._handle(modality, out)
        if modality in self.stopped and stream.last is not None and stream.clock >= self._lead() - self.settings.stall_seconds:
            self.stopped.discard(modality)
            events.append(self._problem(modality, stream.clock, f"{modality} data resumed at {stream.clock:.2f} s"))
        return events + self._stalls() + self._ready()

    def _handle(self, modality: str, out: Output) -> list[Event]:
        events = []
        for item in out:
            if isinstance(item, Problem):
                events.append(self._problem(item.modality, item.t, item.message))
            elif modality not in self.broken:
                events += self._score(item)
        return events

    def _score(self, window: Window) -> list[Event]:
        try:
            raw, z = self.scorer(window.modality, self.encoder.tokens(window.modality, window.data))
        except Exception as exc:  # noqa: BLE001
            self.broken.add(window.modality)
            return [self._problem(window.modality, window.end, f"window not scored ({exc.__class__.__name__}: {exc}); "
                                  f"{window.modality} left out for the rest of this weld")]  # fmt: skip
        self.recent[window.modality].append((window.end, raw, z))
        return []

    def _lead(self) -> float:
        return max((s.clock for s in self.streams.values() if s.last is not None), default=0.0)

    def _stalls(self) -> list[Event]:
        lead, events = self._lead(), []
        for m, stream in self.streams.items():
            if m not in self.stopped and lead - stream.clock > self.settings.stall_seconds:
                self.stopped.add(m)
                what = f"no {m} data since {stream.clock:.2f} s" if stream.last is not None else f"no {m} data at all"
                events.append(self._problem(m, lead, f"{what} while the others reached {lead:.2f} s; fusing without it"))
        return events

    def _ready(self) -> list[Event]:
        """Fused windows for every tick that every live modality has reached."""
        live = [s for m, s in self.streams.items() if m not in self.stopped and m not in self.broken]
        events = []
        while live and all(s.clock >= self.tick * self.settings.tick - EPS for s in live):
            events += self._fuse(self.tick * self.settings.tick)
            self.tick += 1
        return events

    def _fuse(self, t: float) -> list[Event]:
        fresh = {}  # per modality: its last window ending by t, if it ended within a hop (or tick) of t
        for m, windows in self.recent.items():
            done = [w for w in windows if w[0] <= t + EPS]
            if done and done[-1][0] > t - max(self.settings.window(m).hop, self.settings.tick) and np.isfinite(done[-1][2]):
                fresh[m] = done[-1]
        if not fresh:
            return []
        z = {m: v[2] for m, v in fresh.items()}
        score = fuse(z, self.weights, self.settings.fusion)
        if self.trace is not None:
            self.trace.append(score)
        level, fired = self.rule.update(score)
        self.windows += 1
        self.level = max(self.level, level if np.isfinite(level) else score)
        for m, value in z.items():
            self.peak_z[m] = max(self.peak_z.get(m, -math.inf), value)
        span = [round(min(v[0] - self.settings.window(m).seconds for m, v in fresh.items()), 3), round(t, 3)]
        events = [self._event("window", t, {m: round(v, 4) for m, v in z.items()}, score, window=span, level=_num(level))]
        if fired:
            self.alerts += 1
            self.first_alert = t if self.first_alert is None else self.first_alert
            cause = [m for m, v in z.items() if v >= self.threshold] or [max(z, key=lambda m: z[m])]
            events.append(self._event("alert", t, {m: round(z[m], 4) for m in cause}, score, window=span, level=_num(level),
                                      threshold=round(self.threshold, 4), episode=self.alerts))  # fmt: skip
        return events

    def _verdict(self, end: float) -> Event:
        score = self.level if np.isfinite(self.level) else None
        decision = None if score is None else ("defect" if self.alerts else "good")
        return self._event("verdict", end, {m: round(v, 4) for m, v in self.peak_z.items()}, score, decision=decision,
                           threshold=round(self.threshold, 4), alerts=self.alerts, first_alert=self.first_alert,
                           windows=self.windows, problems=self.problems)  # fmt: skip

    def _problem(self, modality: str, t: float, message: str) -> Event:
        self.problems += 1
        return self._event("problem", t, {modality: message}, None, problem=f"{modality}: {message}")

    def _event(self, kind: str, t: float, modalities: dict, score: float | None, **extra: object) -> Event:
        return {"type": kind, "weld": self.weld, "t": round(float(t), 3), "modalities": modalities, "score": _num(score), **extra}

    def _frame_check(self) -> Callable[[np.ndarray], np.ndarray]:
        """Video frames: all of the first frame's size (a different one is a problem), then resized."""
        size: list[tuple[int, ...]] = []

        def prepare(frame: np.ndarray) -> np.ndarray:
            if not size:
                size.append(frame.shape)
            elif frame.shape != size[0]:
                raise ValueError(f"frame size: a {'x'.join(map(str, frame.shape))} frame in a stream of {'x'.join(map(str, size[0]))} frames")
            return self.encoder.frame(frame)

        return prepare

    @property
    def peak_items(self) -> dict[str, int]:
        return {m: s.peak_items for m, s in self.streams.items()}


def _num(value: float | None) -> float | None:
    return round(float(value), 4) if value is not None and np.isfinite(value) else None
