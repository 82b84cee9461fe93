"""The anomaly protocol (SPEC §7) for the dataset's official split, whose TRAIN part is all Good.

Nothing is trained with labels. Per modality, a weld's anomaly score is its mean distance to its
k nearest Good TRAIN welds (untrained features of the one feature path, standardised on those
welds). Scores are standardised with the TRAIN welds' leave-one-out scores, then fused with weights
chosen on VAL by grid search (as the paper did); a missing modality drops out of a weld's weighted
mean. The decision threshold is the equal-error-rate point on VAL.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from weldfusion.data.categories import GOOD
from weldfusion.data.samples import Sample
from weldfusion.errors import InputError
from weldfusion.features import Features, FeatureSource
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.metrics import knn
from weldfusion.metrics.figures import auroc, equal_error_threshold
from weldfusion.metrics.paper import paper_comparison
from weldfusion.registry import MODALITIES
from weldfusion.protocols.base import THRESHOLD_FILE, DefectProtocol, RunData, Scores, Threshold

CONCATENATED = "concatenated"
DEFAULT_Z = 1.645  # no labelled VAL: flag welds 1.645 standard deviations above the Good TRAIN welds


@dataclass
class AnomalyProtocol(DefectProtocol):
    """Everything the scorer needs, saved in RUN/model/: anomaly.json + anomaly_reference.safetensors."""

    name = "anomaly"
    modalities: list[str] = field(default_factory=list)  # fused with `weights`; scores also exist for CONCATENATED
    k: int = 5
    metric: str = "euclidean"
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # standardised features of the Good TRAIN welds
    feature_mean: dict[str, np.ndarray] = field(default_factory=dict)
    feature_std: dict[str, np.ndarray] = field(default_factory=dict)
    score_mean: dict[str, float] = field(default_factory=dict)
    score_std: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    selection: dict = field(default_factory=dict)  # how the weights and threshold were chosen
    reference_keys: dict[str, list[str]] = field(default_factory=dict)  # SUBDIRS of each reference row
    threshold: Threshold | None = None

    @property
    def scored(self) -> list[str]:
        return [*self.modalities, CONCATENATED]

    # -- fitting -------------------------------------------------------------------------------
    def check(self, data: RunData, resume: bool = False) -> None:
        """Enough Good train welds with each modality's untrained representation (checked before anything is written)."""
        if resume:
            raise InputError(f"{data.run.paths.root}: an anomaly run is fitted in one go; there is nothing to resume")
        config = data.run.config
        self.k, self.metric = config.eval.anomaly_k, config.eval.anomaly_metric
        without = [m for m in config.model.modalities if not MODALITIES.get(m).has_untrained(config)]
        if without:
            raise InputError(f"model.modalities: {', '.join(without)} has no representation without training (a trainable "
                             "encoder); the anomaly protocol scores frozen encoders' tokens and the sensor statistics")  # fmt: skip
        self.modalities = list(config.model.modalities)
        self._good = [s for s in data.split("train") if s.label == GOOD]
        if len(self._good) <= self.k:
            raise InputError(f"{data.run.manifest}: the anomaly protocol needs more than {self.k} Good welds in the "
                             f"train split (found {len(self._good)})")  # fmt: skip
        self._train = self._features(self._good, data.features)
        for m in self.scored:
            if self._train[m].available.sum() <= self.k:
                raise InputError(f"{data.run.manifest}: only {int(self._train[m].available.sum())} Good train welds have a "
                                 f"usable {m} (eval.anomaly_k is {self.k}); drop it from model.modalities")  # fmt: skip

    def fit(self, data: RunData, say: Callable[[str], None] = print, **options: object) -> None:
        config, good, train = data.run.config, self._good, self._train
        defects = sum(1 for s in data.split("train") if s.label != GOOD)
        if defects:
            say(f"note: the train split holds {defects} defect welds; the anomaly protocol uses only its Good welds")
        loo_z = {}
        for m in self.scored:
            values = train[m].values[train[m].available]
            self.reference_keys[m] = [s.key for s, ok in zip(good, train[m].available) if ok]
            mean, std = values.mean(0), values.std(0)
            std[std < 1e-8] = 1.0
            self.feature_mean[m], self.feature_std[m] = mean, std
            self.reference[m] = (values - mean) / std
            own = knn.search(self.reference[m], self.reference[m], self.k, self.metric, exclude_self=True).distances.mean(1)
            self.score_mean[m], self.score_std[m] = float(own.mean()), float(max(own.std(), 1e-8))
            loo_z[m] = np.full(len(good), np.nan)
            loo_z[m][train[m].available] = (own - self.score_mean[m]) / self.score_std[m]
        self.weights = {m: 1 / len(self.modalities) for m in self.modalities}
        val = data.split("val")
        self._choose_weights(self._raw_scores(self._features(val, data.features)) if val else {},
                             np.array([s.label != GOOD for s in val]), config.eval.weight_step)  # fmt: skip
        good_scores = fuse({m: loo_z[m] for m in self.modalities}, self.weights)
        self.threshold.good_scores = [round(float(v), 6) for v in good_scores[np.isfinite(good_scores)]]
        weights = ", ".join(f"{m} {w:.1f}" for m, w in self.weights.items())
        say(f"anomaly scorer fitted on {len(good)} Good train welds; weights ({self.selection.get('on')}): {weights}")

    def _choose_weights(self, raw: dict[str, np.ndarray], is_defect: np.ndarray, step: float) -> None:
        """Grid-search the fusion weights for the best VAL AUROC; threshold at VAL's equal error rate."""
        if not len(is_defect) or not 0 < is_defect.sum() < len(is_defect):
            self.threshold = Threshold(DEFAULT_Z, "default z = 1.645 (VAL lacks Good or defect welds); equal weights", [])
            self.selection = {"on": "none (VAL lacks Good or defect welds): equal weights, threshold z = 1.645"}
            return
        standardised = self._standardised(raw)
        best, best_auc = dict(self.weights), None
        for weights in weight_grid(self.modalities, step):
            auc = _auc(is_defect, fuse(standardised, weights))
            if auc is not None and (best_auc is None or auc > best_auc + 1e-12):
                best, best_auc = weights, auc
        self.weights = best
        fused = fuse(standardised, best)
        ok = np.isfinite(fused)
        self.threshold = Threshold(equal_error_threshold(is_defect[ok], fused[ok]), f"val equal error rate ({len(is_defect)} welds)", [])
        self.selection = {"on": "val", "val_auroc": round(best_auc or 0.0, 4), "n_val": int(len(is_defect)), "grid_step": step}

    # -- scoring -------------------------------------------------------------------------------
    def _features(self, samples: list[Sample], features: FeatureSource) -> dict[str, Features]:
        features.prepare(samples)
        per = {m: features.untrained(samples, m) for m in self.modalities}
        parts = list(per.values())
        available = np.all([f.available for f in parts], axis=0)
        reasons = ["; ".join(why for why in whys if why) for whys in zip(*(f.reasons for f in parts))]
        joined = Features(np.concatenate([f.values for f in parts], axis=1), available, reasons)
        return {**per, CONCATENATED: joined}

    def _standardise(self, modality: str, values: np.ndarray) -> np.ndarray:
        return (values - self.feature_mean[modality]) / self.feature_std[modality]

    def _raw_scores(self, features: dict[str, Features]) -> dict[str, np.ndarray]:
        out = {}
        for m in self.scored:
            score = np.full(len(features[m].available), np.nan)
            ok = features[m].available
            if ok.any():
                found = knn.search(self.reference[m], self._standardise(m, features[m].values[ok]), self.k, self.metric)
                score[ok] = found.distances.mean(axis=1)
            out[m] = score
        return out

    def _standardised(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {m: (raw[m] - self.score_mean[m]) / self.score_std[m] for m in self.scored}

    def score(self, samples: list[Sample], features: FeatureSource) -> Scores:
        feats = self._features(samples, features)
        z = self._standardised(self._raw_scores(feats))
        fused = fuse({m: z[m] for m in self.modalities}, self.weights)
        usable = np.isfinite(fused)
        nearest: list[list[dict]] = []
        both = feats[CONCATENATED]
        found = knn.search(self.reference[CONCATENATED], self._standardise(CONCATENATED, both.values[both.available]), self.k, self.metric) if both.available.any() else None
        rows = iter(range(int(both.available.sum())))
        for ok in both.available:
            if not ok:
                nearest.append([])
                continue
            i = next(rows)
            nearest.append([{"key": self.reference_keys[CONCATENATED][j], "category": "Good", "distance": round(float(d), 4)}
                            for j, d in zip(found.indices[i], found.distances[i])])  # fmt: skip
        problems = [{m: feats[m].reasons[i] for m in self.modalities if not feats[m].available[i]} for i in range(len(samples))]
        embedding = np.concatenate([np.nan_to_num(self._standardise(m, feats[m].values)) for m in self.modalities], axis=1)
        return Scores([s.key for s in samples], np.where(usable, fused, np.nan), usable, z, problems, nearest, embedding)

    def configure(self, k: int | None = None, metric: str | None = None) -> bool:
        if (k and k != self.k) or (metric and metric != self.metric):
            raise InputError("--k / --metric: an anomaly run's scores are standardised for the k and metric it was "
                             f"fitted with (k={self.k}, {self.metric}); refit with --set eval.anomaly_k=...")  # fmt: skip
        return False

    @property
    def n_reference(self) -> int:
        return max(len(keys) for keys in self.reference_keys.values())

    def figures(self, data: RunData, query: list[Sample], scores: Scores) -> dict:
        labels = np.array([s.label for s in query])
        per_modality = {}
        for m in self.scored:
            score = scores.modality_scores[m]
            ok = np.isfinite(score)
            overall, per_type = auroc(labels[ok], score[ok]) if ok.any() else (None, {})
            per_modality[m] = {"auroc_defect": overall, "auroc_per_defect": per_type, "n_query": int(ok.sum()),
                               "weight": self.weights.get(m)}  # fmt: skip
        ok = scores.usable
        overall, per_type = auroc(labels[ok], scores.defect_score[ok])
        return {"per_modality": per_modality, "per_modality_caption": "each modality's anomaly score alone, and the fusion weights chosen on VAL",
                "weights": self.weights, "weight_selection": self.selection,
                "paper": paper_comparison(overall, per_type, per_modality), "checkpoint": "model/anomaly.json"}  # fmt: skip

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        tensors = {}
        for m in self.scored:
            tensors[f"{m}.reference"] = torch.from_numpy(self.reference[m].astype(np.float32))
            tensors[f"{m}.mean"] = torch.from_numpy(self.feature_mean[m].astype(np.float32))
            tensors[f"{m}.std"] = torch.from_numpy(self.feature_std[m].astype(np.float32))
        write_atomic(folder / "anomaly_reference.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        write_json_atomic(folder / "anomaly.json", {
            "format": "weldfusion-anomaly", "modalities": self.modalities, "k": self.k, "metric": self.metric,
            "score_mean": self.score_mean, "score_std": self.score_std, "weights": self.weights,
            "selection": self.selection, "reference_keys": self.reference_keys,
        })  # fmt: skip
        if self.threshold is not None:
            self.threshold.save(folder)

    @classmethod
    def load(cls, folder: Path, features: FeatureSource | None = None) -> AnomalyProtocol:
        path = Path(folder) / "anomaly.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            with safe_open(str(Path(folder) / "anomaly_reference.safetensors"), framework="np") as f:
                arrays = {key: f.get_tensor(key).astype(np.float64) for key in f.keys()}
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as exc:
            raise InputError(f"{folder}: missing or damaged anomaly model ({exc.__class__.__name__}: {exc})") from None
        try:
            ms = [*data["modalities"], CONCATENATED]
            return cls(data["modalities"], int(data["k"]), data["metric"], {m: arrays[f"{m}.reference"] for m in ms},
                       {m: arrays[f"{m}.mean"] for m in ms}, {m: arrays[f"{m}.std"] for m in ms}, data["score_mean"],
                       data["score_std"], data["weights"], data["selection"], data["reference_keys"],
                       _threshold(Path(folder), data))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a complete weldfusion anomaly model (missing {exc})") from None


def _threshold(folder: Path, data: dict) -> Threshold | None:
    """threshold.json; models written before it existed kept the threshold in anomaly.json."""
    if (folder / THRESHOLD_FILE).exists():
        return Threshold.load(folder)
    legacy = data.get("threshold")
    return Threshold(float(legacy), "anomaly.json (a model written before threshold.json)", []) if legacy is not None else None


def fuse(standardised: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the standardised scores over the modalities each weld has; a weld whose present
    modalities all have weight 0 gets their plain mean (it is seen, so it is scored)."""
    stacked = np.stack([standardised[m] for m in weights])
    present = np.isfinite(stacked)
    w = np.array([weights[m] for m in weights])[:, None] * present
    w = np.where(w.sum(0) > 0, w, present.astype(float))
    total = w.sum(0)
    fused = np.where(np.isfinite(stacked), stacked, 0.0) * w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, fused.sum(0) / np.where(total > 0, total, 1), np.nan)


def weight_grid(modalities: list[str], step: float) -> list[dict[str, float]]:
    units = int(round(1 / step))
    return [{m: c / units for m, c in zip(modalities, combo)}
            for combo in itertools.product(range(units + 1), repeat=len(modalities)) if sum(combo) == units]  # fmt: skip


def _auc(is_defect: np.ndarray, score: np.ndarray) -> float | None:
    ok = np.isfinite(score)
    y = is_defect[ok]
    return float(roc_auc_score(y, score[ok])) if 0 < y.sum() < len(y) else None
