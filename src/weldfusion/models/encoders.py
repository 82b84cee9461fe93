"""The four modality encoders behind one interface.

`encoder(x, valid) -> (tokens (B, N, D), token_valid (B, N))`, where `valid` marks the usable items
of each sample (video: (B, 1); photo views: (B, V); audio clips: (B, C); sensor log: (B, 1)).
Only valid items go through the backbone; invalid ones come out as masked zero tokens, so a
masked value can never reach the fusion. `pool_tokens` average-pools each item's tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from weldfusion.config import EncoderConfig, SensorEncoderConfig
from transformers import ASTConfig, ASTModel, Dinov2Config, Dinov2Model, VJEPA2Config, VJEPA2Model

from weldfusion.models.backbones import Backbone, load_backbone


def pool_tokens(tokens: torch.Tensor, size: int | None) -> torch.Tensor:
    """(n, L, D) -> (n, size, D) by adaptive average pooling along the sequence (None: unchanged)."""
    if size is None or tokens.shape[1] <= size:
        return tokens
    return F.adaptive_avg_pool1d(tokens.transpose(1, 2), size).transpose(1, 2)


class ModalityEncoder(nn.Module):
    """Shared plumbing: run `embed_items` on the valid items only, then lay tokens out per sample."""

    output_dim: int

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """(n, *item shape) -> (n, L, D) for valid items."""
        raise NotImplementedError

    def combine(self, tokens: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, items, L, D) + (B, items) -> (B, N, D) + (B, N); default: concatenate the items' tokens."""
        b, items, length, dim = tokens.shape
        return tokens.reshape(b, items * length, dim), valid.repeat_interleave(length, dim=1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, items, *item shape); valid: (B, items) bool."""
        b, items = valid.shape
        flat = x.reshape(b * items, *x.shape[2:])
        flat_valid = valid.reshape(-1)
        if flat_valid.any():
            out = self.embed_items(flat[flat_valid])
        else:  # nothing valid in the batch: shapes from a dry run on one item
            with torch.no_grad():
                out = self.embed_items(flat[:1]).detach()[:0]
        length = out.shape[1]
        tokens = out.new_zeros(b * items, length, out.shape[2])
        tokens[flat_valid] = out
        return self.combine(tokens.reshape(b, items, length, -1), valid)

    def freeze(self) -> None:
        self.requires_grad_(False)

    def unfreeze(self, last_k_blocks: int | None = None) -> None:
        """All parameters (None), or only the last k transformer blocks and the final norm."""
        self.requires_grad_(last_k_blocks is None)


class BackboneEncoder(ModalityEncoder):
    """A transformers backbone (`backbone`: its model and config classes); frozen by default (then kept
    in eval mode, no dropout). Swapping the class of an encoder means a subclass with another `backbone`."""

    backbone_classes: Backbone

    def __init__(self, spec: EncoderConfig, weights: bool = True):
        super().__init__()
        self.spec = spec
        self.backbone = load_backbone(self.backbone_classes, spec, weights)
        self.output_dim = int(self.backbone.config.hidden_size)
        if spec.freeze:
            self.freeze()
            if spec.unfreeze_last:
                self.unfreeze(spec.unfreeze_last)

    def blocks(self) -> tuple[nn.ModuleList, nn.Module]:
        """The transformer blocks and the final LayerNorm (their attribute paths differ per class)."""
        named = list(self.backbone.named_modules())
        layers = [m for n, m in named if isinstance(m, nn.ModuleList) and n.split(".")[-1] in ("layer", "layers")]
        norms = [m for n, m in named if n.split(".")[-1] == "layernorm"]
        return layers[0], norms[-1]

    def unfreeze(self, last_k_blocks: int | None = None) -> None:
        super().unfreeze(last_k_blocks)
        if last_k_blocks:
            layers, norm = self.blocks()
            for block in list(layers)[-last_k_blocks:]:
                block.requires_grad_(True)
            norm.requires_grad_(True)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())

    def train(self, mode: bool = True) -> BackboneEncoder:
        return super().train(mode and self.trainable)


class VideoEncoder(BackboneEncoder):
    """V-JEPA 2 encoder on (B, 1) clips of (T, 3, H, W) frames -> (B, T/2 * H/p * W/p, 1024)."""

    backbone_classes = (VJEPA2Model, VJEPA2Config)

    def __init__(self, spec: EncoderConfig, weights: bool = True):
        super().__init__(spec, weights)
        self.backbone.predictor = None  # only the encoder is used (get_vision_features skips the predictor)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x.unsqueeze(1), valid)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        return pool_tokens(self.backbone.get_vision_features(items), self.spec.pool_tokens)


class ImageEncoder(BackboneEncoder):
    """DINOv2 on each valid view of (B, V, 3, S, S); views aggregated by mean, max or concat."""

    backbone_classes = (Dinov2Model, Dinov2Config)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        return pool_tokens(self.backbone(pixel_values=items).last_hidden_state, self.spec.pool_tokens)

    def combine(self, tokens: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.spec.aggregate == "concat":
            return super().combine(tokens, valid)
        weights = valid[:, :, None, None]
        if self.spec.aggregate == "max":
            pooled = tokens.masked_fill(~weights, float("-inf")).amax(dim=1)
            pooled = torch.where(valid.any(1)[:, None, None], pooled, torch.zeros_like(pooled))
        else:
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1)
        return pooled, valid.any(1, keepdim=True).expand(-1, tokens.shape[2])


class AudioEncoder(BackboneEncoder):
    """AST on each valid clip of (B, C, frames, mel) fbank; the clips' tokens concatenated in time order."""

    backbone_classes = (ASTModel, ASTConfig)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        return pool_tokens(self.backbone(input_values=items).last_hidden_state, self.spec.pool_tokens)


class SensorEncoder(ModalityEncoder):
    """Transformer encoder over the standardised log (B, steps, channels) -> (B, steps, d_model)."""

    def __init__(self, spec: SensorEncoderConfig, steps: int, channels: int):
        super().__init__()
        self.output_dim = spec.d_model
        self.input = nn.Linear(channels, spec.d_model)
        if spec.positions == "learned":
            self.positions = nn.Parameter(torch.randn(1, steps, spec.d_model) * 0.02)
        else:
            self.register_buffer("positions", sinusoidal(steps, spec.d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(spec.d_model, spec.heads, spec.ff, spec.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.layers, norm=nn.LayerNorm(spec.d_model), enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x.unsqueeze(1), valid)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.input(items) + self.positions[:, : items.shape[1]])


def sinusoidal(steps: int, dim: int) -> torch.Tensor:
    position = torch.arange(steps).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, steps, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table
