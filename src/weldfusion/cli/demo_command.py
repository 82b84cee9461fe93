"""`weldfusion demo`: the whole system end to end on synthetic welds in the real format.

1. write a synthetic dataset (realistic by default; session-disjoint supervised split) and an anomaly manifest
   (TRAIN = Good only) over the same welds; 2. check it; 3. train the `cpu` preset with SupCon and
   evaluate it with k-NN on the held-out test split; 4. fit and evaluate the anomaly protocol on the
   anomaly split (TRAIN = Good only, sessions kept apart); 5. print the headline figures and where the reports are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from weldfusion.cli.console import err, out, progress_bar
from weldfusion.cli.data_commands import print_check
from weldfusion.config import load_config
from weldfusion.engine import check_data, fit_run
from weldfusion.evaluation.evaluate import evaluate_run
from weldfusion.io import write_json_atomic
from weldfusion.synth.generate import DIFFICULTIES, synthesize, write_manifest


def add_demo(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("demo", help="end to end on synthetic data: synth, check, train, evaluate, anomaly")
    p.add_argument("--out", type=Path, default=Path("demo_out"))
    p.add_argument("--per-class", type=int, default=40, help="welds per defect class (Good gets twice as many)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the cpu preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", choices=DIFFICULTIES, default="realistic",
                   help="realistic: local defect events, session nuisance, paper tags (ground truth written); easy: global signatures")  # fmt: skip
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    timings: dict[str, float] = {}
    data, runs = args.out / "data", args.out / "runs"
    overrides = [f"seed={args.seed}", f"cache.dir={args.out.resolve() / 'cache'}"]
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    config = load_config("cpu", overrides)

    def step(name: str, begun: float) -> None:
        timings[name] = round(time.perf_counter() - begun, 1)
        out.print(f"[green]done[/] {name} in {timings[name]} s")

    t = time.perf_counter()
    out.rule("1. synthetic welds in the real on-disk format")
    with progress_bar("writing welds", 0) as advance:
        synthesize(data, args.per_class, 3.0, "small", "supervised", args.seed, 2, advance, args.difficulty)
    # TRAIN = Good only, sessions kept apart (the official split's session leak would flatter the scores)
    write_manifest(data, args.per_class, 3.0, "small", "anomaly", args.seed, "manifest_anomaly.csv", args.difficulty)
    step("synth", t)
    t = time.perf_counter()
    out.rule("2. data check")
    print_check(check_data(data, config))
    step("check", t)
    t = time.perf_counter()
    out.rule("3. classify protocol: SupCon training (cpu preset), k-NN on the held-out test split")
    with progress_bar("caching frozen-encoder features", 0) as advance:
        fit_run(runs / "classify", data, config, say=out.print, progress=lambda m, done, total: advance(done, total),
                progress_bar=err.is_terminal)  # fmt: skip
    step("train", t)
    t = time.perf_counter()
    classify = evaluate_run(runs / "classify", "test")
    step("evaluate", t)
    t = time.perf_counter()
    out.rule("4. anomaly protocol (TRAIN = Good only, session-disjoint)")
    fit_run(runs / "anomaly", data, config.copy_with(["protocol=anomaly"]), data / "manifest_anomaly.csv", say=out.print)
    anomaly = evaluate_run(runs / "anomaly", "test")
    step("anomaly", t)
    out.rule(f"5. results (SYNTHETIC data, {args.difficulty})")
    summary = headline(classify.metrics, anomaly.metrics)
    summary.update(seconds=round(time.perf_counter() - start, 1), timings=timings,
                   reports={"classify": str(classify.report), "anomaly": str(anomaly.report)})  # fmt: skip
    write_json_atomic(args.out / "summary.json", summary)
    print_headline(summary)
    out.print(f"reports: {classify.report} and {anomaly.report}; summary {args.out / 'summary.json'}; "
              f"total {summary['seconds']} s")  # fmt: skip
    return 0


def headline(classify: dict, anomaly: dict) -> dict:
    per_modality = {m: v.get("f1_macro") for m, v in classify["per_modality"].items()}
    best_single = max((v for v in per_modality.values() if v is not None), default=None)
    return {
        "classify": {k: classify[k] for k in ("accuracy", "f1_macro", "f1_weighted", "auroc_defect", "n_query")},
        "classify_per_modality_f1_macro": per_modality,
        "classify_without_modality_f1_macro": {m: v["f1_macro"] for m, v in classify.get("without_modality", {}).items()},
        "fused_minus_best_single_f1": None if best_single is None else round(classify["f1_macro"] - best_single, 4),
        "anomaly": {"auroc_defect": anomaly["auroc_defect"], "auroc_per_defect": anomaly["auroc_per_defect"],
                    "per_modality": {m: v["auroc_defect"] for m, v in anomaly["per_modality"].items()},
                    "weights": anomaly["weights"]},  # fmt: skip
    }


def print_headline(summary: dict) -> None:
    c = summary["classify"]
    out.print(f"[bold]classify[/] (held-out test split, {c['n_query']} welds): macro-F1 {c['f1_macro']:.4f}, "
              f"accuracy {c['accuracy']:.4f}, good-vs-defect AUROC {c['auroc_defect']:.4f}")  # fmt: skip
    out.print(f"[bold]anomaly[/] (session-disjoint TEST): AUROC {summary['anomaly']['auroc_defect']:.4f}")
    table = Table(title="each modality alone vs fused (synthetic data)")
    table.add_column("modality")
    table.add_column("classify macro-F1 (k-NN)", justify="right")
    table.add_column("fused model without it", justify="right")
    table.add_column("anomaly AUROC", justify="right")
    anomaly, without = summary["anomaly"]["per_modality"], summary["classify_without_modality_f1_macro"]
    for modality, f1 in summary["classify_per_modality_f1_macro"].items():
        table.add_row(modality, _fmt(f1), _fmt(without.get(modality)), _fmt(anomaly.get(modality)))
    table.add_row("[bold]fused[/]", _fmt(c["f1_macro"]), "", _fmt(summary["anomaly"]["auroc_defect"]))
    out.print(table)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
