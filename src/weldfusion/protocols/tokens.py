"""The token-level anomaly scorer (SPEC §7; PatchCore / AnomalyDINO style) and its localisation.

Per modality, the tokens of the Good TRAIN welds (video tubelets, photo patches, audio patches,
sensor windows; `FeatureSource.tokens`) are standardised per dimension and kept in a memory bank
reduced by greedy coreset subsampling (`weldfusion.models.bank`). A query token's score is its mean
distance to its `k` nearest bank tokens; a weld's modality score is the max or a high quantile of
its tokens' scores (chosen per modality on VAL among `eval.token_quantiles`), so one anomalous patch
or moment makes the weld anomalous instead of being averaged away. The Good TRAIN welds' own scores, which the protocol standardises with, leave the
weld out (its own tokens are not counted among the nearest), as they would match themselves.

Every token keeps its place, so each score maps back: a profile over seconds of the recording for
modalities with a clock, and a heatmap over each photo for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from sklearn.metrics import roc_auc_score

from weldfusion.models.bank import MemoryBank
from weldfusion.models.layout import TokenSet

TokenSets = dict[str, list[TokenSet | None]]  # modality -> per weld
TokenScores = dict[str, list[np.ndarray | None]]  # modality -> per weld: its tokens' scores


@dataclass
class TokenScorer:
    modalities: list[str]
    ratio: float = 0.1  # coreset share of the Good TRAIN tokens kept in each bank
    k: int = 1  # nearest bank tokens per query token
    quantiles: list[float] = field(default_factory=lambda: [1.0])  # candidates for a weld's modality score (1 = max)
    seed: int = 0
    quantile: dict[str, float] = field(default_factory=dict)  # per modality: the candidate chosen on VAL
    banks: dict[str, MemoryBank] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # per-dimension standardisation of tokens
    std: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, good: TokenSets, device: torch.device | str = "cpu", say: Callable[[str], None] = print) -> TokenScores:
        """Build each modality's bank from the Good TRAIN welds' tokens; returns their own token scores,
        each weld against the bank without its own tokens (None where a weld has no usable token)."""
        own: TokenScores = {}
        for m in self.modalities:
            sets = good[m]
            usable = [i for i, s in enumerate(sets) if s is not None]
            values = np.concatenate([sets[i].values for i in usable])
            self.mean[m] = values.mean(0)
            std = values.std(0)
            self.std[m] = np.where(std > 1e-6, std, 1.0)
            owners = np.concatenate([np.full(len(sets[i]), i) for i in usable])
            bank = self.banks[m] = MemoryBank.build(self._standardise(m, values), owners, self.ratio, self.seed, device)
            own[m] = [None if s is None else bank.distances(self._standardise(m, s.values), self.k, device, exclude=i)
                      for i, s in enumerate(sets)]  # fmt: skip
            say(f"{m}: bank of {len(bank.tokens)} of {bank.total} Good tokens ({bank.nbytes / 2**20:.1f} MiB, "
                f"coreset radius {bank.radius:.3g})")  # fmt: skip
        self.quantile = {m: self.quantiles[0] for m in self.modalities}
        return own

    def choose(self, val: TokenScores, is_defect: np.ndarray) -> dict[str, dict[str, float | None]]:
        """Per modality, the quantile candidate whose weld scores separate VAL's defects from its Good
        welds best (AUROC; the first candidate when VAL lacks either); returns every candidate's AUROC."""
        tried = {}
        for m in self.modalities:
            aurocs = {q: _auroc(is_defect, self.pooled({m: val[m]}, {m: q})[m]) for q in self.quantiles}
            tried[m] = {str(q): auc for q, auc in aurocs.items()}
            found = [(auc, -i) for i, auc in enumerate(aurocs.values()) if auc is not None]
            self.quantile[m] = self.quantiles[-max(found)[1]] if found else self.quantiles[0]
        return tried

    def pooled(self, token_scores: TokenScores, quantile: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Weld scores: per modality, the chosen quantile of each weld's token scores (NaN where none)."""
        q = quantile or self.quantile
        return {m: np.array([np.quantile(t, q[m]) if t is not None and len(t) else np.nan for t in welds])
                for m, welds in token_scores.items()}  # fmt: skip

    def _standardise(self, modality: str, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean[modality]) / self.std[modality]).astype(np.float32)

    def token_scores(self, modality: str, token_set: TokenSet, device: torch.device | str = "cpu") -> np.ndarray:
        return self.banks[modality].distances(self._standardise(modality, token_set.values), self.k, device)

    def score_tokens(self, sets: TokenSets, device: torch.device | str = "cpu") -> TokenScores:
        """Per modality and weld, its tokens' scores (None where it has no usable token)."""
        return {m: [None if s is None else self.token_scores(m, s, device) for s in sets[m]] for m in self.modalities}

    # -- persistence ---------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.modalities:
            out[f"{m}.bank"] = self.banks[m].tokens
            out[f"{m}.owners"] = self.banks[m].owners
            out[f"{m}.token_mean"] = torch.from_numpy(self.mean[m].astype(np.float32))
            out[f"{m}.token_std"] = torch.from_numpy(self.std[m].astype(np.float32))
        return out

    def settings(self) -> dict:
        return {"ratio": self.ratio, "k": self.k, "quantiles": self.quantiles, "quantile": self.quantile, "seed": self.seed,
                "banks": {m: {"kept": len(b.tokens), "total": b.total, "radius": b.radius} for m, b in self.banks.items()}}  # fmt: skip

    @classmethod
    def restore(cls, modalities: list[str], settings: dict, arrays: dict[str, np.ndarray]) -> TokenScorer:
        scorer = cls(modalities, settings["ratio"], settings["k"], settings["quantiles"], settings["seed"], settings["quantile"])
        for m in modalities:
            info = settings["banks"][m]
            scorer.banks[m] = MemoryBank(torch.from_numpy(arrays[f"{m}.bank"].astype(np.float32)),
                                         torch.from_numpy(arrays[f"{m}.owners"].astype(np.int64)), info["radius"], info["total"])  # fmt: skip
            scorer.mean[m], scorer.std[m] = arrays[f"{m}.token_mean"], arrays[f"{m}.token_std"]
        return scorer


def localise(token_set: TokenSet, scores: np.ndarray) -> dict | list[dict]:
    """Where a weld's token scores peak: for a modality with a clock, a profile over seconds (the
    highest token at each moment) and its peak; otherwise, per item (photo view), a heatmap over the
    item's token grid, its peak position (x, y as fractions) and its score."""
    if np.isfinite(token_set.time).all():
        times = np.round(token_set.time, 3)
        moments = np.unique(times)
        profile = [[float(t), round(float(scores[times == t].max()), 4)] for t in moments]
        return {"peak_s": profile[int(np.argmax([s for _, s in profile]))][0], "profile": profile}
    _, h, w = token_set.grid
    out = []
    for view in np.unique(token_set.item):
        here = token_set.item == view
        heat = np.full((h, w), -np.inf)
        rows = np.minimum((token_set.y[here] * h).astype(int), h - 1)
        cols = np.minimum((token_set.x[here] * w).astype(int), w - 1)
        np.maximum.at(heat, (rows, cols), scores[here])
        peak = int(np.argmax(scores[here]))
        out.append({"view": int(view), "peak": [round(float(token_set.x[here][peak]), 4), round(float(token_set.y[here][peak]), 4)],
                    "score": round(float(scores[here][peak]), 4), "heatmap": heat.astype(np.float32)})  # fmt: skip
    return out


def _auroc(is_defect: np.ndarray, score: np.ndarray) -> float | None:
    ok = np.isfinite(score)
    y = is_defect[ok]
    return round(float(roc_auc_score(y, score[ok])), 4) if 0 < y.sum() < len(y) else None
