"""`weldfusion data check`: what a dataset holds, what is wrong with it, and what it can be used for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from weldfusion.config import DataConfig
from weldfusion.data.dataset import Transforms
from weldfusion.data.categories import CATEGORIES, GOOD, category_name, code_of_part
from weldfusion.data.manifest import SPLITS, Manifest, read_manifest
from weldfusion.data.problems import Problem
from weldfusion.data.readers import first_line
from weldfusion.data.sampler import contrastive_ready
from weldfusion.data.samples import Sample, build_samples
from weldfusion.data.split import session_groups, sessions_crossing_splits
from weldfusion.errors import ModalityError
from weldfusion.registry import MODALITIES

RECIPE_COLUMNS = ("WELD_TYPE", "THICKNESS_MM", "STEEL_TYPE", "CURRENT_A", "VOLTAGE_V", "GAS_BAR", "ROBOT_SPEED_CPM")
SHORTCUT_PURITY = 0.9
SMALL_CLASS = 10


@dataclass
class CheckReport:
    root: str
    manifest: str
    rows: int
    usable: int
    counts: dict[str, dict[str, int]]
    sessions: dict[str, int]
    modalities: dict[str, int]
    problems: list[dict] = field(default_factory=list)
    sessions_crossing_splits: int = 0
    crossing_sessions: list[str] = field(default_factory=list)
    supervised_ready: bool = False
    warnings: list[str] = field(default_factory=list)
    manifest_errors: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.usable > 0 and self.manifest_errors == 0


def probe(sample: Sample, modality: str, data: DataConfig, transforms: Transforms) -> tuple[str | None, list[str]]:
    """A cheap but real check of one modality: (why it is unusable or None, notes on what is usable)."""
    files = sample.files[modality]
    try:
        return None, MODALITIES.get(modality).probe(files, data, transforms.get(modality))
    except ModalityError as exc:
        return exc.problem, []
    except (OSError, ValueError, RuntimeError, SyntaxError) as exc:
        return f"{files[0].name}: unreadable ({first_line(exc)})", []


def check_dataset(root: Path, data: DataConfig, transforms: Transforms, manifest_path: Path | None = None,
                  deep: bool = True) -> CheckReport:  # fmt: skip
    """`transforms`: the preprocessing of the modalities to check deeply (others are checked for presence)."""
    manifest = read_manifest(manifest_path or Path(root) / "manifest.csv", require_split=False)
    samples, problems = build_samples(Path(root), manifest)
    problems = [*manifest.errors, *problems]
    if deep:
        samples, found = _probe_all(samples, data, transforms)
        problems += found
    problems += _label_mismatches(manifest)
    table = manifest.table
    usable = [s for s in samples if any(s.available(m) for m in MODALITIES.names())]
    crossing = sessions_crossing_splits(table)
    report = CheckReport(
        root=str(root), manifest=str(manifest.path), rows=len(table) + len(manifest.errors), usable=len(usable),
        counts=_counts(table), sessions={category_name(k): int(v) for k, v in table.groupby("label")["session"].nunique().items()},
        modalities={m: sum(s.available(m) for s in samples) for m in MODALITIES.names()},
        problems=[p.to_dict() for p in problems], sessions_crossing_splits=len(crossing), crossing_sessions=crossing,
        supervised_ready=supervised_ready(usable, "train"), manifest_errors=len(manifest.errors),
    )  # fmt: skip
    report.warnings = _warnings(manifest, usable, crossing)
    return report


def supervised_ready(samples: list[Sample], split: str) -> bool:
    """Can `split` make SupCon batches: at least 2 classes with at least 2 samples each?"""
    return contrastive_ready([s.label for s in samples if s.split == split])


def _probe_all(samples: list[Sample], data: DataConfig, transforms: Transforms) -> tuple[list[Sample], list[Problem]]:
    jobs = [(s, m) for s in samples for m in MODALITIES.names() if s.available(m)]
    with ThreadPoolExecutor(max_workers=max(data.num_workers, 1)) as pool:
        results = list(pool.map(lambda job: probe(job[0], job[1], data, transforms), jobs))
    bad: dict[str, dict[str, str]] = {}
    found: list[Problem] = []
    for (sample, modality), (problem, notes) in zip(jobs, results):
        if problem:
            bad.setdefault(sample.key, {})[modality] = problem
            found.append(Problem(sample.key, modality, problem))
        found += [Problem(sample.key, modality, note, masked=False) for note in notes]
    out = []
    for sample in samples:
        for modality, problem in bad.get(sample.key, {}).items():
            sample = sample.without(modality, problem)
        out.append(sample)
    return out, found


def _label_mismatches(manifest: Manifest) -> list[Problem]:
    out = []
    for row in manifest.table.itertuples(index=False):
        code = code_of_part(Path(row.key).name)
        if code is not None and code != row.label:
            out.append(Problem(row.key, None, f"row {row.line}: part-number class code {code:02d} disagrees with CATEGORY {category_name(row.label)}"))
    return out


def _counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    splits = table["split"].fillna("none")
    grid = pd.crosstab(table["label"], splits)
    return {category_name(label): {split: int(n) for split, n in row.items() if n} for label, row in grid.iterrows()}


def _warnings(manifest: Manifest, usable: list[Sample], crossing: list[str]) -> list[str]:
    table = manifest.table
    out: list[str] = []
    if crossing:
        total = table["session"].nunique()
        out.append(f"leak: {len(crossing)} of {total} sessions have welds in more than one split; scores on this split are optimistic (use `weldfusion data split`)")
    groups = table.assign(group=session_groups(table))
    twins = groups.groupby("group")["split"].nunique()
    twin_crossing = int((twins > 1).sum())
    if twin_crossing and not crossing:
        out.append(f"leak: {twin_crossing} groups of recipe-twin sessions span several splits")
    train = table[table["split"] == "train"]
    if len(train) and train["label"].nunique() == 1:
        only = category_name(int(train["label"].iloc[0]))
        out.append(f"the train split holds only {only} welds: supervised contrastive training is impossible on it; "
                   "use `--protocol anomaly`, or `weldfusion data split` for a labelled session-disjoint split")  # fmt: skip
    out += _shortcut_warnings(table)
    small = sorted((n, f"{label}/{split} {n}") for label, splits in _counts(table).items()
                   for split, n in splits.items() if split in SPLITS and 0 < n < SMALL_CLASS)  # fmt: skip
    if small:
        shown = ", ".join(text for _, text in small[:6])
        out.append(f"small classes: {len(small)} category/split cells hold < {SMALL_CLASS} welds (smallest: {shown})")
    missing = [c for c in CATEGORIES if c not in _counts(table)]
    if missing:
        out.append(f"categories absent from the manifest: {', '.join(missing)}")
    if len(usable) < len(table):
        out.append(f"{len(table) - len(usable)} of {len(table)} samples have no usable modality and will be skipped")
    return out


def _shortcut_warnings(table: pd.DataFrame) -> list[str]:
    out = []
    names = table["session"].str.lower()
    in_name = sum(any(word in name for word in CATEGORIES[label].lower().split("_")[:1])
                  for name, label in zip(names, table["label"]) if label != GOOD)  # fmt: skip
    defects = int((table["label"] != GOOD).sum())
    if defects and in_name / defects > SHORTCUT_PURITY:
        out.append("shortcut: the category is written in the session folder names and part numbers; never feed names to a model")
    columns = [c for c in RECIPE_COLUMNS if c in table.columns and table[c].ne("").any()]
    if columns:
        purity = {c: _majority_share(table, [c]) for c in columns}
        joint = _majority_share(table, columns)
        distinct = len(table.groupby(columns))
        if joint >= SHORTCUT_PURITY and len(table) / distinct >= 10:  # else it merely memorises rare values
            best = ", ".join(f"{c} {p:.0%}" for c, p in sorted(purity.items(), key=lambda kv: -kv[1])[:3])
            out.append(f"shortcut: the manifest's recipe columns together name the category of {joint:.0%} of welds "
                       f"(alone: {best}); the sensor log measures the recipe, so compare per-modality results")  # fmt: skip
    return out


def _majority_share(table: pd.DataFrame, columns: list[str]) -> float:
    """Accuracy of predicting each weld's category as the majority category of its recipe value(s)."""
    return float(table.groupby(columns)["label"].agg(lambda s: s.value_counts().iloc[0]).sum() / len(table))
