"""The classify protocol (SPEC §7): SupCon training, then k-NN on the embedding against the train split.

`fit` trains (Lightning, imported only here, so scoring never loads it), exports the model, embeds
the train split as the k-NN reference and calibrates the decision threshold on VAL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from weldfusion.data.categories import CATEGORIES, GOOD, NUM_CLASSES
from weldfusion.data.sampler import contrastive_ready
from weldfusion.data.samples import Sample
from weldfusion.errors import InputError
from weldfusion.features import FeatureSource
from weldfusion.metrics import knn
from weldfusion.features import standardise
from weldfusion.metrics.figures import classification, equal_error_threshold, knn_figures
from weldfusion.models.artifact import LoadedModel, load_model, load_reference, save_reference
from weldfusion.models.inference import Embedded, embed
from weldfusion.protocols.base import THRESHOLD_FILE, DefectProtocol, RunData, Scores, Threshold

DEFAULT_THRESHOLD = 0.5  # VAL lacks Good or defect welds: the majority line of the k-NN vote


@dataclass
class ClassifyProtocol(DefectProtocol):
    name = "classify"
    loaded: LoadedModel | None = None
    reference: Embedded | None = None
    k: int = 5
    metric: str = "cosine"
    temperature: float | None = None
    threshold: Threshold | None = None
    without: str | None = field(default=None, repr=False)  # a modality hidden in every weld (the ablation)

    def check(self, data: RunData, resume: bool = False) -> None:
        """Refuse supervised training on a split that cannot make SupCon batches, and say what to do."""
        labels = [s.label for s in data.split("train")]
        if not contrastive_ready(labels):
            classes = len(set(labels))
            raise InputError(
                f"{data.run.manifest}: the train split ({len(labels)} usable welds, {classes} class{'es' if classes != 1 else ''}) "
                "cannot train supervised contrastive learning, which needs at least 2 classes with at least 2 welds each "
                "(every batch would hold one class and the loss would be a constant such as log(31)). If this is the "
                "dataset's official split (TRAIN = Good only), use `--protocol anomaly`; to train the classifier, write a "
                "labelled session-disjoint split with `weldfusion data split ROOT --out split.csv` and pass `--manifest split.csv`."
            )  # fmt: skip
        last = data.run.paths.checkpoints / "last.ckpt"
        if resume and not last.is_file():
            raise InputError(f"{last}: no checkpoint to resume from")

    def prepare(self, data: RunData) -> None:
        """Nothing up front: training fills the cache inside the DDP context, each rank its share."""

    def fit(self, data: RunData, say: Callable[[str], None] = print, **options: object) -> None:
        from weldfusion.training.trainer import train_classifier  # Lightning is needed for fitting only

        if not train_classifier(data, say=say, **options):
            return  # another DDP process: rank 0 exports, embeds the reference and calibrates
        self.__dict__.update(ClassifyProtocol.load(data.run.paths.model, data.features).__dict__)
        self.reference = self.embed(data.split("train"), data.features)
        save_reference(data.run.paths.model, self.reference.embeddings, self.reference.labels, self.reference.keys)
        self.threshold = self._calibrate(data)
        self.threshold.save(data.run.paths.model)
        say(f"defect-score threshold: {self.threshold.value:.3f} ({self.threshold.chosen_on})")

    def _calibrate(self, data: RunData) -> Threshold:
        """VAL's equal-error-rate point; the reference Good welds' leave-one-out scores for rate-based thresholds."""
        reference, labels = self.reference.embeddings.numpy(), self.reference.labels.numpy()
        loo = knn.search(reference, reference, self.k, self.metric, exclude_self=True)
        votes = knn.vote(loo, labels, NUM_CLASSES, self.metric, self.temperature)
        good_scores = [round(float(1 - p), 6) for p in votes[labels == GOOD, GOOD]]
        val = data.split("val")
        is_defect = np.array([s.label != GOOD for s in val])
        if not 0 < is_defect.sum() < len(is_defect):
            return Threshold(DEFAULT_THRESHOLD, "default 0.5 (VAL lacks Good or defect welds)", good_scores)
        scores = self.score(val, data.features)
        ok = scores.usable
        value = equal_error_threshold(is_defect[ok], scores.defect_score[ok])
        return Threshold(value, f"val equal error rate ({int(ok.sum())} welds)", good_scores)

    def embed(self, samples: list[Sample], features: FeatureSource) -> Embedded:
        features.prepare(samples)
        dataset = features.dataset(samples, self.loaded.stats)
        return embed(self.loaded.model, dataset, batch_size=features.config.eval.batch_size, hide=self.without)

    def score(self, samples: list[Sample], features: FeatureSource) -> Scores:
        if self.reference is None:
            raise InputError("this classify model has no reference.safetensors (training did not finish); fit the run again")
        out = self.embed(samples, features)
        found = knn.search(self.reference.embeddings.numpy(), out.embeddings.numpy(), self.k, self.metric)
        probabilities = knn.vote(found, self.reference.labels.numpy(), NUM_CLASSES, self.metric, self.temperature)
        categories = probabilities.argmax(1)
        usable = out.usable.numpy()
        nearest = [[{"key": self.reference.keys[j], "category": CATEGORIES[int(self.reference.labels[j])], "distance": round(float(d), 4)}
                    for j, d in zip(found.indices[i], found.distances[i])] for i in range(len(samples))]  # fmt: skip
        return Scores(
            keys=[s.key for s in samples], defect_score=np.where(usable, 1.0 - probabilities[:, GOOD], np.nan), usable=usable,
            modality_scores={}, problems=[out.problems.get(s.key, {}) for s in samples], nearest=nearest,
            embedding=out.embeddings.numpy(), category=[CATEGORIES[c] if ok else None for c, ok in zip(categories, usable)],
            probability=probabilities[np.arange(len(samples)), categories], contribution={m: v.numpy() for m, v in out.contribution.items()},
        )  # fmt: skip

    def configure(self, k: int | None = None, metric: str | None = None) -> bool:
        changed = (k or self.k, metric or self.metric) != (self.k, self.metric)
        self.k, self.metric = k or self.k, metric or self.metric
        return changed

    @property
    def n_reference(self) -> int:
        return len(self.reference.keys) if self.reference is not None else 0

    def figures(self, data: RunData, query: list[Sample], scores: Scores) -> dict:
        """Classification figures; each modality alone (k-NN on its untrained features, whose defect
        scores join `scores.modality_scores`); the fused model with each modality hidden."""
        labels = np.array([s.label for s in query])
        ok = scores.usable
        predicted = np.array([CATEGORIES.index(c) if c else GOOD for c in scores.category])
        out = classification(labels[ok], predicted[ok])
        reference = bool(data.split("train"))  # `evaluate --data` on a root without train welds: nothing to compare with
        out["per_modality"] = self._per_modality(data, query, scores) if reference else {}
        out["without_modality"] = self._ablation(data, query) if reference else {}
        out["per_modality_caption"] = ("each modality alone: k-NN on its untrained features (frozen encoder's pooled "
                                       "tokens; sensor: arc-on statistics)")  # fmt: skip
        out["temperature"] = self.temperature
        out["checkpoint"] = self.loaded.meta.get("checkpoint")
        return out

    def _per_modality(self, data: RunData, query: list[Sample], scores: Scores) -> dict:
        reference = data.split("train")
        ref_labels, query_labels = np.array([s.label for s in reference]), np.array([s.label for s in query])
        out = {}
        for modality in self.loaded.config.model.modalities:
            ref, qry = data.features.untrained(reference, modality), data.features.untrained(query, modality)
            if not ref.available.any() or not qry.available.any():
                out[modality] = {"n_query": 0, "note": "no untrained representation (a trainable encoder) or no usable data"}
                continue
            ref_values, qry_values = standardise(ref.values[ref.available], qry.values[qry.available])
            figures, defect = knn_figures(ref_values, ref_labels[ref.available], qry_values, query_labels[qry.available],
                                          self.k, self.metric, self.temperature)  # fmt: skip
            scores.modality_scores[modality] = np.full(len(query), np.nan)
            scores.modality_scores[modality][qry.available] = defect
            out[modality] = {key: figures[key] for key in ("accuracy", "f1_macro", "f1_weighted", "auroc_defect")}
            out[modality].update(n_reference=int(ref.available.sum()), n_query=int(qry.available.sum()))
        return out

    def _ablation(self, data: RunData, query: list[Sample]) -> dict:
        """The trained model with one modality masked in every weld: how much the fusion relies on it."""
        modalities = self.loaded.config.model.modalities
        out = {}
        for modality in modalities if len(modalities) > 1 else []:
            self.without = modality
            try:
                ref, qry = self.embed(data.split("train"), data.features), self.embed(query, data.features)
            finally:
                self.without = None
            figures, _ = knn_figures(ref.embeddings.numpy(), ref.labels.numpy(), qry.embeddings.numpy(), qry.labels.numpy(),
                                     self.k, self.metric, self.temperature)  # fmt: skip
            out[modality] = {key: figures[key] for key in ("accuracy", "f1_macro", "f1_weighted", "auroc_defect")}
        return out

    def save(self, folder: Path) -> None:
        """The model folder is written by training (weights) and `fit` (reference, threshold)."""

    @classmethod
    def load(cls, folder: Path, features: FeatureSource) -> ClassifyProtocol:
        loaded = load_model(folder, cached=set(features.stores))
        loaded.model.to(features.device)
        config = loaded.config
        reference = None
        if (Path(folder) / "reference.safetensors").exists():
            embeddings, labels, keys = load_reference(folder)
            reference = Embedded(embeddings, labels, keys)
        threshold = Threshold.load(folder) if (Path(folder) / THRESHOLD_FILE).exists() else None
        return cls(loaded, reference, config.eval.k, config.eval.metric, config.eval.temperature, threshold)
