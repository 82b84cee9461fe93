"""Fusing the modalities' window scores, the hysteresis alert rule, and its threshold.

Rule: a fused window's *level* is the k-th largest of the last m fused scores, so the level is at or
above the threshold exactly when k of the last m windows are. An alert fires when the level reaches
the threshold while armed (once per episode) and re-arms when the level falls below it. A weld's
verdict score is its highest level: the verdict is "defect" exactly when an alert fired.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np


class Hysteresis:
    def __init__(self, k: int, m: int, threshold: float):
        self.k, self.threshold = k, threshold
        self.recent: deque[float] = deque(maxlen=m)
        self.armed = True

    def update(self, score: float) -> tuple[float, bool]:
        """The new level and whether an alert fires now."""
        self.recent.append(score)
        level = sorted(self.recent, reverse=True)[self.k - 1] if len(self.recent) >= self.k else -np.inf
        above = level >= self.threshold
        fired = above and self.armed
        self.armed = not above
        return float(level), fired


def fuse(z: dict[str, float], weights: dict[str, float], how: str) -> float:
    """One fused score from the standardised scores of the modalities present: their max, their mean,
    or their mean weighted by `weights` (plain mean where the present ones all weigh 0)."""
    if how == "max":
        return max(z.values())
    w = np.array([weights.get(m, 0.0) if how == "weighted" else 1.0 for m in z])
    if w.sum() <= 0:
        w = np.ones(len(z))
    return float(np.dot(w, list(z.values())) / w.sum())


def alerts(scores: Iterable[float], k: int, m: int, threshold: float) -> int:
    """How many alerts the rule raises over one weld's fused scores."""
    rule = Hysteresis(k, m, threshold)
    return sum(rule.update(s)[1] for s in scores)


def choose_threshold(welds: list[list[float]], k: int, m: int, rate: float) -> float:
    """The lowest threshold at which these (Good) welds raise at most `rate` alerts per weld, and every
    higher threshold does too. Candidates: just above each level the welds reach."""
    levels = sorted({lvl for scores in welds for lvl in levels_of(scores, k, m) if np.isfinite(lvl)}, reverse=True)
    if not levels:
        return 0.0
    allowed = rate * len(welds)
    chosen = float(np.nextafter(levels[0], np.inf))
    for level in levels:
        if sum(alerts(scores, k, m, level) for scores in welds) > allowed:
            break
        chosen = level
    return chosen


def levels_of(scores: Iterable[float], k: int, m: int) -> list[float]:
    rule = Hysteresis(k, m, np.inf)
    return [rule.update(s)[0] for s in scores]
