"""`weldfusion predict RUN SAMPLE_DIR...`: score weld folders in the real layout, no manifest needed.

Each folder is read on its own (only files inside it are opened); a folder with no usable
modality is refused with its reason and the others go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from weldfusion import MODALITIES
from weldfusion.data.categories import CATEGORIES, GOOD, NUM_CLASSES
from weldfusion.data.dataset import WeldDataset
from weldfusion.data.samples import Sample, locate_files
from weldfusion.errors import InputError
from weldfusion.evaluation import knn
from weldfusion.evaluation.anomaly import CONCATENATED, FUSED, AnomalyModel, with_concatenation
from weldfusion.evaluation.classify import THRESHOLD_FILE
from weldfusion.evaluation.context import open_run
from weldfusion.evaluation.features import Features, pool_statistics, sensor_statistics, stack
from weldfusion.models.artifact import load_model, load_reference
from weldfusion.models.inference import embed
from weldfusion.models.model import build_encoder
from weldfusion.models.preprocessing import build_transforms


@dataclass
class Prediction:
    folder: str
    available: dict[str, str]  # modality -> "ok" or why it is masked
    defect_score: float
    threshold: float
    nearest: list[dict]  # reference welds: key, category, distance
    category: str | None = None  # classify runs
    probability: float | None = None
    attention: dict[str, float] = field(default_factory=dict)  # share of the fusion input per modality
    modality_scores: dict[str, float | None] = field(default_factory=dict)  # anomaly runs

    @property
    def decision(self) -> str:
        return "defect" if self.defect_score >= self.threshold else "good"

    def to_dict(self) -> dict:
        return {**self.__dict__, "decision": self.decision}


def folder_sample(folder: Path) -> Sample:
    """A weld folder as a sample; InputError (one line) when it cannot be used at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    files, missing = locate_files(folder, folder.name, MODALITIES, within=folder.resolve())
    if not any(m in files and m not in missing for m in MODALITIES):
        raise InputError(f"{folder}: no usable modality (" + "; ".join(f"{m}: {why}" for m, why in missing.items()) + ")")
    return Sample(key=str(folder), session="", label=GOOD, split=None, folder=folder, files=files, missing=missing)


def predict(run: Path, folders: list[Path], say_error=print) -> list[Prediction]:
    paths, config, info = open_run(run)
    samples = []
    for folder in folders:
        try:
            samples.append(folder_sample(folder))
        except InputError as exc:
            say_error(str(exc))
    if not samples:
        return []
    transforms = build_transforms(config)
    if info.get("protocol") == "anomaly":
        return predict_anomaly(paths.model, config, transforms, samples)
    loaded = load_model(paths.model)
    dataset = WeldDataset(samples, config.model.modalities, config, transforms, loaded.sensor_stats)
    out = embed(loaded.model, dataset, batch_size=config.eval.batch_size)
    reference, ref_labels, ref_keys = load_reference(paths.model)
    neighbours = knn.search(reference.numpy(), out.embeddings.numpy(), config.eval.k, config.eval.metric)
    probabilities = knn.vote(neighbours, ref_labels.numpy(), NUM_CLASSES, config.eval.metric, config.eval.temperature)
    threshold_file = paths.model / THRESHOLD_FILE
    threshold = json.loads(threshold_file.read_text())["threshold"] if threshold_file.is_file() else 0.5
    predictions = []
    for i, sample in enumerate(samples):
        category = int(probabilities[i].argmax())
        predictions.append(Prediction(
            folder=str(sample.folder), available=availability(config.model.modalities, out.problems.get(sample.key, {})),
            defect_score=round(float(1 - probabilities[i, GOOD]), 4), threshold=threshold,
            nearest=[{"key": ref_keys[j], "category": CATEGORIES[int(ref_labels[j])], "distance": round(float(d), 4)}
                     for j, d in zip(neighbours.indices[i], neighbours.distances[i])],
            category=CATEGORIES[category], probability=round(float(probabilities[i, category]), 4),
            attention={m: round(float(v[i]), 3) for m, v in out.attention.items()},
        ))  # fmt: skip
    return predictions


def availability(modalities: list[str], problems: dict[str, str]) -> dict[str, str]:
    return {m: problems.get(m) or "ok" for m in modalities}


def predict_anomaly(folder: Path, config, transforms, samples: list[Sample]) -> list[Prediction]:
    model = AnomalyModel.load(folder)
    dataset = WeldDataset(samples, model.modalities, config, transforms)
    items = [dataset[i] for i in range(len(samples))]
    features: dict[str, Features] = {}
    with torch.inference_mode():
        for modality in model.modalities:
            if modality == "sensor":
                rows = [sensor_statistics(item["inputs"]["sensor"].numpy().astype(np.float64)) if item["mask"]["sensor"].any()
                        else None for item in items]  # fmt: skip
            else:
                encoder = build_encoder(modality, config).eval()
                rows = []
                for item in items:
                    tokens, valid = encoder(item["inputs"][modality][None], item["mask"][modality][None])
                    rows.append(pool_statistics(tokens[0], valid[0]))
            features[modality] = stack(rows)
    features = with_concatenation(features)
    scores = model.scores(features)
    predictions = []
    for i, (sample, item) in enumerate(zip(samples, items)):
        nearest = []
        if features[CONCATENATED].available[i]:
            query = model.standardise(CONCATENATED, features[CONCATENATED].values[i : i + 1])
            found = knn.search(model.reference[CONCATENATED], query, model.k, model.metric)
            nearest = [{"key": model.reference_keys[CONCATENATED][j], "category": "Good", "distance": round(float(d), 4)}
                       for j, d in zip(found.indices[0], found.distances[0])]  # fmt: skip
        predictions.append(Prediction(
            folder=str(sample.folder),
            available=availability(model.modalities, {m: p for m, p in item["problems"].items() if p}),
            defect_score=round(float(scores[FUSED][i]), 4), threshold=model.threshold, nearest=nearest,
            modality_scores={m: None if not np.isfinite(scores[m][i]) else round(float((scores[m][i] - model.score_mean[m]) / model.score_std[m]), 3)
                             for m in model.modalities},
        ))  # fmt: skip
    return predictions
