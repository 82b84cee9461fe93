"""A weld's files -> per-modality arrays + validity masks; and the torch Dataset over a sample table.

Each modality is read by its spec (`weldfusion.registry.MODALITIES`). A modality that is missing or
does not decode becomes a masked placeholder (mask all False) with its reason recorded; a model never
reads a masked value. Notes (interpolated cells, truncated video) are kept beside the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from weldfusion.config import DataConfig
from weldfusion.data.readers import Decoded
from weldfusion.data.samples import Sample
from weldfusion.data.transforms import ChannelStats
from weldfusion.errors import ModalityError
from weldfusion.registry import MODALITIES

Transforms = dict[str, Any]  # modality -> its preprocessing (built by its spec from the whole config)
Standardisation = dict[str, ChannelStats]  # modality -> training-split statistics (standardised modalities)


@dataclass
class SampleInputs:
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # True = valid item (frame clip, view, clip, log)
    spans: dict[str, np.ndarray] = field(default_factory=dict)  # (items, 2) seconds each item covers; NaN: no clock
    problems: dict[str, str] = field(default_factory=dict)  # modality -> why it is masked
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return any(mask.any() for mask in self.masks.values())


def input_shapes(data: DataConfig, transforms: Transforms) -> dict[str, tuple[int, ...]]:
    return {m: MODALITIES.get(m).input_shape(data, t) for m, t in transforms.items()}


def decode_modality(sample: Sample, modality: str, data: DataConfig, transforms: Transforms) -> Decoded:
    """Decode one available modality of a sample (ModalityError when it cannot be used)."""
    return MODALITIES.get(modality).read(sample.files[modality], data, transforms[modality])


def decode_sample(sample: Sample, modalities: list[str], data: DataConfig, transforms: Transforms,
                  stats: Standardisation | None = None) -> SampleInputs:  # fmt: skip
    """All requested modalities of one sample; failures are masked with their reason, never zero-filled silently."""
    out = SampleInputs()
    for modality in modalities:
        spec = MODALITIES.get(modality)
        try:
            if not sample.available(modality):
                raise ModalityError(sample.folder, sample.missing.get(modality, "not available"))
            decoded = decode_modality(sample, modality, data, transforms)
        except ModalityError as exc:
            out.arrays[modality] = np.zeros(spec.input_shape(data, transforms[modality]), np.float32)
            out.masks[modality] = np.zeros(spec.items(data), bool)
            out.spans[modality] = np.full((spec.items(data), 2), np.nan, np.float32)
            out.problems[modality] = str(exc)
            continue
        value = decoded.value
        if stats and modality in stats:
            value = stats[modality].apply(value)
        out.arrays[modality] = value
        out.masks[modality] = decoded.valid if decoded.valid is not None else np.ones(spec.items(data), bool)
        nan = np.full((spec.items(data), 2), np.nan)
        out.spans[modality] = (decoded.span if decoded.span is not None else nan).astype(np.float32)
        if decoded.notes:
            out.notes[modality] = decoded.notes
    return out


class WeldDataset(Dataset):
    """Live decoding of a sample table: item = key, label, inputs/mask per modality, problems."""

    def __init__(self, samples: list[Sample], modalities: list[str], data: DataConfig, transforms: Transforms,
                 stats: Standardisation | None = None):  # fmt: skip
        self.samples = samples
        self.modalities = modalities
        self.data = data
        self.transforms = transforms
        self.stats = stats

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        decoded = decode_sample(sample, self.modalities, self.data, self.transforms, self.stats)
        return {
            "index": index,
            "key": sample.key,
            "label": sample.label,
            "inputs": {m: torch.from_numpy(a) for m, a in decoded.arrays.items()},
            "mask": {m: torch.from_numpy(k) for m, k in decoded.masks.items()},
            "span": {m: torch.from_numpy(k) for m, k in decoded.spans.items()},
            "problems": {m: decoded.problems.get(m, "") for m in self.modalities},
        }
