"""The four modality encoders behind one interface.

`encoder(x, valid) -> (tokens (B, N, D), token_valid (B, N))`, where `valid` marks the usable items
of each sample (video: (B, 1); photo views: (B, V); audio clips: (B, C); sensor log: (B, 1)).
Only valid items go through the backbone; invalid ones come out as masked zero tokens, so a
masked value can never reach the fusion.

Tokens keep their layout: each item's tokens form a (time, height, width) grid (video: tubelets x
patch rows x patch columns; a photo: 1 x rows x columns; an audio clip: time x frequency x 1; the
sensor log: steps x 1 x 1), without class or distillation tokens, laid out item by item in grid
order, so every token maps back to a moment and a place (`encoder.grid` after a call). `pool_grid`
averages neighbouring tokens within the grid (never across items) down to a configured size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from weldfusion.config import EncoderConfig, SensorEncoderConfig
from transformers import ASTConfig, ASTModel, Dinov2Config, Dinov2Model, VJEPA2Config, VJEPA2Model

from weldfusion.models.backbones import Backbone, load_backbone

Grid = tuple[int, int, int]  # one item's tokens: time x height x width


def pool_grid(tokens: torch.Tensor, size: list[int] | None) -> torch.Tensor:
    """(n, t, h, w, D) -> (n, t', h', w', D) by adaptive average pooling of each axis to at most `size`."""
    target = tuple(min(have, want) for have, want in zip(tokens.shape[1:4], size)) if size else tokens.shape[1:4]
    if target == tuple(tokens.shape[1:4]):
        return tokens
    return F.adaptive_avg_pool3d(tokens.permute(0, 4, 1, 2, 3), target).permute(0, 2, 3, 4, 1)


class ModalityEncoder(nn.Module):
    """Shared plumbing: run `embed_items` on the valid items only, pool their grids, lay tokens out per sample."""

    output_dim: int
    pool: list[int] | None = None
    grid: Grid = (1, 1, 1)  # the grid of each item's tokens in the last call's output

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """(n, *item shape) -> (n, t, h, w, D) for valid items ((n, L, D): a sequence in time)."""
        raise NotImplementedError

    def _grid(self, items: torch.Tensor) -> torch.Tensor:
        out = self.embed_items(items)
        return pool_grid(out[:, :, None, None] if out.ndim == 3 else out, self.pool)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, items, *item shape); valid: (B, items) bool -> item by item, grid order."""
        b, items = valid.shape
        flat = x.reshape(b * items, *x.shape[2:])
        flat_valid = valid.reshape(-1)
        if flat_valid.any():
            out = self._grid(flat[flat_valid])
        else:  # nothing valid in the batch: shapes from a dry run on one item
            with torch.no_grad():
                out = self._grid(flat[:1]).detach()[:0]
        self.grid = tuple(out.shape[1:4])
        length = math.prod(self.grid)
        tokens = out.new_zeros(b * items, length, out.shape[-1])
        tokens[flat_valid] = out.reshape(len(out), length, out.shape[-1])
        return tokens.reshape(b, items * length, -1), valid.repeat_interleave(length, dim=1)

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
        self.pool = spec.pool_grid
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
    """V-JEPA 2 encoder on (B, 1) clips of (T, 3, H, W) frames -> (T/tubelet) x (H/p) x (W/p) tokens of 1024."""

    backbone_classes = (VJEPA2Model, VJEPA2Config)

    def __init__(self, spec: EncoderConfig, weights: bool = True):
        super().__init__(spec, weights)
        self.backbone.predictor = None  # only the encoder is used (get_vision_features skips the predictor)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x.unsqueeze(1), valid)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        config = self.backbone.config
        grid = (items.shape[1] // config.tubelet_size, items.shape[3] // config.patch_size, items.shape[4] // config.patch_size)
        tokens = self.backbone.get_vision_features(items)
        return tokens.reshape(len(items), *grid, tokens.shape[-1])


class ImageEncoder(BackboneEncoder):
    """DINOv2 on each valid view of (B, V, 3, H, W) -> per view 1 x (H/p) x (W/p) patch tokens (CLS dropped)."""

    backbone_classes = (Dinov2Model, Dinov2Config)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        patch = self.backbone.config.patch_size
        tokens = self.backbone(pixel_values=items).last_hidden_state[:, 1:]
        return tokens.reshape(len(items), 1, items.shape[2] // patch, items.shape[3] // patch, tokens.shape[-1])


class AudioEncoder(BackboneEncoder):
    """AST on each valid clip of (B, C, frames, mel) fbank -> per clip time x frequency x 1 patch tokens
    (class and distillation tokens dropped), clips in time order."""

    backbone_classes = (ASTModel, ASTConfig)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        frequency, time = self.backbone.embeddings.get_shape(self.backbone.config)
        tokens = self.backbone(input_values=items).last_hidden_state[:, 2:]  # frequency-major patches
        return tokens.reshape(len(items), frequency, time, 1, tokens.shape[-1]).transpose(1, 2)


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
        tokens = self.encoder(self.input(items) + self.positions[:, : items.shape[1]])
        return tokens.reshape(len(items), items.shape[1], 1, 1, tokens.shape[-1])


def sinusoidal(steps: int, dim: int) -> torch.Tensor:
    position = torch.arange(steps).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, steps, dim)
    table[0, :, 0::2] = torch.sin(position * frequency)
    table[0, :, 1::2] = torch.cos(position * frequency)
    return table
