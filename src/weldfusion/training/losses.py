"""Supervised contrastive loss (Khosla et al., NeurIPS 2020) and the combined SupCon + CE loss.

For anchor i with positives P(i) (same label, j != i) and candidates A(i) (all j != i):
    L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / t) / sum_{a in A(i)} exp(s_ia / t) )
averaged over anchors that have a positive. Computed in float32 with max subtraction and a
masked log-sum-exp. A batch with no positive pair, or no negative pair (one class only: the loss
would be a constant such as log(31) and teach nothing), gives a zero loss and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PairStats:
    anchors: int  # anchors with at least one positive
    positive_pairs: int  # ordered (anchor, positive) pairs
    negative_pairs: int
    degenerate: bool  # no positive or no negative pair: the loss is zero for this batch


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) boolean (B, B) masks; the diagonal is in neither."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class SupConLoss(nn.Module):
    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature
        self.degenerate_batches = 0

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, PairStats]:
        z = F.normalize(embeddings.float(), dim=1)
        positive, negative = pair_masks(labels)
        stats = PairStats(int(positive.any(1).sum()), int(positive.sum()), int(negative.sum()), False)
        if stats.positive_pairs == 0 or stats.negative_pairs == 0:
            self.degenerate_batches += 1
            stats.degenerate = True
            return embeddings.sum() * 0.0, stats
        logits = z @ z.T / self.temperature
        self_mask = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        has_positive = positive.any(dim=1)
        mean_log_prob_pos = log_prob.masked_fill(~positive, 0.0).sum(1)[has_positive] / positive.sum(1)[has_positive]
        return -mean_log_prob_pos.mean(), stats


class CombinedLoss(nn.Module):
    """supcon_weight * SupCon(embedding) + ce_weight * cross-entropy(head logits)."""

    def __init__(self, temperature: float, supcon_weight: float = 1.0, ce_weight: float = 0.0):
        super().__init__()
        self.supcon = SupConLoss(temperature)
        self.supcon_weight = supcon_weight
        self.ce_weight = ce_weight

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, PairStats]:  # fmt: skip
        loss, stats = self.supcon(embeddings, labels)
        loss = self.supcon_weight * loss
        if self.ce_weight > 0 and logits is not None:
            loss = loss + self.ce_weight * F.cross_entropy(logits.float(), labels)
        return loss, stats
