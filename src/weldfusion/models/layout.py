"""Where each token lies: the moment of its recording and the place in its photo or frame.

A modality's tokens come item by item (photo views, audio clips), each item a (time, height, width)
grid in row-major order (`weldfusion.models.encoders`), and each item covers a span of seconds of
its recording (NaN for photos). A token's time is its cell centre within the span, and its y and x
are the cell centre as fractions of the whole item (the whole frame or photo is encoded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from weldfusion.models.encoders import Grid


@dataclass
class TokenSet:
    """One weld's usable tokens of one modality and where each lies."""

    values: np.ndarray  # (n, D) float32
    item: np.ndarray  # (n,) item index (photo view in sorted file order, audio clip)
    time: np.ndarray  # (n,) seconds from the start of the recording (NaN: no clock, e.g. photos)
    y: np.ndarray  # (n,) fraction of the item's height (frequency, for audio)
    x: np.ndarray  # (n,) fraction of the item's width
    grid: Grid

    def __len__(self) -> int:
        return len(self.values)


def token_set(values: np.ndarray, valid: np.ndarray, grid: Grid, span: np.ndarray) -> TokenSet | None:
    """The valid tokens of (items * prod(grid), D) `values` with their places; None when none is valid."""
    t, h, w = grid
    index = np.arange(len(values))
    item, cell = np.divmod(index, t * h * w)
    row, x = np.divmod(cell % (h * w), w)
    start, end = span[item, 0], span[item, 1]
    time = start + (cell // (h * w) + 0.5) / t * (end - start)
    keep = np.asarray(valid, bool)
    if not keep.any():
        return None
    return TokenSet(np.asarray(values, np.float32)[keep], item[keep], time[keep], ((row + 0.5) / h)[keep],
                    ((x + 0.5) / w)[keep], grid)  # fmt: skip
