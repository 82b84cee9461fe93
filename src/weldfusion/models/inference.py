"""Embedding a dataset with a model: batched, in inference mode, keeping keys, labels and problems."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from weldfusion.models.devices import module_device, pin_memory, to_device
from weldfusion.models.model import WeldFusionModel


@dataclass
class Embedded:
    embeddings: torch.Tensor  # (N, E), unit length
    labels: torch.Tensor  # (N,)
    keys: list[str]
    problems: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> modality -> reason (masked ones)
    contribution: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (N,) share of the fusion input
    usable: torch.Tensor | None = None  # (N,) bool: at least one modality was valid


def embed(model: WeldFusionModel, dataset: Dataset, batch_size: int = 16, num_workers: int = 0,
          hide: str | None = None) -> Embedded:  # fmt: skip
    """Batches run on the model's device, results come back to the CPU; `hide` masks one modality in
    every weld (the drop-one ablation)."""
    model.eval()
    device = module_device(model)
    embeddings, labels, keys, problems, shares, usable = [], [], [], {}, [], []
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory(device))
    with torch.inference_mode():
        for batch in loader:
            if hide is not None:
                batch = hidden(batch, hide)
            out = model(to_device(batch, device))
            embeddings.append(out.embedding.float().cpu())
            labels.append(batch["label"])
            keys += list(batch["key"])
            for modality, reasons in batch["problems"].items():
                for key, reason in zip(batch["key"], reasons):
                    if reason:
                        problems.setdefault(key, {})[modality] = reason
            shares.append({m: v.cpu() for m, v in contribution_shares(out.contribution).items()})
            masks = [*batch.get("mask", {}).values(), *batch.get("token_mask", {}).values()]
            usable.append(torch.stack([m.flatten(1).any(1) for m in masks], 1).any(1))
    contribution = {m: torch.cat([s[m] for s in shares]) for m in shares[0]} if shares and shares[0] else {}
    return Embedded(torch.cat(embeddings), torch.cat(labels), keys, problems, contribution, torch.cat(usable))


def hidden(batch: dict, modality: str) -> dict:
    """The batch with `modality` masked in every weld."""
    out = dict(batch)
    for kind in ("mask", "token_mask"):
        if modality in batch.get(kind, {}):
            out[kind] = {**batch[kind], modality: torch.zeros_like(batch[kind][modality])}
    return out


def contribution_shares(contribution: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's share of what the fusion's cross-attention added to the fusion tokens (the
    norm of its attention output, normalised over the modalities of the sample; absent = 0)."""
    if not contribution:
        return {}
    total = torch.stack(list(contribution.values())).sum(0).clamp_min(1e-12)
    return {m: (v / total).float() for m, v in contribution.items()}
