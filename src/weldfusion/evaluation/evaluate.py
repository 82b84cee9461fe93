"""`weldfusion evaluate`: a run's protocol scores a split; figures, per-weld scores and the report.

Writes RUN/eval/<split>/ with metrics.json, scores.csv (one row per weld), the pictures and
report.html. A weld that the model could not see (no usable modality) gets no decision: it is
listed under `skipped` with its reasons and left out of every figure.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from weldfusion.data.categories import CATEGORIES, GOOD
from weldfusion.errors import InputError
from weldfusion.evaluation.explain import weld_pictures
from weldfusion.evaluation.report import Outcome, write_outputs
from weldfusion.io import write_text_atomic
from weldfusion.metrics.figures import auroc, decision_figures
from weldfusion.metrics.localisation import SYNTHETIC_MARK, find_ground_truth, localisation_metrics, read_ground_truth
from weldfusion.protocols.base import Scores
from weldfusion.registry import PROTOCOLS
from weldfusion.runs import RunData, load_run_data, locked, open_run

SHOWN = 3  # highest-scoring welds whose timelines and heatmaps the report shows
CLASSIFICATION_KEYS = ("accuracy", "f1_macro", "f1_weighted", "precision_weighted", "recall_weighted", "per_class",
                       "labels", "confusion_matrix")  # fmt: skip


@dataclass
class Evaluated:
    metrics: dict
    report: Path
    scores: Scores


def evaluate_run(run: Path, split: str = "test", data: Path | None = None, k: int | None = None,
                 metric: str | None = None, progress=None, device: torch.device | None = None) -> Evaluated:  # fmt: skip
    """`device`: where features and embeddings are computed (default: a GPU when there is one)."""
    opened = open_run(run)
    with locked(opened.paths.eval(split)):
        run_data = load_run_data(opened, data, progress, device)
        protocol = PROTOCOLS.get(opened.protocol).load(opened.paths.model, run_data.features)
        retuned = protocol.configure(k, metric)
        threshold = protocol.decision_threshold(opened.paths.model)
        query = run_data.split(split)
        if not query:
            raise InputError(f"{opened.manifest}: no usable weld in the {split} split")
        scores = protocol.score(query, run_data.features)
        labels = np.array([s.label for s in query])
        ok = scores.usable
        if not ok.any():
            raise InputError(f"{opened.manifest}: no weld of the {split} split could be read (every modality masked); "
                             "run `weldfusion data check` for the details")  # fmt: skip
        overall, per_type = auroc(labels[ok], scores.defect_score[ok])
        metrics = {"protocol": opened.protocol, "split": split, "n_reference": protocol.n_reference, "n_query": int(ok.sum()),
                   "k": getattr(protocol, "k", None), "metric": getattr(protocol, "metric", None),
                   **{key: None for key in CLASSIFICATION_KEYS}, "auroc_defect": overall, "auroc_per_defect": per_type,
                   "decision": None if retuned else decision_figures(labels[ok] != GOOD, scores.defect_score[ok], threshold),
                   **protocol.figures(run_data, query, scores)}  # fmt: skip
        skipped = {s.key: "no usable modality: " + "; ".join(f"{m}: {why}" for m, why in scores.problems[i].items())
                   for i, s in enumerate(query) if not ok[i]}  # fmt: skip
        masked = {s.key: scores.problems[i] for i, s in enumerate(query) if ok[i] and scores.problems[i]}
        metrics["synthetic"] = (run_data.root / SYNTHETIC_MARK).is_file()
        metrics["localisation"] = localisation_figures(run_data.root, query, scores)
        outcome = Outcome(metrics, labels[ok], scores.defect_score[ok], scores.embedding[ok], masked, {**run_data.skipped, **skipped},
                          where_pictures(query, scores))  # fmt: skip
        folder, metrics = write_outputs(run_data, outcome)
        write_scores(folder / "scores.csv", run_data, split, query, scores, threshold)
    return Evaluated(metrics, folder / "report.html", scores)


def localisation_figures(root: Path, query: list, scores: Scores) -> dict | None:
    """Localisation against the ground truth where the data has one (synthetic welds); a modality for
    which the protocol gave no profile or heatmap is reported as None (unavailable), never 0."""
    path = find_ground_truth(root)
    if path is None:
        return None
    truth = read_ground_truth(path)
    located = scores.localisation or [{} for _ in query]
    profiles = {s.key: {m: v["profile"] for m, v in loc.items() if m != "images"} for s, loc in zip(query, located) if loc}
    heatmaps = {s.key: {h["view"]: h["heatmap"] for h in loc.get("images", []) if "heatmap" in h} for s, loc in zip(query, located) if loc}
    return localisation_metrics({s.key: truth[s.key] for s in query if s.key in truth}, profiles, heatmaps)


def where_pictures(query: list, scores: Scores, count: int = SHOWN) -> dict[str, bytes]:
    """Timelines and photo heatmaps of the `count` highest-scoring welds (scorers that localise)."""
    if not scores.localisation:
        return {}
    ranked = np.argsort(-np.where(scores.usable, scores.defect_score, -np.inf))[: min(count, int(scores.usable.sum()))]
    out = {}
    for rank, i in enumerate(ranked, 1):
        name = f"top{rank}_{CATEGORIES[query[i].label]}_{query[i].folder.name}"
        out.update(weld_pictures(scores.localisation[i], query[i].files.get("images", ()), name))
    return out


def write_scores(path: Path, data: RunData, split: str, query: list, scores: Scores, threshold: float) -> None:
    """One row per weld: key, category, split, defect score, decision, each modality's score."""
    modalities = list(scores.modality_scores)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["key", "category", "split", "defect_score", "decision", *(f"{m}_score" for m in modalities), "unusable"])
    for i, sample in enumerate(query):
        usable = bool(scores.usable[i])
        score = float(scores.defect_score[i]) if usable else None
        per = [_number(scores.modality_scores[m][i]) for m in modalities]
        reason = "" if usable else "; ".join(f"{m}: {why}" for m, why in scores.problems[i].items())
        decision = ("defect" if score >= threshold else "good") if score is not None else ""
        writer.writerow([sample.key, CATEGORIES[sample.label], split, _number(score), decision, *per, reason])
    write_text_atomic(path, buffer.getvalue())


def _number(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.6f}"
