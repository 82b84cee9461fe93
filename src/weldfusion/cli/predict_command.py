"""`weldfusion predict RUN SAMPLE_DIR... [--json FILE]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from weldfusion.cli.console import err, out
from weldfusion.evaluation.predict import predict
from weldfusion.io import write_json_atomic


def add_predict(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("predict", help="predict weld folders (the real layout of one weld, no manifest needed)")
    p.add_argument("run", type=Path, metavar="RUN")
    p.add_argument("folders", type=Path, nargs="+", metavar="SAMPLE_DIR")
    p.add_argument("--json", type=Path, help="also write the predictions as JSON")
    cut = p.add_mutually_exclusive_group()
    cut.add_argument("--threshold", type=float, metavar="X", help="decide at this defect score instead of the fitted threshold")
    cut.add_argument("--false-alarm-rate", type=float, metavar="R",
                     help="decide at the threshold that flags this fraction of the reference Good welds")  # fmt: skip
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    failures: list[str] = []

    def refuse(message: str) -> None:
        failures.append(message)
        err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)

    predictions = predict(args.run, args.folders, refuse, args.threshold, args.false_alarm_rate)
    if predictions:
        table = Table(title=f"{len(predictions)} weld(s) scored with {args.run}")
        for column in ["weld", "category", "defect score", "decision", "modalities", "nearest reference welds",
                       "per modality"]:  # fmt: skip
            table.add_column(column)
        for p in predictions:
            category = f"{p.category} ({p.probability:.2f})" if p.category else "–"
            score = "–" if p.defect_score is None else f"{p.defect_score:.3f} (threshold {p.threshold:.3f})"
            modalities = ", ".join(m if why == "ok" else f"[red]{m}: {why}[/]" for m, why in p.available.items())
            nearest = "; ".join(f"{n['category']} {n['distance']:.3f}" for n in p.nearest[:3])
            per = p.fusion_share or p.modality_scores
            table.add_row(Path(p.folder).name, category, score, p.decision or "[red]none: not seen[/]", modalities, nearest,
                          ", ".join(f"{m} {v}" for m, v in per.items()))  # fmt: skip
        out.print(table)
    if args.json:
        write_json_atomic(args.json, {"predictions": [p.to_dict() for p in predictions], "refused": failures})
    return 2 if failures else 0
