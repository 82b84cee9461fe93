"""Fitting the monitor of an anomaly run (once; RUN/model/monitor/, under the run's lock).

1. The Good TRAIN welds are replayed through the streaming API; every window's tokens are kept.
2. Those welds are split in two halves by session (seeded; a session's welds stay together, as new
   sessions on the line are unseen ones). Per modality, the Good windows' score statistics come from
   each half's windows scored against a bank of the other half's tokens. The bank kept holds all the
   tokens (a greedy coreset beyond `bank_max`).
3. Good welds of unseen sessions: each half's welds are replayed against the other half's banks, and
   the VAL welds against the full banks. The alert threshold is the lowest at which those Good welds
   raise at most `false_alerts_per_weld` alerts each (`alerts.choose_threshold`): the VAL Good welds
   alone are few and from few sessions, and a threshold fitted to them alone flags new sessions.
Nothing else in the run folder is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from weldfusion.data.categories import GOOD
from weldfusion.data.samples import Sample
from weldfusion.data.transforms import ChannelStats
from weldfusion.errors import InputError
from weldfusion.models.bank import MemoryBank
from weldfusion.models.devices import resolve_device
from weldfusion.monitor.alerts import alerts, choose_threshold, levels_of
from weldfusion.monitor.model import FOLDER, MonitorModel, as_tensor, standardisation
from weldfusion.monitor.replay import replay
from weldfusion.monitor.session import WeldSession, anomaly_run
from weldfusion.monitor.tokens import WindowEncoder
from weldfusion.protocols.anomaly import AnomalyProtocol
from weldfusion.runs import Run, load_run_data, load_standardisation, locked



def fit_monitor(run_path: Path, say: Callable[[str], None] = print, device: torch.device | str | None = None) -> MonitorModel:
    run = anomaly_run(run_path)
    config, settings = run.config, run.config.monitor
    device = resolve_device() if device is None else torch.device(device)
    modalities = [m for m in settings.modalities if m in config.model.modalities]
    if not modalities:
        raise InputError(f"{run.paths.config}: monitor.modalities {settings.modalities} has none of the run's model.modalities")
    with locked(run.paths.root):
        data = load_run_data(run, prepare=False)
        good = [s for s in data.split("train") if s.label == GOOD]
        if len(good) < 2:
            raise InputError(f"{run.manifest}: the monitor needs at least 2 Good TRAIN welds (found {len(good)})")
        say(f"note: fitting the monitor once on {len(good)} Good TRAIN welds ({', '.join(modalities)} windows); "
            f"saved in {run.paths.model / FOLDER}")  # fmt: skip
        stats = sensor_stats(run, data.features.fit_standardisation, good) if "sensor" in modalities else None
        encoder = WindowEncoder(config, modalities, stats, device)
        tokens = collect_tokens(good, run, encoder, modalities)
        halves = session_halves(good, config.seed)
        mean, std, banks, half_banks = {}, {}, {}, {}
        for m in modalities:
            if sum(bool(w) for w in tokens[m]) < 2 or not all(any(tokens[m][i] for i in half) for half in halves):
                raise InputError(f"{run.manifest}: too few Good TRAIN welds give {m} windows; drop it from monitor.modalities")
            half_banks[m] = [bank_of([w for i in half for w in tokens[m][i]], settings.bank_ratio, settings.bank_max, config.seed)
                             for half in halves]  # fmt: skip
            cross = [float(half_banks[m][1 - h].distances(w).max()) for h, half in enumerate(halves) for i in half for w in tokens[m][i]]
            mean[m], std[m] = standardisation(np.array(cross))
            banks[m] = bank_of([w for weld in tokens[m] for w in weld], settings.bank_ratio, settings.bank_max, config.seed)
        weights = {m: float(AnomalyProtocol.load(run.paths.model).weights.get(m, 0.0)) for m in modalities}
        model = MonitorModel(settings, banks, mean, std, weights, np.inf, "", stats)
        unseen = []
        for h, half in enumerate(halves):
            other = MonitorModel(settings, {m: half_banks[m][1 - h] for m in modalities}, mean, std, weights, np.inf, "", stats)
            unseen += [fused_trace(good[i], run, encoder, other) for i in half]
        choose_alert_threshold(model, data.split("val"), run, encoder, unseen)
        model.fitted.update(good_train=len(good), windows={m: sum(len(w) for w in tokens[m]) for m in modalities})
        model.save(run.paths.model / FOLDER)
    say(f"monitor fitted: threshold {model.threshold:.3f} ({model.chosen_on})")
    return model


def sensor_stats(run: Run, fit: Callable[[list[Sample]], dict], good: list[Sample]) -> ChannelStats:
    """The run's sensor channel statistics (RUN/standardisation.json), else fitted on the Good TRAIN welds
    as training fits them."""
    return load_standardisation(run.paths.standardisation).get("sensor") or fit(good)["sensor"]


def collect_tokens(welds: list[Sample], run: Run, encoder: WindowEncoder, modalities: list[str]) -> dict[str, list[list[np.ndarray]]]:
    """modality -> per weld -> its windows' tokens, through the streaming API."""
    out: dict[str, list[list[np.ndarray]]] = {m: [] for m in modalities}
    for sample in welds:
        kept: dict[str, list[np.ndarray]] = {m: [] for m in modalities}

        def keep(modality: str, tokens: np.ndarray) -> tuple[float, float]:
            kept[modality].append(tokens)
            return np.nan, np.nan

        replay(WeldSession(sample.key, run.config, encoder, modalities, keep, {}, np.inf), sample, run.config)
        for m in modalities:
            out[m].append(kept[m])
    return out


def bank_of(windows: list[np.ndarray], ratio: float, cap: int, seed: int) -> MemoryBank:
    tokens = as_tensor(windows)
    return MemoryBank.build(tokens, torch.zeros(len(tokens)), min(ratio, cap / len(tokens)), seed)  # owners unused


def session_halves(welds: list[Sample], seed: int) -> list[list[int]]:
    """Two halves of the welds' indices, whole sessions each (seeded, the larger sessions first, each to
    the smaller half); by weld when they all share one session."""
    sessions: dict[str, list[int]] = {}
    for i, weld in enumerate(welds):
        sessions.setdefault(weld.session, []).append(i)
    groups = list(sessions.values()) if len(sessions) > 1 else [[i] for i in range(len(welds))]
    order = np.random.default_rng(seed).permutation(len(groups))
    halves: list[list[int]] = [[], []]
    for g in sorted(order, key=lambda g: -len(groups[g])):
        min(halves, key=len).extend(groups[g])
    return halves


def fused_trace(sample: Sample, run: Run, encoder: WindowEncoder, model: MonitorModel) -> list[float]:
    """One weld's fused window scores under `model` (no alerts), replayed through the streaming API."""
    session = WeldSession(sample.key, run.config, encoder, model.modalities, model.score, model.weights, np.inf)
    session.trace = []
    replay(session, sample, run.config)
    return session.trace


def choose_alert_threshold(model: MonitorModel, val: list[Sample], run: Run, encoder: WindowEncoder, unseen: list[list[float]]) -> None:
    """Replay the VAL welds; threshold from their Good welds' and the `unseen` Good TRAIN welds' fused
    scores; the VAL figures at that threshold."""
    settings = model.settings
    fused = [(sample.label, fused_trace(sample, run, encoder, model)) for sample in val]
    good = [scores for label, scores in fused if label == GOOD]
    defects = [scores for label, scores in fused if label != GOOD]
    k, m = settings.alert_k, settings.alert_m
    model.threshold = choose_threshold(good + unseen, k, m, settings.false_alerts_per_weld)
    model.chosen_on = (f"{len(good)} VAL Good welds and {len(unseen)} Good TRAIN welds against banks of other sessions, "
                       f"at most {settings.false_alerts_per_weld:g} alerts per weld")  # fmt: skip
    rate = lambda welds: round(sum(alerts(s, k, m, model.threshold) for s in welds) / len(welds), 4) if welds else None  # noqa: E731
    model.fitted["val"] = {
        "good_welds": len(good), "defect_welds": len(defects), "false_alerts_per_good_weld": rate(good),
        "defects_alerted": round(float(np.mean([max(levels_of(s, k, m), default=-np.inf) >= model.threshold for s in defects])), 4) if defects else None,
    }  # fmt: skip
    model.fitted["train_unseen_sessions"] = {"good_welds": len(unseen), "false_alerts_per_good_weld": rate(unseen)}
