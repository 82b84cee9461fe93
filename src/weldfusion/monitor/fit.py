"""Fitting the monitor of an anomaly run (once; RUN/model/monitor/, under the run's lock).

1. The Good TRAIN welds are replayed through the streaming API; every window's tokens are kept.
2. Per modality, the Good windows' score statistics come from two halves of those welds (seeded):
   each half's windows are scored against a bank built from the other half's tokens, so no window
   is scored against its own weld. The bank kept is a greedy coreset of all the tokens.
3. The VAL welds are replayed with that bank; the alert threshold is the lowest at which the VAL Good
   welds raise at most `false_alerts_per_weld` alerts each (`alerts.choose_threshold`).
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

DEFAULT_THRESHOLD = 3.0  # standardised score, when VAL has no Good weld


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
        mean, std, banks = {}, {}, {}
        for m in modalities:
            per_weld = [t for t in tokens[m] if t]
            if len(per_weld) < 2:
                raise InputError(f"{run.manifest}: fewer than 2 Good TRAIN welds give {m} windows; drop it from monitor.modalities")
            mean[m], std[m] = standardisation(cross_scores(per_weld, settings.bank_ratio, settings.bank_max, config.seed))
            banks[m] = bank_of([w for weld in per_weld for w in weld], settings.bank_ratio, settings.bank_max, config.seed)
        weights = AnomalyProtocol.load(run.paths.model).weights
        model = MonitorModel(settings, banks, mean, std, {m: float(weights.get(m, 0.0)) for m in modalities}, np.inf, "", stats)
        choose_alert_threshold(model, data.split("val"), run, encoder)
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
    return MemoryBank.build(tokens, min(ratio, cap / len(tokens)), seed)


def cross_scores(per_weld: list[list[np.ndarray]], ratio: float, cap: int, seed: int) -> np.ndarray:
    """Every window's score against a bank of the other half of the welds (two seeded halves)."""
    order = np.random.default_rng(seed).permutation(len(per_weld))
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    scores = []
    for held, other in (halves, halves[::-1]):
        bank = bank_of([w for i in other for w in per_weld[i]], ratio, cap, seed)
        scores += [float(bank.distances(w).max()) for i in held for w in per_weld[i]]
    return np.array(scores)


def choose_alert_threshold(model: MonitorModel, val: list[Sample], run: Run, encoder: WindowEncoder) -> None:
    """Replay the VAL welds; threshold from their Good welds' fused scores; figures of both kinds."""
    settings = model.settings
    fused: list[tuple[int, list[float]]] = []
    for sample in val:
        session = WeldSession(sample.key, run.config, encoder, model.modalities, model.score, model.weights, np.inf)
        session.trace = []
        replay(session, sample, run.config)
        fused.append((sample.label, session.trace))
    good = [scores for label, scores in fused if label == GOOD]
    defects = [scores for label, scores in fused if label != GOOD]
    k, m = settings.alert_k, settings.alert_m
    if good:
        model.threshold = choose_threshold(good, k, m, settings.false_alerts_per_weld)
        model.chosen_on = f"{len(good)} VAL Good welds, at most {settings.false_alerts_per_weld:g} false alerts per weld"
    else:
        model.threshold = DEFAULT_THRESHOLD
        model.chosen_on = f"default {DEFAULT_THRESHOLD:g} (VAL has no Good weld)"
    model.fitted["val"] = {
        "good_welds": len(good), "defect_welds": len(defects),
        "false_alerts_per_good_weld": round(sum(alerts(s, k, m, model.threshold) for s in good) / len(good), 4) if good else None,
        "defects_alerted": round(float(np.mean([max(levels_of(s, k, m), default=-np.inf) >= model.threshold for s in defects])), 4) if defects else None,
    }  # fmt: skip
