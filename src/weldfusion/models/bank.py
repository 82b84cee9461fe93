"""A memory bank of Good tokens, and each query token's distance to its nearest bank tokens
(PatchCore / AnomalyDINO style).

The bank is reduced by greedy coreset subsampling (farthest-point selection, PatchCore §3.2): starting
from a seeded random token, it repeatedly keeps the token farthest from those kept, so every Good
token lies within the bank's coverage radius of a kept one. Selection runs in a seeded random
projection (Johnson-Lindenstrauss) of the tokens when they are wider than `projection`.

Search is exact Euclidean: faiss (`IndexFlatL2`, multi-threaded BLAS) on the CPU, chunked
`torch.cdist` on a GPU (benchmarks/token_bank.py measures both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np
import torch

CHUNK = 4096  # query rows per torch.cdist call on a GPU (bounded memory: CHUNK x bank size)


def greedy_coreset(tokens: torch.Tensor, size: int, seed: int = 0, projection: int | None = 128,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, float]:  # fmt: skip
    """Indices of `size` tokens chosen by farthest-point selection, and the coverage radius (the largest
    distance from any token to its nearest chosen one, in the projected space). Deterministic for a seed;
    the choices for a smaller size are a prefix of those for a larger one."""
    n = len(tokens)
    if size >= n:
        return torch.arange(n), 0.0
    generator = torch.Generator().manual_seed(seed)
    x = tokens.float()
    if projection and x.shape[1] > projection:
        x = x @ (torch.randn(x.shape[1], projection, generator=generator) / projection**0.5)
    x = x.to(device)
    norms = (x * x).sum(1)
    chosen = torch.empty(size, dtype=torch.long)
    index = int(torch.randint(n, (1,), generator=generator))
    nearest = torch.full((n,), float("inf"), device=x.device)  # squared distance to the nearest chosen token
    for i in range(size):
        chosen[i] = index
        nearest = torch.minimum(nearest, norms - 2 * (x @ x[index]) + norms[index])  # one matrix-vector product
        index = int(torch.argmax(nearest))
    return chosen, float(nearest.clamp(min=0).max().sqrt())


@dataclass
class MemoryBank:
    """Kept Good tokens (M, D) float32 and where they came from."""

    tokens: torch.Tensor
    owners: torch.Tensor  # (M,) int64: the weld each kept token came from
    radius: float = 0.0  # coverage radius of the coreset (0: every token kept)
    total: int = 0  # tokens before subsampling
    _index: faiss.IndexFlatL2 | None = field(default=None, init=False, repr=False)

    @classmethod
    def build(cls, tokens: np.ndarray | torch.Tensor, owners: np.ndarray | torch.Tensor, ratio: float = 1.0, seed: int = 0,
              device: torch.device | str = "cpu") -> MemoryBank:  # fmt: skip
        """A bank of `ratio` of `tokens` (at least one), chosen by greedy coreset selection on `device`;
        `owners` names each token's weld (for leave-one-weld-out distances)."""
        tokens = torch.as_tensor(tokens, dtype=torch.float32)
        if tokens.ndim != 2 or not len(tokens):
            raise ValueError(f"a memory bank needs a non-empty (n, D) array of tokens, got shape {tuple(tokens.shape)}")
        size = max(1, int(round(len(tokens) * ratio)))
        chosen, radius = greedy_coreset(tokens, size, seed, device=device)
        return cls(tokens[chosen].contiguous(), torch.as_tensor(owners, dtype=torch.int64)[chosen], radius, len(tokens))

    def distances(self, query: np.ndarray | torch.Tensor, k: int = 1, device: torch.device | str = "cpu",
                  exclude: int | None = None) -> np.ndarray:  # fmt: skip
        """(n, D) query tokens -> (n,) mean Euclidean distance to their `k` nearest bank tokens, not
        counting the tokens of weld `exclude` (a Good TRAIN weld scored against the others)."""
        query = torch.as_tensor(query, dtype=torch.float32)
        own = self.owners == exclude if exclude is not None else None
        owned = int(own.sum()) if own is not None else 0
        k = min(k, len(self.tokens) - owned)
        if not len(query) or k < 1:
            return np.full(len(query), np.nan, np.float32)
        wanted = k + owned  # enough neighbours that k remain after dropping the weld's own
        if torch.device(device).type == "cpu":
            if self._index is None:
                self._index = faiss.IndexFlatL2(self.tokens.shape[1])
                self._index.add(self.tokens.numpy())
            squared, indices = self._index.search(np.ascontiguousarray(query.numpy()), wanted)
            squared, indices = torch.from_numpy(squared), torch.from_numpy(indices)
        else:
            bank = self.tokens.to(device)
            found = [torch.cdist(chunk.to(device), bank).topk(wanted, largest=False) for chunk in query.split(CHUNK)]
            squared = torch.cat([f.values.cpu() for f in found]) ** 2
            indices = torch.cat([f.indices.cpu() for f in found])
        if own is not None:  # the weld's own neighbours move to the end; at least k others remain in front
            squared = torch.where(own[indices], torch.inf, squared).sort(dim=1).values
        return squared[:, :k].clamp(min=0).sqrt().mean(1).numpy()

    @property
    def nbytes(self) -> int:
        return self.tokens.numel() * self.tokens.element_size()
