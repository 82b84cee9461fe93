"""The anomaly protocol (SPEC §7) for the dataset's official split, whose TRAIN part is all Good.

Nothing is trained with labels. Two scorers give each weld a score per modality:
- `tokens` (the default; `protocols/tokens.py`): the max over its tokens of their distance to a
  coreset memory bank of the Good TRAIN welds' tokens, with a profile or heatmap of where it peaks;
- `pooled`: the mean distance of its pooled features (untrained features of the one feature path,
  standardised on the Good TRAIN welds) to its k nearest Good TRAIN welds.
Both are fitted; the configured one decides, the other is reported beside it. Per scorer, the
scores are standardised with the Good TRAIN welds' own (leave-one-out) scores, then
fused with weights chosen on VAL by grid search (as the paper did); a missing modality drops out of
a weld's weighted mean. The decision threshold is the equal-error-rate point on VAL.
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
from weldfusion.protocols.tokens import TokenScorer, TokenScores, TokenSets, localise

CONCATENATED = "concatenated"
TOKEN_BANKS = "anomaly_tokens.safetensors"
DEFAULT_Z = 1.645  # no labelled VAL: flag welds 1.645 standard deviations above the Good TRAIN welds


@dataclass
class Fusion:
    """One scorer's per-modality score standardisation (Good TRAIN), fusion weights and threshold (VAL)."""

    modalities: list[str]
    score_mean: dict[str, float] = field(default_factory=dict)
    score_std: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    selection: dict = field(default_factory=dict)  # how the weights and threshold were chosen
    threshold: Threshold | None = None

    def fit(self, own: dict[str, np.ndarray], val_raw: dict[str, np.ndarray], is_defect: np.ndarray, step: float) -> None:
        """`own`: the Good TRAIN welds' own raw scores (NaN: unusable); `val_raw`: VAL's raw scores."""
        for m, values in own.items():
            ok = values[np.isfinite(values)]
            self.score_mean[m], self.score_std[m] = float(ok.mean()), float(max(ok.std(), 1e-8))
        self.weights = {m: 1 / len(self.modalities) for m in self.modalities}
        self._choose(val_raw, is_defect, step)
        good = self.fused(own)
        self.threshold.good_scores = [round(float(v), 6) for v in good[np.isfinite(good)]]

    def _choose(self, raw: dict[str, np.ndarray], is_defect: np.ndarray, step: float) -> None:
        """Grid-search the fusion weights for the best VAL AUROC; threshold at VAL's equal error rate."""
        if not len(is_defect) or not 0 < is_defect.sum() < len(is_defect):
            self.threshold = Threshold(DEFAULT_Z, "default z = 1.645 (VAL lacks Good or defect welds); equal weights", [])
            self.selection = {"on": "none (VAL lacks Good or defect welds): equal weights, threshold z = 1.645"}
            return
        standardised = self.standardised(raw)
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

    def standardised(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {m: (raw[m] - self.score_mean[m]) / self.score_std[m] for m in raw}

    def fused(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        return fuse({m: v for m, v in self.standardised(raw).items() if m in self.weights}, self.weights)

    def to_json(self) -> dict:
        return {"score_mean": self.score_mean, "score_std": self.score_std, "weights": self.weights, "selection": self.selection}

    @classmethod
    def from_json(cls, modalities: list[str], data: dict, threshold: Threshold | None) -> Fusion:
        return cls(modalities, data["score_mean"], data["score_std"], data["weights"], data["selection"], threshold)


@dataclass
class AnomalyProtocol(DefectProtocol):
    """Everything the scorers need, saved in RUN/model/: anomaly.json + anomaly_reference.safetensors
    (+ token banks)."""

    name = "anomaly"
    modalities: list[str] = field(default_factory=list)  # fused; pooled scores also exist for CONCATENATED
    k: int = 5
    metric: str = "euclidean"
    scorer: str = "pooled"  # which scorer decides: tokens | pooled
    reference: dict[str, np.ndarray] = field(default_factory=dict)  # pooled: standardised features of the Good TRAIN welds
    feature_mean: dict[str, np.ndarray] = field(default_factory=dict)
    feature_std: dict[str, np.ndarray] = field(default_factory=dict)
    reference_keys: dict[str, list[str]] = field(default_factory=dict)  # SUBDIRS of each reference row
    fusions: dict[str, Fusion] = field(default_factory=dict)  # scorer -> its standardisation, weights, threshold
    tokens: TokenScorer | None = None
    threshold: Threshold | None = None  # the deciding scorer's

    @property
    def scored(self) -> list[str]:
        return [*self.modalities, CONCATENATED]

    @property
    def weights(self) -> dict[str, float]:
        return self.fusions[self.scorer].weights

    # -- fitting -------------------------------------------------------------------------------
    def check(self, data: RunData, resume: bool = False) -> None:
        """Enough Good train welds with each modality's untrained representation (checked before anything is written)."""
        if resume:
            raise InputError(f"{data.run.paths.root}: an anomaly run is fitted in one go; there is nothing to resume")
        config = data.run.config
        self.k, self.metric, self.scorer = config.eval.anomaly_k, config.eval.anomaly_metric, config.eval.anomaly_scorer
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
        own = {}
        for m in self.scored:
            values = train[m].values[train[m].available]
            self.reference_keys[m] = [s.key for s, ok in zip(good, train[m].available) if ok]
            mean, std = values.mean(0), values.std(0)
            std[std < 1e-8] = 1.0
            self.feature_mean[m], self.feature_std[m] = mean, std
            self.reference[m] = (values - mean) / std
            own[m] = np.full(len(good), np.nan)
            own[m][train[m].available] = knn.search(self.reference[m], self.reference[m], self.k, self.metric,
                                                    exclude_self=True).distances.mean(1)  # fmt: skip
        val = data.split("val")
        is_defect = np.array([s.label != GOOD for s in val])
        step = config.eval.weight_step
        self.fusions["pooled"] = Fusion(self.modalities)
        self.fusions["pooled"].fit(own, self._pooled_raw(self._features(val, data.features)) if val else {}, is_defect, step)
        e = config.eval
        self.tokens = TokenScorer(self.modalities, e.coreset_ratio, e.token_k, list(e.token_quantiles), config.seed)
        device = data.features.device
        own_tokens = self.tokens.fit(self._token_sets(good, data.features), device, say)
        val_tokens = self.tokens.score_tokens(self._token_sets(val, data.features), device) if val else {}
        tried = self.tokens.choose(val_tokens, is_defect) if val else {}
        self.fusions["tokens"] = Fusion(self.modalities)
        self.fusions["tokens"].fit(self.tokens.pooled(own_tokens), self.tokens.pooled(val_tokens) if val else {}, is_defect, step)
        self.fusions["tokens"].selection["quantiles"] = {"chosen": self.tokens.quantile, "val_auroc": tried}
        self.threshold = self.fusions[self.scorer].threshold
        for name, fusion in self.fusions.items():
            weights = ", ".join(f"{m} {w:.1f}" for m, w in fusion.weights.items())
            say(f"{name} scorer fitted on {len(good)} Good train welds; weights ({fusion.selection.get('on')}): {weights}"
                + (" (decides)" if name == self.scorer else ""))  # fmt: skip

    # -- scoring -------------------------------------------------------------------------------
    def _features(self, samples: list[Sample], features: FeatureSource) -> dict[str, Features]:
        features.prepare(samples)
        per = {m: features.untrained(samples, m) for m in self.modalities}
        parts = list(per.values())
        available = np.all([f.available for f in parts], axis=0)
        reasons = ["; ".join(why for why in whys if why) for whys in zip(*(f.reasons for f in parts))]
        joined = Features(np.concatenate([f.values for f in parts], axis=1), available, reasons)
        return {**per, CONCATENATED: joined}

    def _token_sets(self, samples: list[Sample], features: FeatureSource) -> TokenSets:
        features.prepare(samples)
        return {m: features.tokens(samples, m)[0] for m in self.modalities}

    def _standardise(self, modality: str, values: np.ndarray) -> np.ndarray:
        return (values - self.feature_mean[modality]) / self.feature_std[modality]

    def _pooled_raw(self, features: dict[str, Features]) -> dict[str, np.ndarray]:
        out = {}
        for m in self.scored:
            score = np.full(len(features[m].available), np.nan)
            ok = features[m].available
            if ok.any():
                found = knn.search(self.reference[m], self._standardise(m, features[m].values[ok]), self.k, self.metric)
                score[ok] = found.distances.mean(axis=1)
            out[m] = score
        return out

    def score(self, samples: list[Sample], features: FeatureSource) -> Scores:
        feats = self._features(samples, features)
        pooled = self._pooled_raw(feats)
        located = None
        if self.scorer == "tokens":
            sets = self._token_sets(samples, features)
            per_token = self.tokens.score_tokens(sets, features.device)
            raw = self.tokens.pooled(per_token)
            located = self._localisation(sets, per_token)
        else:
            raw = pooled
        fusion = self.fusions[self.scorer]
        z = fusion.standardised(raw)
        fused = fusion.fused(raw)
        usable = np.isfinite(fused)
        problems = [{m: feats[m].reasons[i] for m in self.modalities if not feats[m].available[i]} for i in range(len(samples))]
        embedding = np.concatenate([np.nan_to_num(self._standardise(m, feats[m].values)) for m in self.modalities], axis=1)
        scores = Scores([s.key for s in samples], np.where(usable, fused, np.nan), usable, z, problems,
                        self._nearest(feats[CONCATENATED]), embedding, localisation=located)  # fmt: skip
        scores.alternative = {**self.fusions["pooled"].standardised(pooled), "fused": self.fusions["pooled"].fused(pooled)}
        return scores

    def _nearest(self, both: Features) -> list[list[dict]]:
        """Per weld, its nearest Good TRAIN welds by pooled features (all modalities together)."""
        if not both.available.any():
            return [[] for _ in both.available]
        found = knn.search(self.reference[CONCATENATED], self._standardise(CONCATENATED, both.values[both.available]), self.k, self.metric)
        rows = iter(range(int(both.available.sum())))
        nearest = []
        for ok in both.available:
            i = next(rows) if ok else None
            nearest.append([] if i is None else [{"key": self.reference_keys[CONCATENATED][j], "category": "Good", "distance": round(float(d), 4)}
                                                 for j, d in zip(found.indices[i], found.distances[i])])  # fmt: skip
        return nearest

    def _localisation(self, sets: TokenSets, per_token: TokenScores) -> list[dict]:
        """Per weld and modality, where its token scores (standardised like its modality score) peak."""
        fusion = self.fusions["tokens"]
        return [{m: localise(sets[m][i], (per_token[m][i] - fusion.score_mean[m]) / fusion.score_std[m])
                 for m in self.modalities if per_token[m][i] is not None} for i in range(len(next(iter(sets.values()))))]  # fmt: skip

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
        per_modality = {m: self._modality_figures(labels, scores.modality_scores[m], self.weights.get(m)) for m in scores.modality_scores}
        scorers = {self.scorer: self._scorer_figures(labels, scores.defect_score, scores.modality_scores)}
        if self.scorer != "pooled":
            pooled = scores.alternative
            scorers["pooled"] = self._scorer_figures(labels, pooled["fused"], {m: pooled[m] for m in self.scored})
        ok = scores.usable
        overall, per_type = auroc(labels[ok], scores.defect_score[ok])
        return {"per_modality": per_modality, "scorer": self.scorer, "scorers": scorers,
                "per_modality_caption": f"each modality's {self.scorer} anomaly score alone, and the fusion weights chosen on VAL",
                "weights": self.weights, "weight_selection": self.fusions[self.scorer].selection,
                "token_banks": self.tokens.settings() if self.tokens else None,
                "paper": paper_comparison(overall, per_type, per_modality), "checkpoint": "model/anomaly.json"}  # fmt: skip

    @staticmethod
    def _modality_figures(labels: np.ndarray, score: np.ndarray, weight: float | None) -> dict:
        ok = np.isfinite(score)
        overall, per_type = auroc(labels[ok], score[ok]) if ok.any() else (None, {})
        return {"auroc_defect": overall, "auroc_per_defect": per_type, "n_query": int(ok.sum()), "weight": weight}

    def _scorer_figures(self, labels: np.ndarray, fused: np.ndarray, per_modality: dict[str, np.ndarray]) -> dict:
        """One scorer's fused and per-modality AUROCs (the report shows the scorers side by side)."""
        ok = np.isfinite(fused)
        overall, per_type = auroc(labels[ok], fused[ok]) if ok.any() else (None, {})
        return {"auroc_defect": overall, "auroc_per_defect": per_type,
                "per_modality": {m: self._modality_figures(labels, v, None)["auroc_defect"] for m, v in per_modality.items()}}  # fmt: skip

    # -- persistence ---------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        tensors = {}
        for m in self.scored:
            tensors[f"{m}.reference"] = torch.from_numpy(self.reference[m].astype(np.float32))
            tensors[f"{m}.mean"] = torch.from_numpy(self.feature_mean[m].astype(np.float32))
            tensors[f"{m}.std"] = torch.from_numpy(self.feature_std[m].astype(np.float32))
        write_atomic(folder / "anomaly_reference.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        if self.tokens is not None:
            write_atomic(folder / TOKEN_BANKS, lambda tmp: save_file(self.tokens.tensors(), str(tmp)))
        pooled = self.fusions["pooled"]
        write_json_atomic(folder / "anomaly.json", {
            "format": "weldfusion-anomaly", "modalities": self.modalities, "k": self.k, "metric": self.metric,
            "scorer": self.scorer, **pooled.to_json(), "reference_keys": self.reference_keys,
            "tokens": {**self.fusions["tokens"].to_json(), **self.tokens.settings()} if self.tokens else None,
        })  # fmt: skip
        self.threshold.save(folder)

    @classmethod
    def load(cls, folder: Path, features: FeatureSource | None = None) -> AnomalyProtocol:
        """A fitted model; one written before the token scorer (no `scorer` key) loads as pooled."""
        folder = Path(folder)
        path = folder / "anomaly.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            arrays = {key: value.astype(np.float64) for key, value in _arrays(folder / "anomaly_reference.safetensors").items()}
            scorer = data.get("scorer", "pooled")
            banks = _arrays(folder / TOKEN_BANKS) if data.get("tokens") else {}
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as exc:
            raise InputError(f"{folder}: missing or damaged anomaly model ({exc.__class__.__name__}: {exc})") from None
        try:
            modalities = data["modalities"]
            ms = [*modalities, CONCATENATED]
            threshold = _threshold(folder, data)
            fusions = {"pooled": Fusion.from_json(modalities, data, threshold if scorer == "pooled" else None)}
            tokens = None
            if data.get("tokens"):
                fusions["tokens"] = Fusion.from_json(modalities, data["tokens"], threshold if scorer == "tokens" else None)
                tokens = TokenScorer.restore(modalities, data["tokens"], banks)
            return cls(modalities, int(data["k"]), data["metric"], scorer, {m: arrays[f"{m}.reference"] for m in ms},
                       {m: arrays[f"{m}.mean"] for m in ms}, {m: arrays[f"{m}.std"] for m in ms}, data["reference_keys"],
                       fusions, tokens, threshold)  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: not a complete weldfusion anomaly model (missing {exc})") from None


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="np") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


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
