"""`weldfusion predict RUN SAMPLE_DIR...`: score weld folders in the real layout, no manifest needed.

Each folder is read on its own (only files inside it are opened) through the same feature path as
`evaluate` (the frozen encoders' outputs computed as the cache computes them, kept in memory). A
folder with no usable modality is refused with its reason and the others go on; a weld whose files
all fail to decode gets no decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from weldfusion.data.samples import folder_sample
from weldfusion.errors import InputError
from weldfusion.evaluation.explain import weld_pictures
from weldfusion.io import write_atomic
from weldfusion.features import FeatureSource
from weldfusion.registry import PROTOCOLS
from weldfusion.runs import open_run


@dataclass
class Prediction:
    folder: str
    available: dict[str, str]  # modality -> "ok" or why it is masked
    defect_score: float | None  # None: the weld could not be seen (no usable modality)
    threshold: float
    decision: str | None  # "defect" | "good" | None
    nearest: list[dict] = field(default_factory=list)  # reference welds: key, category, distance
    modality_scores: dict[str, float | None] = field(default_factory=dict)
    category: str | None = None  # classify runs
    probability: float | None = None
    fusion_share: dict[str, float] = field(default_factory=dict)  # classify: each modality's share of the fusion input
    localisation: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def predict(run: Path, folders: list[Path], say_error=print, threshold: float | None = None,
            false_alarm_rate: float | None = None, device: torch.device | None = None,
            explain: Path | None = None) -> list[Prediction]:  # fmt: skip
    """`device`: where features and embeddings are computed (default: a GPU when there is one);
    `explain`: a folder for each weld's timeline and photo heatmaps (scorers that localise)."""
    opened = open_run(run)
    modalities = opened.config.model.modalities
    features = FeatureSource(opened.config, persistent=False, device=device)
    protocol = PROTOCOLS.get(opened.protocol).load(opened.paths.model, features)
    cut = protocol.decision_threshold(opened.paths.model, threshold, false_alarm_rate)
    samples = []
    for folder in folders:
        try:
            samples.append(folder_sample(folder, modalities))
        except InputError as exc:
            say_error(str(exc))
    if not samples:
        return []
    scores = protocol.score(samples, features)
    out = []
    for i, sample in enumerate(samples):
        usable = bool(scores.usable[i])
        score = float(scores.defect_score[i]) if usable else None
        if not usable:
            say_error(f"{sample.folder}: no usable modality (" + "; ".join(f"{m}: {why}" for m, why in scores.problems[i].items()) + "); no decision")
        out.append(Prediction(
            folder=str(sample.folder), available={m: scores.problems[i].get(m) or "ok" for m in modalities},
            defect_score=score, threshold=cut, decision=None if score is None else ("defect" if score >= cut else "good"),
            nearest=scores.nearest[i] if usable else [],
            modality_scores={m: _rounded(scores.modality_scores[m][i]) for m in modalities if m in scores.modality_scores},
            category=scores.category[i] if scores.category else None,
            probability=_rounded(scores.probability[i]) if scores.probability is not None and usable else None,
            fusion_share={m: round(float(v[i]), 3) for m, v in scores.contribution.items()} if usable else {},
            localisation=portable(scores.localisation[i]) if scores.localisation and usable else {},
        ))  # fmt: skip
        if explain and scores.localisation and usable:
            name = f"{i:03d}_{sample.folder.name}"
            for file, picture in weld_pictures(scores.localisation[i], sample.files.get("images", ()), name).items():
                write_atomic(Path(explain) / file, lambda tmp, data=picture: tmp.write_bytes(data))
    return out


def portable(localisation: dict) -> dict:
    """A weld's localisation as JSON: profiles and peaks; photos' peaks and scores (heatmaps go to --explain)."""
    return {m: [{k: v for k, v in view.items() if k != "heatmap"} for view in found] if isinstance(found, list) else found
            for m, found in localisation.items()}  # fmt: skip


def _rounded(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None
