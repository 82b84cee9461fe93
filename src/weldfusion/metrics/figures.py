"""Classification and good-vs-defect figures (scikit-learn), in the shape of SPEC §10's metrics.json."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score, roc_curve

from weldfusion.data.categories import CATEGORIES, GOOD
from weldfusion.metrics import knn


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def classification(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """accuracy, weighted and macro P/R/F1 over the classes present in the truth, per-class report, confusion."""
    present = sorted(set(labels.tolist()))
    p_w, r_w, f_w, _ = precision_recall_fscore_support(labels, predicted, labels=present, average="weighted", zero_division=0)
    p_m, r_m, f_m, _ = precision_recall_fscore_support(labels, predicted, labels=present, average="macro", zero_division=0)
    p, r, f, support = precision_recall_fscore_support(labels, predicted, labels=present, zero_division=0)
    shown = sorted(set(present) | set(predicted.tolist()))
    return {
        "accuracy": _round(accuracy_score(labels, predicted)),
        "f1_macro": _round(f_m), "f1_weighted": _round(f_w),
        "precision_macro": _round(p_m), "recall_macro": _round(r_m),
        "precision_weighted": _round(p_w), "recall_weighted": _round(r_w),
        "per_class": {CATEGORIES[c]: {"precision": _round(p[i]), "recall": _round(r[i]), "f1": _round(f[i]),
                                      "support": int(support[i])} for i, c in enumerate(present)},
        "labels": [CATEGORIES[c] for c in shown],
        "confusion_matrix": confusion_matrix(labels, predicted, labels=shown).tolist(),
    }  # fmt: skip


def auroc(labels: np.ndarray, defect_score: np.ndarray) -> tuple[float | None, dict[str, float | None]]:
    """Good-vs-defect AUROC overall and per defect type (that type against Good); None where undefined."""
    is_defect = labels != GOOD
    overall = _round(roc_auc_score(is_defect, defect_score)) if 0 < is_defect.sum() < len(labels) else None
    per_type: dict[str, float | None] = {}
    good = labels == GOOD
    for code in sorted(set(labels.tolist()) - {GOOD}):
        chosen = good | (labels == code)
        per_type[CATEGORIES[code]] = _round(roc_auc_score(labels[chosen] == code, defect_score[chosen])) if good.any() else None
    return overall, per_type


def roc_points(labels: np.ndarray, defect_score: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROC curve points overall ('all defects') and per defect type, for the plots."""
    curves = {}
    good = labels == GOOD
    if not good.any() or good.all():
        return curves
    fpr, tpr, _ = roc_curve(labels != GOOD, defect_score)
    curves["all defects"] = (fpr, tpr)
    for code in sorted(set(labels.tolist()) - {GOOD}):
        chosen = good | (labels == code)
        fpr, tpr, _ = roc_curve(labels[chosen] == code, defect_score[chosen])
        curves[CATEGORIES[code]] = (fpr, tpr)
    return curves


def equal_error_threshold(is_defect: np.ndarray, score: np.ndarray) -> float:
    """The score threshold where the false-positive rate equals the miss rate."""
    fpr, tpr, thresholds = roc_curve(is_defect, score)
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    return float(thresholds[i]) if np.isfinite(thresholds[i]) else float(score.max())


def decision_figures(is_defect: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    flagged = score >= threshold
    good, bad = ~is_defect, is_defect
    return {
        "threshold": _round(threshold, 6),
        "defect_recall": _round(flagged[bad].mean()) if bad.any() else None,
        "false_alarm_rate": _round(flagged[good].mean()) if good.any() else None,
        "accuracy": _round((flagged == is_defect).mean()),
    }


def knn_figures(reference: np.ndarray, reference_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray,
                k: int, metric: str, temperature: float | None) -> tuple[dict, np.ndarray]:  # fmt: skip
    """Headline classification + AUROC figures of a k-NN on one representation; also the defect scores."""
    neighbours = knn.search(reference, query, k, metric)
    probabilities = knn.vote(neighbours, reference_labels, len(CATEGORIES), metric, temperature)
    figures = classification(query_labels, knn.predict(probabilities))
    defect_score = 1.0 - probabilities[:, GOOD]
    figures["auroc_defect"], figures["auroc_per_defect"] = auroc(query_labels, defect_score)
    return figures, defect_score
