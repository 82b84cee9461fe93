"""The full model (SPEC §5): encoders -> fusion -> LayerNorm -> L2-normalised embedding (+ optional head)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from weldfusion.config import Config
from weldfusion.data.categories import NUM_CLASSES
from weldfusion.registry import MODALITIES
from weldfusion.models.encoders import BackboneEncoder, ModalityEncoder
from weldfusion.models.fusion import FUSIONS


def build_encoder(modality: str, config: Config, weights: bool = True) -> ModalityEncoder:
    return MODALITIES.get(modality).build_encoder(config, weights)


def encoder_dim(modality: str, config: Config) -> int:
    """Width of a modality's tokens, from the architecture alone (no weights loaded)."""
    return MODALITIES.get(modality).encoder_dim(config)


@dataclass
class ModelOutput:
    embedding: torch.Tensor  # (B, E), unit length
    logits: torch.Tensor | None = None  # (B, 12) with the classification head
    attention: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (B, heads, tokens, N)
    contribution: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (B,) size of its fusion input


class WeldFusionModel(nn.Module):
    """Modalities whose encoder outputs come from the feature cache (`cached`) get no encoder here:
    the batch then carries their tokens and token masks directly."""

    def __init__(self, config: Config, cached: frozenset[str] | set[str] = frozenset(), weights: bool = True):
        super().__init__()
        m = config.model
        self.modalities = list(m.modalities)
        self.encoders = nn.ModuleDict({mod: build_encoder(mod, config, weights) for mod in self.modalities if mod not in cached})
        dims = {mod: encoder_dim(mod, config) for mod in self.modalities}
        self.fusion = FUSIONS[m.fusion.kind](dims, m.fusion, m.embedding_dim)
        self.norm = nn.LayerNorm(m.embedding_dim)
        self.head = nn.Linear(m.embedding_dim, NUM_CLASSES) if m.classifier else None

    def encode(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Token sequences and their validity masks, from the batch's cached tokens or the encoders."""
        tokens, valid = dict(batch.get("tokens", {})), dict(batch.get("token_mask", {}))
        for modality, encoder in self.encoders.items():
            if modality not in tokens:
                tokens[modality], valid[modality] = encoder(batch["inputs"][modality], batch["mask"][modality])
        return tokens, valid

    def forward(self, batch: dict, return_attention: bool = False) -> ModelOutput:
        tokens, valid = self.encode(batch)
        fused = self.fusion({m: tokens[m].float() for m in self.modalities}, valid, return_attention)
        embedding = F.normalize(self.norm(fused.vector), dim=-1)
        logits = self.head(embedding) if self.head is not None else None
        return ModelOutput(embedding, logits, fused.attention, fused.contribution)

    def backbones(self) -> list[BackboneEncoder]:
        return [e for e in self.encoders.values() if isinstance(e, BackboneEncoder)]

    def freeze(self) -> None:
        """Freeze the pretrained encoders (the sensor encoder and the fusion keep training)."""
        for encoder in self.backbones():
            encoder.freeze()

    def unfreeze(self, last_k_blocks: int | None = None) -> None:
        for encoder in self.backbones():
            encoder.unfreeze(last_k_blocks)

    def parameter_report(self) -> dict[str, tuple[int, int]]:
        """Module -> (total, trainable) parameter counts, plus 'total'."""
        parts: dict[str, nn.Module] = {f"encoders.{m}": e for m, e in self.encoders.items()}
        parts.update(fusion=self.fusion, norm=self.norm, **({"head": self.head} if self.head is not None else {}))
        report = {name: _count(module) for name, module in parts.items()}
        report["total"] = _count(self)
        return report


def _count(module: nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
