"""Session-disjoint, category-stratified train/val/test splits (DATASET.md, "What this means" 2).

Welds of one session share a label and a recipe, so a split that shares sessions leaks. Sessions
are grouped before splitting: recipe twins (a "top-up" folder `2_good_weld_2_...` beside
`good_weld_2_...`: same name once a numeric prefix is removed) and sessions that share a part
number (the real manifest has 20 such parts) always land in the same split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from weldfusion.data.categories import category_name
from weldfusion.io import write_atomic

SPLIT_NAMES = ("train", "val", "test")


def session_groups(table: pd.DataFrame) -> pd.Series:
    """Group id per row (index aligned): twins by name and sessions sharing a part number are joined."""
    sessions = sorted(table["session"].unique())
    parent = {s: s for s in sessions}

    def find(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_name: dict[str, str] = {}
    for s in sessions:
        stem = re.sub(r"^\d+_", "", s).lower()
        union(s, by_name.setdefault(stem, s))
    parts = table["key"].map(lambda k: PurePosixPath(k).name)
    for _, rows in table.groupby(parts)["session"]:
        first = rows.iloc[0]
        for other in rows.iloc[1:]:
            union(first, other)
    return table["session"].map(find)


def sessions_crossing_splits(table: pd.DataFrame) -> list[str]:
    """Sessions whose welds sit in more than one split (a leak under any protocol)."""
    with_split = table[table["split"].notna()]
    counts = with_split.groupby("session")["split"].nunique()
    return sorted(counts[counts > 1].index)


@dataclass
class SplitResult:
    splits: pd.Series  # key -> split name
    counts: pd.DataFrame  # category x split sample counts
    groups: int
    warnings: list[str] = field(default_factory=list)


def make_split(table: pd.DataFrame, val: float = 0.15, test: float = 0.15, seed: int = 0) -> SplitResult:
    """Assign every session group of every category to one split, close to the requested fractions."""
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be fractions with val + test < 1")
    rng = np.random.default_rng(seed)
    table = table.assign(group=session_groups(table))
    warnings: list[str] = []
    sizes = table.groupby("group").size()
    majority = table.groupby("group")["label"].agg(lambda s: s.mode().iloc[0])
    mixed = table.groupby("group")["label"].nunique()
    for group in mixed[mixed > 1].index:
        warnings.append(f"session group {group} holds several categories; split with its majority category")
    assignment: dict[str, str] = {}
    fractions = np.array([1 - val - test, val, test])
    for label in sorted(majority.unique()):
        groups = list(majority[majority == label].index)
        rng.shuffle(groups)
        groups.sort(key=lambda g: -sizes[g])  # stable: ties keep the shuffled order
        targets = fractions * sum(sizes[g] for g in groups)
        filled = np.zeros(3)
        members: list[list[str]] = [[], [], []]
        for group in groups:
            choice = int(np.argmax(targets - filled))
            members[choice].append(group)
            filled[choice] += sizes[group]
        for empty in [i for i in range(3) if not members[i]]:
            donor = max(range(3), key=lambda i: len(members[i]))
            if len(members[donor]) > 1:
                smallest = min(members[donor], key=lambda g: sizes[g])
                members[donor].remove(smallest)
                members[empty].append(smallest)
        missing = [SPLIT_NAMES[i] for i in range(3) if not members[i]]
        if missing:
            warnings.append(f"{category_name(label)}: only {len(groups)} session group(s), none in {', '.join(missing)}")
        for i, split_members in enumerate(members):
            assignment.update({g: SPLIT_NAMES[i] for g in split_members})
    splits = table["group"].map(assignment)
    splits.index = table["key"]
    counts = pd.crosstab(table["label"], splits.to_numpy()).reindex(columns=list(SPLIT_NAMES), fill_value=0)
    counts.index = counts.index.map(category_name)
    return SplitResult(splits=splits, counts=counts, groups=len(sizes), warnings=warnings)


def write_split_manifest(manifest_table: pd.DataFrame, splits: pd.Series, columns: list[str], path: Path) -> None:
    """The original manifest rows (original columns) with SPLIT replaced, written atomically."""
    out = manifest_table[columns].copy()
    out["SPLIT"] = manifest_table["key"].map(splits).str.upper().to_numpy()
    write_atomic(path, lambda tmp: out.to_csv(tmp, index=False))
