"""The protocol interface that `evaluate`, `predict`, `demo` and the CLI call (SPEC §11).

A protocol turns welds into defect scores: `fit` learns from a run's data (training or anomaly
fitting, and the decision threshold on VAL), `score` scores any welds through the one feature path,
`save`/`load` keep it in RUN/model/. Adding a protocol means one module with a `DefectProtocol`
subclass registered in `weldfusion.registry.PROTOCOLS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

from weldfusion.data.categories import GOOD
from weldfusion.data.samples import Sample
from weldfusion.errors import InputError
from weldfusion.features import FeatureSource
from weldfusion.io import write_json_atomic
from weldfusion.runs import RunData

THRESHOLD_FILE = "threshold.json"


@dataclass
class Scores:
    """Per weld (in the order given to `score`)."""

    keys: list[str]
    defect_score: np.ndarray  # (N,) higher = more likely a defect; finite where `usable`
    usable: np.ndarray  # (N,) bool: the weld had a usable modality for this model
    modality_scores: dict[str, np.ndarray]  # modality -> (N,) its own score (NaN where it is masked)
    problems: list[dict[str, str]]  # per weld: modality -> why it is masked
    nearest: list[list[dict]]  # per weld: reference welds (key, category, distance)
    embedding: np.ndarray  # (N, E): what the embedding map shows
    category: list[str | None] | None = None  # protocols with a classifier
    probability: np.ndarray | None = None
    contribution: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> (N,) share of the fusion input
    localisation: list[dict] | None = None  # per weld (filled by scorers that localise): see `protocols/tokens.py::localise`
    alternative: dict[str, np.ndarray] = field(default_factory=dict)  # a scorer reported beside the deciding one:
    # its per-modality scores and "fused"


@dataclass
class Threshold:
    """The decision threshold, how it was chosen, and the reference Good welds' scores (for a
    threshold at a stated false-alarm rate)."""

    value: float
    chosen_on: str
    good_scores: list[float]

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / THRESHOLD_FILE, {"threshold": self.value, "chosen_on": self.chosen_on,
                                                    "good_scores": self.good_scores})  # fmt: skip

    @classmethod
    def load(cls, folder: Path) -> Threshold:
        path = Path(folder) / THRESHOLD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            value = float(data["threshold"])
            if not np.isfinite(value):
                raise ValueError("not finite")
            return cls(value, str(data.get("chosen_on", "")), [float(v) for v in data.get("good_scores", [])])
        except FileNotFoundError:
            raise InputError(f"{path}: missing: this model has no decision threshold (fitting did not finish); fit the "
                             "run again (classify: --resume), or give predict --threshold X or --false-alarm-rate R") from None  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(f"{path}: damaged ({exc.__class__.__name__}); fit the run again, or give predict --threshold X") from None

    def at_false_alarm_rate(self, rate: float) -> float:
        """The threshold above which a fraction `rate` of the reference Good welds' scores lie."""
        if not 0 <= rate < 1:
            raise InputError(f"--false-alarm-rate {rate}: must be a fraction in [0, 1)")
        if not self.good_scores:
            raise InputError("this model has no reference Good scores; give --threshold X instead")
        return float(np.nextafter(np.quantile(np.asarray(self.good_scores), 1 - rate, method="higher"), np.inf))


class DefectProtocol:
    """Subclasses: `name`, `fit`, `score`, `save`, `load`."""

    name: ClassVar[str]

    def check(self, data: RunData, resume: bool = False) -> None:
        """Refuse (InputError) data this protocol cannot fit, before anything is written."""

    def prepare(self, data: RunData) -> None:
        """Compute the frozen features that fitting needs, before the run folder is written (default:
        every usable weld's, in this process)."""
        data.features.prepare(data.samples)

    def fit(self, data: RunData, say: Callable[[str], None] = print, **options: object) -> None:
        raise NotImplementedError

    def score(self, samples: list[Sample], features: FeatureSource) -> Scores:
        raise NotImplementedError

    def figures(self, data: RunData, query: list[Sample], scores: Scores) -> dict:
        """The protocol's own figures for metrics.json (per_modality, ...); may add `scores.modality_scores`."""
        return {}

    def configure(self, k: int | None = None, metric: str | None = None) -> bool:
        """Evaluate-time neighbour settings (`--k`, `--metric`); True when they differ from the fitted ones
        (the fitted threshold then does not apply). A protocol that cannot change them refuses."""
        return False

    @property
    def n_reference(self) -> int:
        return 0

    def save(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, features: FeatureSource) -> DefectProtocol:
        """The fitted protocol in a model folder; `features` is the source its scores will read."""
        raise NotImplementedError

    def decision_threshold(self, folder: Path, threshold: float | None = None, false_alarm_rate: float | None = None) -> float:
        """The fitted threshold, or an override: a value, or the one giving a false-alarm rate on the
        reference Good welds. A model folder without a threshold is refused (never a silent default)."""
        if threshold is not None:
            if not np.isfinite(threshold):
                raise InputError(f"--threshold {threshold}: must be a finite number")
            return float(threshold)
        if self.threshold is None:
            self.threshold = Threshold.load(folder)  # raises the one-line refusal naming the missing file
        if false_alarm_rate is not None:
            return self.threshold.at_false_alarm_rate(false_alarm_rate)
        return self.threshold.value

    threshold: Threshold | None = None


def good_mask(samples: list[Sample]) -> np.ndarray:
    return np.array([s.label == GOOD for s in samples], bool)
