"""Read manifest.csv (the real columns of the Intel dataset) into a normalised table.

Required columns: CATEGORY and SUBDIRS; SPLIT for anything that trains or evaluates. DIRECTORY is
derived from SUBDIRS when absent; recipe columns are kept for reports but never fed to a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from weldfusion.data.categories import category_id
from weldfusion.data.problems import Problem
from weldfusion.errors import InputError

SPLITS: tuple[str, ...] = ("train", "val", "test")
COLUMNS: tuple[str, ...] = (
    "CATEGORY", "WELD_TYPE", "THICKNESS_MM", "STEEL_TYPE", "SAMPLES", "CURRENT_A", "VOLTAGE_V",
    "GAS_BAR", "ROBOT_SPEED_CPM", "DIRECTORY", "SUBDIRS", "SPLIT",
)  # fmt: skip


@dataclass
class Manifest:
    """`table` has one row per usable manifest row: key, session, label, split, line (+ original columns)."""

    path: Path
    table: pd.DataFrame
    errors: list[Problem] = field(default_factory=list)  # rows that make the manifest unusable as is

    def raise_errors(self) -> None:
        if self.errors:
            more = f" (and {len(self.errors) - 1} more; run `weldfusion data check`)" if len(self.errors) > 1 else ""
            raise InputError(f"{self.path}: {self.errors[0]}{more}")

    def split(self, name: str) -> pd.DataFrame:
        return self.table[self.table["split"] == name]


def normalise_key(subdirs: str) -> str:
    """One spelling per weld folder: `/` separators, no empty or `.` parts, no trailing slash."""
    text = subdirs.strip().replace("\\", "/")
    return str(PurePosixPath(text)) if text else ""


def read_manifest(path: Path, *, require_split: bool = True) -> Manifest:
    """Parse and validate; fatal rows are collected in `errors` (call `raise_errors()` to enforce)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    raw.columns = [str(c).strip().upper() for c in raw.columns]
    required = ["CATEGORY", "SUBDIRS"] + (["SPLIT"] if require_split else [])
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found {', '.join(raw.columns)})")
    raw = raw.apply(lambda col: col.astype(str).str.strip())
    raw["line"] = range(2, len(raw) + 2)  # 1-based file line; line 1 is the header
    errors: list[Problem] = []
    accepted: list[tuple[int, str, int, str | None]] = []  # (position, key, label, split)
    seen: dict[str, int] = {}
    for pos, row in enumerate(raw.itertuples(index=False)):
        where = f"row {row.line}"
        key = normalise_key(row.SUBDIRS)
        if not key:
            errors.append(Problem(None, None, f"{where}: empty SUBDIRS"))
            continue
        try:
            label = category_id(row.CATEGORY)
        except KeyError as exc:
            errors.append(Problem(key, None, f"{where}: {exc.args[0]}"))
            continue
        split = getattr(row, "SPLIT", "").lower() or None
        if split is not None and split not in SPLITS:
            errors.append(Problem(key, None, f"{where}: unknown SPLIT {row.SPLIT!r} (expected TRAIN, VAL or TEST)"))
            continue
        if split is None and require_split:
            errors.append(Problem(key, None, f"{where}: empty SPLIT"))
            continue
        if key in seen:
            errors.append(Problem(key, None, f"{where}: duplicate SUBDIRS (first on row {seen[key]})"))
            continue
        seen[key] = row.line
        accepted.append((pos, key, label, split))
    table = raw.iloc[[a[0] for a in accepted]].copy()
    table["key"] = pd.Series([a[1] for a in accepted], index=table.index, dtype=object)
    table["label"] = pd.Series([a[2] for a in accepted], index=table.index, dtype=int)
    table["split"] = pd.Series([a[3] for a in accepted], index=table.index, dtype=object)
    directories = table["DIRECTORY"] if "DIRECTORY" in table.columns else [""] * len(table)
    table["session"] = pd.Series([d or k.split("/")[0] for d, k in zip(directories, table["key"])], index=table.index, dtype=object)
    return Manifest(path=path, table=table.reset_index(drop=True), errors=errors)
