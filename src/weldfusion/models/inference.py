"""Embedding a dataset with a model: batched, in inference mode, keeping keys, labels and problems."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from weldfusion.models.model import WeldFusionModel


@dataclass
class Embedded:
    embeddings: torch.Tensor  # (N, E), unit length
    labels: torch.Tensor  # (N,)
    keys: list[str]
    problems: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> modality -> reason (masked ones)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (N,) share of the fusion input


def embed(model: WeldFusionModel, dataset: Dataset, batch_size: int = 16, num_workers: int = 0) -> Embedded:
    model.eval()
    embeddings, labels, keys, problems, shares = [], [], [], {}, []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    with torch.inference_mode():
        for batch in loader:
            out = model(batch, return_attention=True)
            embeddings.append(out.embedding.float())
            labels.append(batch["label"])
            keys += list(batch["key"])
            for modality, reasons in batch["problems"].items():
                for key, reason in zip(batch["key"], reasons):
                    if reason:
                        problems.setdefault(key, {})[modality] = reason
            shares.append(attention_shares(out.contribution))
    attention = {m: torch.cat([s[m] for s in shares]) for m in shares[0]} if shares and shares[0] else {}
    return Embedded(torch.cat(embeddings), torch.cat(labels), keys, problems, attention)


def attention_shares(contribution: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's share of what the fusion's cross-attention added to the fusion tokens (the
    norm of its attention output, normalised over the modalities of the sample; absent = 0)."""
    if not contribution:
        return {}
    total = torch.stack(list(contribution.values())).sum(0).clamp_min(1e-12)
    return {m: (v / total).float() for m, v in contribution.items()}
