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
    p.add_argument("--explain", type=Path, metavar="DIR",
                   help="write each weld's timeline and photo heatmaps (PNG) into DIR (anomaly runs, token scorer)")  # fmt: skip
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

    if args.explain and args.explain.exists() and not args.explain.is_dir():
        refuse(f"{args.explain}: --explain needs a folder, and this is a file")
        return 2
    predictions = predict(args.run, args.folders, refuse, args.threshold, args.false_alarm_rate, explain=args.explain)
    if predictions:
        table = Table(title=f"{len(predictions)} weld(s) scored with {args.run}")
        for column in ["weld", "category", "defect score", "decision", "modalities", "nearest reference welds",
                       "per modality", "where"]:  # fmt: skip
            table.add_column(column)
        for p in predictions:
            category = f"{p.category} ({p.probability:.2f})" if p.category else "–"
            score = "–" if p.defect_score is None else f"{p.defect_score:.3f} (threshold {p.threshold:.3f})"
            modalities = ", ".join(m if why == "ok" else f"[red]{m}: {why}[/]" for m, why in p.available.items())
            nearest = "; ".join(f"{n['category']} {n['distance']:.3f}" for n in p.nearest[:3])
            per = p.fusion_share or p.modality_scores
            table.add_row(Path(p.folder).name, category, score, p.decision or "[red]none: not seen[/]", modalities, nearest,
                          ", ".join(f"{m} {v}" for m, v in per.items()), where(p.localisation))  # fmt: skip
        out.print(table)
    if args.json:
        write_json_atomic(args.json, {"predictions": [p.to_dict() for p in predictions], "refused": failures})
    if args.explain and predictions:
        out.print(f"timelines and photo heatmaps: {args.explain}")
    return 2 if failures else 0


def where(localisation: dict) -> str:
    """The peaks, briefly: `video 2.3 s, images view 1 (0.62, 0.48)`."""
    parts = [f"{m} {v['peak_s']:.1f} s" for m, v in localisation.items() if isinstance(v, dict) and "peak_s" in v]
    views = [v for found in localisation.values() if isinstance(found, list) for v in found]
    if views:
        top = max(views, key=lambda v: v["score"])
        parts.append(f"photo {top['view']} ({top['peak'][0]:.2f}, {top['peak'][1]:.2f})")
    return ", ".join(parts) or "–"
