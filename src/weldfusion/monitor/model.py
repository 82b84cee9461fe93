"""What the monitor fits from a run, kept in RUN/model/monitor/: per modality a memory bank of Good
TRAIN window tokens and the Good windows' score statistics, the fusion weights, the alert threshold
and how it was chosen (monitor.json + banks.safetensors)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from weldfusion.config import MonitorConfig
from weldfusion.data.transforms import ChannelStats
from weldfusion.errors import InputError
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.models.bank import MemoryBank

FORMAT = "weldfusion-monitor"
FOLDER = "monitor"


@dataclass
class MonitorModel:
    settings: MonitorConfig
    banks: dict[str, MemoryBank]
    score_mean: dict[str, float]
    score_std: dict[str, float]
    weights: dict[str, float]
    threshold: float
    chosen_on: str
    sensor_stats: ChannelStats | None
    fitted: dict = field(default_factory=dict)  # what the fit saw (welds, windows, figures on VAL)

    @property
    def modalities(self) -> list[str]:
        return list(self.banks)

    def score(self, modality: str, tokens: np.ndarray) -> tuple[float, float]:
        """A window's raw score (its farthest token's distance to the bank) and its standardised score."""
        raw = float(self.banks[modality].distances(tokens).max())
        return raw, (raw - self.score_mean[modality]) / self.score_std[modality]

    def save(self, folder: Path) -> None:
        tensors = {f"{m}.bank": bank.tokens.contiguous() for m, bank in self.banks.items()}
        write_atomic(folder / "banks.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        write_json_atomic(folder / "monitor.json", {
            "format": FORMAT, "settings": self.settings.model_dump(mode="json"), "modalities": self.modalities,
            "bank": {m: {"kept": len(b.tokens), "total": b.total, "radius": b.radius} for m, b in self.banks.items()},
            "score_mean": self.score_mean, "score_std": self.score_std, "weights": self.weights,
            "threshold": self.threshold, "chosen_on": self.chosen_on,
            "sensor_stats": self.sensor_stats.to_dict() if self.sensor_stats else None, "fitted": self.fitted,
        })  # fmt: skip

    @classmethod
    def load(cls, folder: Path) -> MonitorModel:
        path = Path(folder) / "monitor.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            tensors = load_file(str(Path(folder) / "banks.safetensors"))
            if data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            banks = {m: MemoryBank(tensors[f"{m}.bank"].float(), torch.zeros(len(tensors[f"{m}.bank"]), dtype=torch.int64),
                                   data["bank"][m]["radius"], data["bank"][m]["total"])
                     for m in data["modalities"]}  # fmt: skip
            stats = ChannelStats.from_dict(data["sensor_stats"]) if data["sensor_stats"] else None
            return cls(MonitorConfig.model_validate(data["settings"]), banks, data["score_mean"], data["score_std"],
                       data["weights"], float(data["threshold"]), data["chosen_on"], stats, data.get("fitted", {}))  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise InputError(f"{folder}: missing or damaged monitor model ({exc.__class__.__name__}: {exc}); "
                             f"delete the folder to fit it again") from None  # fmt: skip


def standardisation(scores: np.ndarray) -> tuple[float, float]:
    return float(np.mean(scores)), float(max(np.std(scores), 1e-6))


def as_tensor(tokens: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(tokens).astype(np.float32))
