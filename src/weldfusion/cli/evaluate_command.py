"""`weldfusion evaluate RUN`: the run's protocol on a split, written to RUN/eval/<split>/."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from weldfusion.cli.console import out, progress_bar
from weldfusion.config import Metric, choices
from weldfusion.errors import InputError
from weldfusion.evaluation.evaluate import evaluate_run
from weldfusion.evaluation.report import per_modality_columns


def add_evaluate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("evaluate", help="evaluate a run (classify: k-NN; anomaly: distance to Good welds)")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("--data", type=Path, metavar="ROOT", help="evaluate on this dataset root instead of the run's")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--k", type=int, help="neighbours (default: the run's eval.k)")
    p.add_argument("--metric", choices=choices(Metric), help="default: the run's eval.metric")
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.k is not None and args.k < 1:
        raise InputError(f"--k {args.k}: must be >= 1")
    start = time.perf_counter()
    with progress_bar("caching features", 0) as advance:
        result = evaluate_run(args.run, args.split, args.data, args.k, args.metric,
                              progress=lambda m, done, total: advance(done, total))  # fmt: skip
    print_summary(result.metrics)
    out.print(f"evaluated in {time.perf_counter() - start:.1f} s; report: {result.report}; per weld: {result.report.parent / 'scores.csv'}")
    return 0


def print_summary(metrics: dict) -> None:
    m = metrics
    figures = ", ".join(f"{k} {m[k]:.4f}" for k in ("accuracy", "f1_macro", "auroc_defect") if m.get(k) is not None)
    out.print(f"[bold]{m['protocol']} / {m['split']}[/]: {figures}")
    table = Table(title="per modality (each alone)")
    keys = [k for k in per_modality_columns(m["per_modality"]) if k not in ("n_reference", "n_query")]
    table.add_column("modality")
    for key in keys:
        table.add_column(key, justify="right")
    for modality, figures_ in m["per_modality"].items():
        table.add_row(modality, *("–" if figures_.get(k) is None else f"{figures_[k]:.4f}" for k in keys))
    out.print(table)
    if m.get("without_modality"):
        out.print("fused model without one modality (macro-F1): "
                  + ", ".join(f"{mod} {v['f1_macro']:.4f}" for mod, v in m["without_modality"].items()))  # fmt: skip
