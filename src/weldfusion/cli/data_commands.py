"""`weldfusion synth`, `weldfusion data check`, `weldfusion data split`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from weldfusion.cli.console import err, out, progress_bar
from weldfusion.config import load_config
from weldfusion.data.categories import CATEGORIES
from weldfusion.data.check import CheckReport
from weldfusion.engine import check_data
from weldfusion.data.manifest import SPLITS, read_manifest
from weldfusion.data.split import make_split, sessions_crossing_splits, write_split_manifest
from weldfusion.errors import InputError
from weldfusion.registry import MODALITIES
from weldfusion.io import write_json_atomic
from weldfusion.synth.generate import DIFFICULTIES, SPLIT_KINDS, synthesize

PROBLEMS_SHOWN = 15


def add_synth(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("synth", help="write a synthetic dataset in the real on-disk format")
    p.add_argument("out", type=Path, metavar="OUT")
    p.add_argument("--per-class", type=int, default=8, help="welds per defect class (Good gets twice as many)")
    p.add_argument("--seconds", type=float, default=4.0, help="mean arc duration per weld")
    p.add_argument("--size", choices=("small", "real"), default="small", help="small files, or the real resolutions")
    p.add_argument("--split", choices=SPLIT_KINDS, default="supervised",
                   help="supervised: session-disjoint, every class in every split; official: TRAIN is Good only and "
                        "sessions cross splits, like the real one; anomaly: TRAIN is Good only, session-disjoint")  # fmt: skip
    p.add_argument("--difficulty", choices=DIFFICULTIES, default="easy",
                   help="easy: class signatures all along every weld; realistic: local defect events with ground truth, "
                        "session nuisance, the class code on a paper tag in every photo")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="processes writing welds")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty (files of the same names are replaced)")
    p.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())) and not args.force:
        raise InputError(f"{args.out}: exists and is not an empty folder; synthetic welds would replace its files "
                         "(choose another OUT, or --force)")  # fmt: skip
    if args.per_class < 1 or args.seconds <= 0:
        raise InputError("--per-class must be >= 1 and --seconds > 0")
    start = time.perf_counter()
    with progress_bar("writing welds", 0) as advance:
        manifest = synthesize(args.out, args.per_class, args.seconds, args.size, args.split, args.seed,
                              max(args.workers, 1), advance, args.difficulty)  # fmt: skip
    rows = sum(1 for _ in manifest.open()) - 1
    truth = f", ground truth {args.out / 'ground_truth.json'}" if args.difficulty == "realistic" else ""
    out.print(f"wrote {rows} {args.difficulty} synthetic welds ({args.size}, {args.split} split) and {manifest}{truth} "
              f"in {time.perf_counter() - start:.1f} s")  # fmt: skip
    return 0


def add_check(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("check", help="counts, problems, leaks and shortcuts of a dataset")
    p.add_argument("root", type=Path, metavar="ROOT")
    p.add_argument("--manifest", type=Path, help="manifest to use instead of ROOT/manifest.csv")
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    p.add_argument("--preset", default="cpu", help="configuration whose reader settings to check with")
    p.add_argument("--quick", action="store_true", help="only check that files exist (no decoding)")
    p.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise InputError(f"{args.root}: dataset root not found")
    report = check_data(args.root, load_config(args.preset), args.manifest, deep=not args.quick)
    print_check(report)
    if args.json:
        write_json_atomic(args.json, report.to_dict())
        out.print(f"report written to {args.json}")
    if report.manifest_errors:
        first = next(p for p in report.problems if p["modality"] is None and "row" in p["problem"])
        raise InputError(f"{report.manifest}: {first['problem']} ({report.manifest_errors} manifest row error(s))")
    if not report.usable:
        raise InputError(f"{report.manifest}: no usable sample under {report.root} (every modality of every row is missing or unreadable)")
    return 0


def print_check(report: CheckReport) -> None:
    counts = Table(title=f"{report.manifest}: {report.rows} rows, {report.usable} usable")
    columns = [*SPLITS, "none"]
    present = [c for c in columns if any(c in v for v in report.counts.values())]
    counts.add_column("category")
    for column in [*present, "sessions"]:
        counts.add_column(column, justify="right")
    for name in CATEGORIES:
        splits = report.counts.get(name, {})
        counts.add_row(name, *(str(splits.get(c, 0)) for c in present), str(report.sessions.get(name, 0)))
    out.print(counts)
    out.print("modalities available: " + ", ".join(f"{m} {report.modalities[m]}" for m in MODALITIES.names()))
    out.print(f"sessions crossing splits: {report.sessions_crossing_splits}")
    out.print(f"supervised-ready (train split has >= 2 classes with >= 2 welds): {report.supervised_ready}")
    if report.problems:
        out.print(f"[bold]{len(report.problems)} problem(s)[/]" + (f", first {PROBLEMS_SHOWN}:" if len(report.problems) > PROBLEMS_SHOWN else ":"))
        for p in report.problems[:PROBLEMS_SHOWN]:
            flag = "" if p.get("masked", True) else " (reported, still used)"
            out.print(f"  {p['sample'] or 'manifest'}{' / ' + p['modality'] if p['modality'] else ''}: {p['problem']}{flag}", highlight=False)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)


def add_split(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("split", help="write a session-disjoint, category-stratified train/val/test manifest")
    p.add_argument("root", type=Path, metavar="ROOT")
    p.add_argument("--out", type=Path, required=True, metavar="NEW_MANIFEST")
    p.add_argument("--manifest", type=Path, help="manifest to split instead of ROOT/manifest.csv")
    p.add_argument("--val", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run_split)


def run_split(args: argparse.Namespace) -> int:
    source = args.manifest or args.root / "manifest.csv"
    if args.out.resolve() == source.resolve():
        raise InputError(f"{args.out}: is the manifest being split; write the new split beside it (e.g. --out split.csv)")
    manifest = read_manifest(source, require_split=False)
    manifest.raise_errors()
    if not (0 < args.val < 1 and 0 < args.test < 1 and args.val + args.test < 1):
        raise InputError(f"--val {args.val} and --test {args.test} must be fractions with val + test < 1")
    result = make_split(manifest.table, args.val, args.test, args.seed)
    columns = [c for c in manifest.table.columns if c.isupper()]
    if "SPLIT" not in columns:
        columns.append("SPLIT")
    write_split_manifest(manifest.table, result.splits, columns, args.out)
    table = Table(title=f"session-disjoint split of {len(manifest.table)} welds in {result.groups} session groups (seed {args.seed})")
    table.add_column("category")
    for split in SPLITS:
        table.add_column(split, justify="right")
    for name, row in result.counts.iterrows():
        table.add_row(str(name), *(str(int(row[s])) for s in SPLITS))
    out.print(table)
    check = read_manifest(args.out)
    crossing = sessions_crossing_splits(check.table)
    out.print(f"sessions crossing splits in the new manifest: {len(crossing)}")
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    out.print(f"wrote {args.out}")
    return 0
