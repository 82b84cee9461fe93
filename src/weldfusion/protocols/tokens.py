"""The token-level anomaly scorer (SPEC §7; PatchCore / AnomalyDINO style) and its localisation.

Per modality, the tokens of the Good TRAIN welds (video tubelets, photo patches, audio patches,
sensor windows; `FeatureSource.tokens`) are standardised per dimension and kept in a memory bank
reduced by greedy coreset subsampling (`weldfusion.models.bank`). A query token's score is its mean
distance to its `k` nearest bank tokens; a weld's modality score is the max (or a high quantile) of
its tokens' scores, so one anomalous patch or moment makes the weld anomalous instead of being
averaged away. The Good TRAIN welds' own scores, which the protocol standardises with, are computed
out of fold (each fold against a bank built without it), as a weld's tokens would match themselves.

Every token keeps its place, so each score maps back: a profile over seconds of the recording for
modalities with a clock, and a heatmap over each photo for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from weldfusion.models.bank import MemoryBank
from weldfusion.models.layout import TokenSet

TokenSets = dict[str, list[TokenSet | None]]  # modality -> per weld


@dataclass
class TokenScorer:
    modalities: list[str]
    ratio: float = 0.1  # coreset share of the Good TRAIN tokens kept in each bank
    k: int = 1  # nearest bank tokens per query token
    quantile: float = 1.0  # of a weld's token scores: its modality score (1 = max)
    folds: int = 5  # out-of-fold scores of the Good TRAIN welds
    seed: int = 0
    banks: dict[str, MemoryBank] = field(default_factory=dict)
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # per-dimension standardisation of tokens
    std: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, good: TokenSets, device: torch.device | str = "cpu", say: Callable[[str], None] = print) -> dict[str, np.ndarray]:
        """Build each modality's bank from the Good TRAIN welds' tokens; returns their out-of-fold
        weld scores per modality (NaN where a weld has no usable token)."""
        own = {}
        for m in self.modalities:
            sets = good[m]
            usable = [i for i, s in enumerate(sets) if s is not None]
            values = np.concatenate([sets[i].values for i in usable])
            self.mean[m] = values.mean(0)
            std = values.std(0)
            self.std[m] = np.where(std > 1e-6, std, 1.0)
            own[m] = np.full(len(sets), np.nan)
            fold_of = np.random.default_rng(self.seed).permutation(len(usable)) % min(self.folds, len(usable))
            for fold in np.unique(fold_of):
                inside = [usable[j] for j in np.flatnonzero(fold_of != fold)]
                bank = self._bank(m, [sets[i] for i in inside], device)
                for j in np.flatnonzero(fold_of == fold):
                    own[m][usable[j]] = self.pool(bank.distances(self._standardise(m, sets[usable[j]]), self.k, device))
            self.banks[m] = self._bank(m, [sets[i] for i in usable], device)
            bank = self.banks[m]
            say(f"{m}: bank of {len(bank.tokens)} of {bank.total} Good tokens ({bank.nbytes / 2**20:.1f} MiB, "
                f"coreset radius {bank.radius:.3g})")  # fmt: skip
        return own

    def _bank(self, modality: str, sets: list[TokenSet], device: torch.device | str) -> MemoryBank:
        values = np.concatenate([self._standardise(modality, s) for s in sets])
        return MemoryBank.build(values, self.ratio, self.seed, device)

    def _standardise(self, modality: str, token_set: TokenSet) -> np.ndarray:
        return ((token_set.values - self.mean[modality]) / self.std[modality]).astype(np.float32)

    def pool(self, token_scores: np.ndarray) -> float:
        return float(np.quantile(token_scores, self.quantile)) if len(token_scores) else np.nan

    def token_scores(self, modality: str, token_set: TokenSet, device: torch.device | str = "cpu") -> np.ndarray:
        return self.banks[modality].distances(self._standardise(modality, token_set), self.k, device)

    def score(self, sets: TokenSets, device: torch.device | str = "cpu") -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
        """Raw modality scores per weld (NaN where unusable), and per weld each modality's token scores."""
        n = len(next(iter(sets.values())))
        raw = {m: np.full(n, np.nan) for m in self.modalities}
        per_token: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        for m in self.modalities:
            for i, token_set in enumerate(sets[m]):
                if token_set is not None:
                    per_token[i][m] = self.token_scores(m, token_set, device)
                    raw[m][i] = self.pool(per_token[i][m])
        return raw, per_token

    # -- persistence ---------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.modalities:
            out[f"{m}.bank"] = self.banks[m].tokens
            out[f"{m}.token_mean"] = torch.from_numpy(self.mean[m].astype(np.float32))
            out[f"{m}.token_std"] = torch.from_numpy(self.std[m].astype(np.float32))
        return out

    def settings(self) -> dict:
        return {"ratio": self.ratio, "k": self.k, "quantile": self.quantile, "folds": self.folds, "seed": self.seed,
                "banks": {m: {"kept": len(b.tokens), "total": b.total, "radius": b.radius} for m, b in self.banks.items()}}  # fmt: skip

    @classmethod
    def restore(cls, modalities: list[str], settings: dict, arrays: dict[str, np.ndarray]) -> TokenScorer:
        scorer = cls(modalities, settings["ratio"], settings["k"], settings["quantile"], settings["folds"], settings["seed"])
        for m in modalities:
            info = settings["banks"][m]
            scorer.banks[m] = MemoryBank(torch.from_numpy(arrays[f"{m}.bank"].astype(np.float32)), info["radius"], info["total"])
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
