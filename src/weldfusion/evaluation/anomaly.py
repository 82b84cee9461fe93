"""The anomaly protocol (SPEC §7) for the dataset's official split, whose TRAIN part is all Good.

Nothing is trained with labels. Per modality, a weld's anomaly score is its mean distance to its
k nearest Good TRAIN welds (features of `features.py`, standardised on those welds). Scores are
standardised with the TRAIN welds' leave-one-out scores, then fused with weights chosen on VAL by
grid search (as the paper did); a missing modality drops out of a weld's weighted mean. The
decision threshold is the equal-error-rate point on VAL.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score

from weldfusion import __version__
from weldfusion.config import Config, save_config
from weldfusion.data.categories import CATEGORIES, GOOD
from weldfusion.data.samples import Sample
from weldfusion.errors import InputError
from weldfusion.evaluation import knn
from weldfusion.evaluation.classify import Outcome
from weldfusion.evaluation.context import EvalContext, open_context
from weldfusion.evaluation.features import Features, modality_features
from weldfusion.evaluation.metrics import auroc, decision_figures, equal_error_threshold
from weldfusion.evaluation.reference import PAPER_OVERALL, PAPER_PER_DEFECT
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.training.run import RunPaths

FUSED = "fused"
CONCATENATED = "concatenated"


@dataclass
class AnomalyModel:
    """Everything the scorer needs, saved in RUN/model/: anomaly.json + anomaly_reference.safetensors."""

    modalities: list[str]  # fused with `weights`; scores also exist for CONCATENATED
    k: int
    metric: str
    reference: dict[str, np.ndarray]  # modality -> standardised features of the Good TRAIN welds
    feature_mean: dict[str, np.ndarray]
    feature_std: dict[str, np.ndarray]
    score_mean: dict[str, float]
    score_std: dict[str, float]
    weights: dict[str, float]
    threshold: float
    selection: dict  # how the weights and threshold were chosen (VAL AUROC, n)
    reference_keys: dict[str, list[str]]  # SUBDIRS of each reference row

    def standardise(self, modality: str, values: np.ndarray) -> np.ndarray:
        return (values - self.feature_mean[modality]) / self.feature_std[modality]

    @property
    def scored(self) -> list[str]:
        return [*self.modalities, CONCATENATED]

    def scores(self, features: dict[str, Features]) -> dict[str, np.ndarray]:
        """Raw anomaly scores per modality and for the concatenated features (NaN where missing), and fused."""
        out = {}
        for m in self.scored:
            score = np.full(len(features[m].available), np.nan)
            ok = features[m].available
            if ok.any():
                neighbours = knn.search(self.reference[m], self.standardise(m, features[m].values[ok]), self.k, self.metric)
                score[ok] = neighbours.distances.mean(axis=1)
            out[m] = score
        out[FUSED] = fuse({m: (out[m] - self.score_mean[m]) / self.score_std[m] for m in self.modalities}, self.weights)
        return out

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
            "threshold": self.threshold, "selection": self.selection, "reference_keys": self.reference_keys,
        })  # fmt: skip

    @classmethod
    def load(cls, folder: Path) -> AnomalyModel:
        path = Path(folder) / "anomaly.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            with safe_open(str(Path(folder) / "anomaly_reference.safetensors"), framework="np") as f:
                arrays = {key: f.get_tensor(key).astype(np.float64) for key in f.keys()}
        except (OSError, json.JSONDecodeError, SafetensorError) as exc:
            raise InputError(f"{folder}: missing or damaged anomaly model ({exc})") from None
        try:
            ms = [*data["modalities"], CONCATENATED]
            return cls(data["modalities"], data["k"], data["metric"], {m: arrays[f"{m}.reference"] for m in ms},
                       {m: arrays[f"{m}.mean"] for m in ms}, {m: arrays[f"{m}.std"] for m in ms}, data["score_mean"],
                       data["score_std"], data["weights"], data["threshold"], data["selection"], data["reference_keys"])  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a complete weldfusion anomaly model (missing {exc})") from None


def fuse(standardised: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted mean of the standardised scores over the modalities each weld has."""
    stacked = np.stack([standardised[m] for m in weights])
    w = np.array([weights[m] for m in weights])[:, None] * np.isfinite(stacked)
    total = w.sum(0)
    fused = np.where(np.isfinite(stacked), stacked, 0.0) * w
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, fused.sum(0) / np.where(total > 0, total, 1), np.nan)


def weight_grid(modalities: list[str], step: float) -> list[dict[str, float]]:
    units = int(round(1 / step))
    grid = []
    for combo in itertools.product(range(units + 1), repeat=len(modalities)):
        if sum(combo) == units:
            grid.append({m: c / units for m, c in zip(modalities, combo)})
    return grid


def _auc(is_defect: np.ndarray, score: np.ndarray) -> float | None:
    ok = np.isfinite(score)
    y = is_defect[ok]
    return float(roc_auc_score(y, score[ok])) if 0 < y.sum() < len(y) else None


def with_concatenation(features: dict[str, Features]) -> dict[str, Features]:
    """Add the concatenation of all modalities' features, for the welds that have all of them."""
    parts = list(features.values())
    joined = Features(np.concatenate([f.values for f in parts], axis=1), np.all([f.available for f in parts], axis=0))
    return {**features, CONCATENATED: joined}


def features_of(samples: list[Sample], ctx: EvalContext, modalities: list[str]) -> dict[str, Features]:
    return with_concatenation({m: modality_features(samples, m, ctx.caches, ctx.config, ctx.transforms) for m in modalities})


def fit_model(ctx: EvalContext) -> AnomalyModel:
    config = ctx.config
    modalities = [m for m in config.model.modalities if m in ctx.caches or m == "sensor"]
    good = [s for s in ctx.split("train") if s.label == GOOD]
    if len(good) <= config.eval.anomaly_k:
        raise InputError(f"{ctx.manifest}: the anomaly protocol needs more than {config.eval.anomaly_k} Good welds in "
                         f"the train split (found {len(good)})")  # fmt: skip
    train = features_of(good, ctx, modalities)
    reference, mean, std, score_mean, score_std, keys = {}, {}, {}, {}, {}, {}
    for m in [*modalities, CONCATENATED]:
        values = train[m].values[train[m].available]
        keys[m] = [s.key for s, ok in zip(good, train[m].available) if ok]
        if len(values) <= config.eval.anomaly_k:
            raise InputError(f"{ctx.manifest}: only {len(values)} Good train welds have a usable {m}; drop it from model.modalities")
        mean[m], std[m] = values.mean(0), values.std(0)
        std[m][std[m] < 1e-8] = 1.0
        reference[m] = (values - mean[m]) / std[m]
        loo = knn.search(reference[m], reference[m], config.eval.anomaly_k, config.eval.anomaly_metric, exclude_self=True)
        own = loo.distances.mean(1)
        score_mean[m], score_std[m] = float(own.mean()), float(max(own.std(), 1e-8))
    model = AnomalyModel(modalities, config.eval.anomaly_k, config.eval.anomaly_metric, reference, mean, std, score_mean,
                         score_std, {m: 1 / len(modalities) for m in modalities}, 0.0, {}, keys)  # fmt: skip
    choose_weights(model, ctx, features_of(ctx.split("val"), ctx, modalities), np.array([s.label for s in ctx.split("val")]))
    return model


def choose_weights(model: AnomalyModel, ctx: EvalContext, val: dict[str, Features], labels: np.ndarray) -> None:
    """Grid-search the fusion weights for the best VAL AUROC; threshold at VAL's equal error rate."""
    is_defect = labels != GOOD
    scores = model.scores(val) if len(labels) else {}
    standardised = {m: (scores[m] - model.score_mean[m]) / model.score_std[m] for m in model.modalities} if scores else {}
    best, best_auc = dict(model.weights), None
    if len(labels) and 0 < is_defect.sum() < len(labels):
        for weights in weight_grid(model.modalities, ctx.config.eval.weight_step):
            auc = _auc(is_defect, fuse(standardised, weights))
            if auc is not None and (best_auc is None or auc > best_auc + 1e-12):
                best, best_auc = weights, auc
        model.weights = best
        fused = fuse(standardised, best)
        ok = np.isfinite(fused)
        model.threshold = equal_error_threshold(is_defect[ok], fused[ok])
        model.selection = {"on": "val", "val_auroc": round(best_auc, 4), "n_val": int(len(labels)), "grid_step": ctx.config.eval.weight_step}
    else:
        model.threshold = 1.645  # no labelled VAL: flag welds 1.645 standard deviations above the Good TRAIN welds
        model.selection = {"on": "none (VAL lacks Good or defect welds): equal weights, threshold z = 1.645"}


def fit_anomaly(root: Path, out: Path, config: Config, manifest: Path | None = None, say=print) -> AnomalyModel:
    """`weldfusion train --protocol anomaly`: cache features, fit the scorer, save it in the run folder."""
    paths = RunPaths(Path(out))
    if (paths.model / "anomaly.json").exists():
        raise InputError(f"{paths.root}: already holds an anomaly run; choose another --out")
    manifest = Path(manifest or Path(root) / "manifest.csv")
    config.protocol = "anomaly"
    paths.root.mkdir(parents=True, exist_ok=True)
    save_config(config, paths.config)
    write_json_atomic(paths.run_info, {"data_root": str(Path(root).resolve()), "manifest": str(manifest.resolve()),
                                       "protocol": "anomaly", "weldfusion": __version__})  # fmt: skip
    ctx = open_context(paths.root)
    defects = sum(1 for s in ctx.split("train") if s.label != GOOD)
    if defects:
        say(f"note: the train split holds {defects} defect welds; the anomaly protocol uses only its Good welds")
    model = fit_model(ctx)
    model.save(paths.model)
    weights = ", ".join(f"{m} {w:.1f}" for m, w in model.weights.items())
    say(f"anomaly scorer fitted on {len(model.reference[model.modalities[0]])} Good train welds; weights ({model.selection.get('on')}): {weights}")
    return model


def evaluate_anomaly(ctx: EvalContext, split: str) -> Outcome:
    model = AnomalyModel.load(ctx.paths.model)
    query = ctx.split(split)
    if not query:
        raise InputError(f"{ctx.manifest}: no usable weld in the {split} split")
    labels = np.array([s.label for s in query])
    features = features_of(query, ctx, model.modalities)
    scores = model.scores(features)
    is_defect = labels != GOOD
    per_modality = {}
    for m in model.scored:
        score = scores[m]
        ok = np.isfinite(score)
        overall, per_type = auroc(labels[ok], score[ok]) if ok.any() else (None, {})
        per_modality[m] = {"auroc_defect": overall, "auroc_per_defect": per_type, "n_query": int(ok.sum()),
                           "weight": model.weights.get(m)}  # fmt: skip
    fused = scores[FUSED]
    ok = np.isfinite(fused)
    overall, per_type = auroc(labels[ok], fused[ok])
    null_classification = {key: None for key in ("accuracy", "f1_macro", "f1_weighted", "precision_weighted",
                                                 "recall_weighted", "per_class", "labels", "confusion_matrix")}  # fmt: skip
    metrics = {
        "protocol": "anomaly", "split": split, "n_reference": len(model.reference[model.modalities[0]]),
        "n_query": len(query), "k": model.k, "metric": model.metric, **null_classification,
        "auroc_defect": overall, "auroc_per_defect": per_type, "per_modality": per_modality,
        "weights": model.weights, "weight_selection": model.selection,
        "decision": decision_figures(is_defect[ok], fused[ok], model.threshold),
        "paper": paper_comparison(overall, per_type, per_modality), "checkpoint": "model/anomaly.json",
    }  # fmt: skip
    masked = {s.key: {m: "unusable" for m in model.modalities if not features[m].available[i]} for i, s in enumerate(query)}
    embedding = np.concatenate([np.nan_to_num(model.standardise(m, features[m].values)) for m in model.modalities], axis=1)
    return Outcome(metrics, labels, np.nan_to_num(fused, nan=np.nanmedian(fused)), embedding, {k: v for k, v in masked.items() if v})


def paper_comparison(overall: float | None, per_type: dict, per_modality: dict) -> dict:
    rows = {"overall": {"paper_audio": PAPER_OVERALL["audio"], "paper_video": PAPER_OVERALL["video"],
                        "paper_fused": PAPER_OVERALL["fused"], "ours_audio": per_modality.get("audio", {}).get("auroc_defect"),
                        "ours_video": per_modality.get("video", {}).get("auroc_defect"), "ours_fused": overall}}  # fmt: skip
    for name in CATEGORIES[1:]:
        audio, video, fused = PAPER_PER_DEFECT[name]
        rows[name] = {"paper_audio": audio, "paper_video": video, "paper_fused": fused,
                      "ours_audio": per_modality.get("audio", {}).get("auroc_per_defect", {}).get(name),
                      "ours_video": per_modality.get("video", {}).get("auroc_per_defect", {}).get(name),
                      "ours_fused": per_type.get(name)}  # fmt: skip
    return rows
