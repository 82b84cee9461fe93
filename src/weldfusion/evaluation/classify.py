"""The classify protocol (SPEC §7): k-NN on the trained embedding, reference = the train split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from weldfusion.data.categories import GOOD, NUM_CLASSES
from weldfusion.data.dataset import WeldDataset
from weldfusion.data.samples import Sample
from weldfusion.errors import InputError
from weldfusion.evaluation import knn
from weldfusion.evaluation.context import EvalContext
from weldfusion.evaluation.features import modality_features, standardise
from weldfusion.evaluation.metrics import auroc, classification, equal_error_threshold
from weldfusion.io import write_json_atomic
from weldfusion.models.artifact import load_model
from weldfusion.models.cache import CachedDataset
from weldfusion.models.inference import Embedded, embed


@dataclass
class Outcome:
    """What a protocol hands to the report: the figures and the arrays behind the pictures."""

    metrics: dict
    labels: np.ndarray
    defect_score: np.ndarray
    embedding: np.ndarray  # for the 2-D map
    masked: dict[str, dict[str, str]] = field(default_factory=dict)


def knn_figures(reference: np.ndarray, reference_labels: np.ndarray, query: np.ndarray, query_labels: np.ndarray,
                k: int, metric: str, temperature: float | None) -> tuple[dict, np.ndarray]:  # fmt: skip
    """Headline classification + AUROC figures of a k-NN on one representation; also the defect scores."""
    neighbours = knn.search(reference, query, k, metric)
    probabilities = knn.vote(neighbours, reference_labels, NUM_CLASSES, metric, temperature)
    figures = classification(query_labels, knn.predict(probabilities))
    defect_score = 1.0 - probabilities[:, GOOD]
    figures["auroc_defect"], figures["auroc_per_defect"] = auroc(query_labels, defect_score)
    return figures, defect_score


class WithoutModality(Dataset):
    """A view of a dataset in which one modality is masked for every weld (the drop-one ablation)."""

    def __init__(self, dataset: Dataset, modality: str):
        self.dataset = dataset
        self.modality = modality

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = self.dataset[index]
        for kind in ("mask", "token_mask"):
            if self.modality in item.get(kind, {}):
                item[kind] = {**item[kind], self.modality: torch.zeros_like(item[kind][self.modality])}
        return item


def embed_split(ctx: EvalContext, samples: list[Sample], loaded, without: str | None = None) -> Embedded:
    live = [m for m in ctx.config.model.modalities if m not in ctx.caches]
    dataset = CachedDataset(WeldDataset(samples, live, ctx.config, ctx.transforms, loaded.sensor_stats), ctx.caches)
    return embed(loaded.model, WithoutModality(dataset, without) if without else dataset, batch_size=ctx.config.eval.batch_size)


def ablation(ctx: EvalContext, reference: list[Sample], query: list[Sample], loaded, k: int, metric: str) -> dict:
    """The trained model with one modality masked in every weld: how much the fusion relies on it."""
    out = {}
    modalities = ctx.config.model.modalities
    for modality in modalities if len(modalities) > 1 else []:
        ref, qry = embed_split(ctx, reference, loaded, modality), embed_split(ctx, query, loaded, modality)
        figures, _ = knn_figures(ref.embeddings.numpy(), ref.labels.numpy(), qry.embeddings.numpy(), qry.labels.numpy(),
                                 k, metric, ctx.config.eval.temperature)  # fmt: skip
        out[modality] = {key: figures[key] for key in ("accuracy", "f1_macro", "f1_weighted", "auroc_defect")}
    return out


def per_modality(ctx: EvalContext, reference: list[Sample], query: list[Sample], k: int, metric: str) -> dict:
    """The same k-NN on each modality's own untrained features: exposes shortcuts and dead modalities."""
    out = {}
    ref_labels = np.array([s.label for s in reference])
    query_labels = np.array([s.label for s in query])
    for modality in [m for m in ctx.config.model.modalities if m in ctx.caches or m == "sensor"]:
        ref = modality_features(reference, modality, ctx.caches, ctx.config, ctx.transforms)
        qry = modality_features(query, modality, ctx.caches, ctx.config, ctx.transforms)
        if ref.available.sum() == 0 or qry.available.sum() == 0:
            out[modality] = {"n_query": 0, "note": "no usable data"}
            continue
        ref_ok, qry_ok = ref.available, qry.available
        ref_values, qry_values = standardise(ref.values[ref_ok], qry.values[qry_ok])
        figures, _ = knn_figures(ref_values, ref_labels[ref_ok], qry_values, query_labels[qry_ok], k, metric,
                                 ctx.config.eval.temperature)  # fmt: skip
        out[modality] = {key: figures[key] for key in ("accuracy", "f1_macro", "f1_weighted", "auroc_defect")}
        out[modality].update(n_reference=int(len(ref_values)), n_query=int(len(qry_values)))
    return out


def evaluate_classify(ctx: EvalContext, split: str, k: int, metric: str) -> Outcome:
    reference, query = ctx.split("train"), ctx.split(split)
    if not reference or not query:
        raise InputError(f"{ctx.manifest}: the train split has {len(reference)} usable welds and the {split} split "
                         f"{len(query)}; both are needed for the classify protocol")  # fmt: skip
    loaded = load_model(ctx.paths.model, cached=set(ctx.caches))
    ref, qry = embed_split(ctx, reference, loaded), embed_split(ctx, query, loaded)
    ref_labels, query_labels = ref.labels.numpy(), qry.labels.numpy()
    figures, defect_score = knn_figures(ref.embeddings.numpy(), ref_labels, qry.embeddings.numpy(), query_labels,
                                        k, metric, ctx.config.eval.temperature)  # fmt: skip
    metrics = {"protocol": "classify", "split": split, "n_reference": len(reference), "n_query": len(query), "k": k,
               "metric": metric, "temperature": ctx.config.eval.temperature, **figures,
               "per_modality": per_modality(ctx, reference, query, k, metric),
               "without_modality": ablation(ctx, reference, query, loaded, k, metric),
               "checkpoint": loaded.meta.get("checkpoint")}  # fmt: skip
    return Outcome(metrics, query_labels, defect_score, qry.embeddings.numpy(), qry.problems)


THRESHOLD_FILE = "threshold.json"


def calibrate_threshold(ctx: EvalContext) -> dict:
    """The defect-score threshold at VAL's equal error rate (k-NN against the train split), saved in
    RUN/model/threshold.json for `predict`; 0.5 (the majority line) when VAL lacks Good or defect welds."""
    reference, val = ctx.split("train"), ctx.split("val")
    labels = np.array([s.label for s in val])
    if not reference or not (0 < (labels != GOOD).sum() < len(labels)):
        result = {"threshold": 0.5, "chosen_on": "default (VAL lacks Good or defect welds)"}
    else:
        loaded = load_model(ctx.paths.model, cached=set(ctx.caches))
        ref, qry = embed_split(ctx, reference, loaded), embed_split(ctx, val, loaded)
        _, score = knn_figures(ref.embeddings.numpy(), ref.labels.numpy(), qry.embeddings.numpy(), labels,
                               ctx.config.eval.k, ctx.config.eval.metric, ctx.config.eval.temperature)  # fmt: skip
        result = {"threshold": equal_error_threshold(labels != GOOD, score), "chosen_on": f"val equal error rate ({len(val)} welds)"}
    write_json_atomic(ctx.paths.model / THRESHOLD_FILE, result)
    return result
