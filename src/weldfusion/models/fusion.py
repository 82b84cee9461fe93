"""Fusion of the four token sequences into one vector (SPEC §4), and the simple ablation variant."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from weldfusion.config import FusionConfig


@dataclass
class FusionOutput:
    vector: torch.Tensor  # (B, out_dim)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (B, heads, tokens, N)
    contribution: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (B,) size of what it adds


class CrossAttentionFusion(nn.Module):
    """Learnable fusion tokens attend to each modality separately; the results are concatenated.

    Per modality: Linear(D_m -> dim); query = `tokens` learnable vectors, key/value = the projected
    sequence with its padding mask; residual + LayerNorm. Then concat (M * tokens * dim) -> MLP ->
    output projection. A sample whose modality is entirely masked gets LayerNorm(query) for that
    modality: nothing of the masked values enters, and no NaN (no all-masked softmax) appears.
    """

    def __init__(self, input_dims: dict[str, int], spec: FusionConfig, out_dim: int):
        super().__init__()
        self.modalities = list(input_dims)
        self.project = nn.ModuleDict({m: nn.Linear(d, spec.dim) for m, d in input_dims.items()})
        self.queries = nn.Parameter(torch.randn(1, spec.tokens, spec.dim) * 0.02)
        self.attend = nn.ModuleDict(
            {m: nn.MultiheadAttention(spec.dim, spec.heads, dropout=spec.dropout, batch_first=True) for m in input_dims}
        )
        self.norm = nn.ModuleDict({m: nn.LayerNorm(spec.dim) for m in input_dims})
        width = len(input_dims) * spec.tokens * spec.dim
        self.mlp = nn.Sequential(nn.Linear(width, spec.hidden), nn.GELU(), nn.Dropout(spec.dropout), nn.Linear(spec.hidden, out_dim))
        self.output = nn.Linear(out_dim, out_dim)

    def forward(self, tokens: dict[str, torch.Tensor], valid: dict[str, torch.Tensor], return_attention: bool = False,
                ) -> FusionOutput:  # fmt: skip
        fused, maps, contribution = [], {}, {}
        for m in self.modalities:
            mask = valid[m]
            keys = self.project[m](tokens[m].masked_fill(~mask[..., None], 0.0))
            present = mask.any(dim=1)
            padding = ~mask
            padding[~present, 0] = False  # an all-masked row would softmax to NaN; its output is dropped below
            query = self.queries.expand(keys.shape[0], -1, -1)
            out, weights = self.attend[m](query, keys, keys, key_padding_mask=padding, need_weights=return_attention,
                                          average_attn_weights=False)  # fmt: skip
            out = torch.where(present[:, None, None], out, torch.zeros_like(out))
            fused.append(self.norm[m](query + out))
            contribution[m] = out.norm(dim=-1).mean(dim=1)
            if return_attention:
                maps[m] = weights * present[:, None, None, None]  # (B, heads, tokens, N)
        return FusionOutput(self.output(self.mlp(torch.cat(fused, dim=1).flatten(1))), maps, contribution)


class SimpleFusion(nn.Module):
    """Ablation: masked mean of each projected sequence, concatenated, MLP. A learned vector stands
    in for a missing modality."""

    def __init__(self, input_dims: dict[str, int], spec: FusionConfig, out_dim: int):
        super().__init__()
        self.modalities = list(input_dims)
        self.project = nn.ModuleDict({m: nn.Linear(d, spec.dim) for m, d in input_dims.items()})
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(spec.dim)) for m in input_dims})
        self.mlp = nn.Sequential(nn.Linear(len(input_dims) * spec.dim, spec.hidden), nn.GELU(), nn.Dropout(spec.dropout),
                                 nn.Linear(spec.hidden, out_dim))  # fmt: skip

    def forward(self, tokens: dict[str, torch.Tensor], valid: dict[str, torch.Tensor], return_attention: bool = False,
                ) -> FusionOutput:  # fmt: skip
        pooled, contribution = [], {}
        for m in self.modalities:
            mask = valid[m][..., None]
            keys = self.project[m](tokens[m].masked_fill(~mask, 0.0))
            mean = (keys * mask).sum(1) / mask.sum(1).clamp(min=1)
            pooled.append(torch.where(mask.any(1), mean, self.missing[m].expand_as(mean)))
            contribution[m] = torch.where(mask.any(1)[:, 0], mean.norm(dim=-1), torch.zeros_like(mean[:, 0]))
        return FusionOutput(self.mlp(torch.cat(pooled, dim=1)), {}, contribution)


FUSIONS = {"cross_attention": CrossAttentionFusion, "simple": SimpleFusion}
