"""Evaluate a run with its own protocol and write RUN/eval/<split>/ (used by `evaluate` and `demo`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from weldfusion.evaluation.anomaly import evaluate_anomaly
from weldfusion.evaluation.classify import evaluate_classify
from weldfusion.evaluation.context import open_context
from weldfusion.evaluation.report import write_outputs


@dataclass
class Evaluated:
    metrics: dict
    report: Path


def evaluate_run(run: Path, split: str = "test", data: Path | None = None, k: int | None = None,
                 metric: str | None = None, progress=None) -> Evaluated:  # fmt: skip
    ctx = open_context(run, data, progress)
    if ctx.info.get("protocol") == "anomaly":
        outcome = evaluate_anomaly(ctx, split)
    else:
        outcome = evaluate_classify(ctx, split, k or ctx.config.eval.k, metric or ctx.config.eval.metric)
    folder, metrics = write_outputs(ctx, outcome)
    return Evaluated(metrics, folder / "report.html")
