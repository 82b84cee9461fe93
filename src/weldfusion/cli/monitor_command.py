"""`weldfusion monitor RUN --replay SAMPLE_DIR... [--speed 1|max] [--events FILE.jsonl] [--mqtt HOST:PORT/TOPIC]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from weldfusion.cli.console import err, out
from weldfusion.errors import InputError
from weldfusion.data.samples import folder_sample
from weldfusion.monitor.replay import replay
from weldfusion.monitor.session import Monitor
from weldfusion.monitor.sinks import JsonlSink, MqttSink


def add_monitor(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("monitor", help="watch welds as they are made: replay recorded weld folders through the streaming monitor")
    p.add_argument("run", type=Path, metavar="RUN", help="an anomaly run (its monitor is fitted on first use)")
    p.add_argument("--replay", type=Path, nargs="+", required=True, metavar="SAMPLE_DIR", help="weld folders to replay, in order")
    p.add_argument("--speed", type=speed, default=None, metavar="1|max", help="1: real time (or any factor); max: as fast as possible (default)")
    p.add_argument("--events", type=Path, metavar="FILE.jsonl", help="write every event as one JSON line")
    p.add_argument("--mqtt", metavar="HOST:PORT/TOPIC", help="publish alerts and verdicts to this MQTT topic")
    p.set_defaults(handler=run_monitor)


def speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        factor = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: use 1 (real time), another positive factor, or max") from None
    if not factor > 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be > 0")
    return factor


def run_monitor(args: argparse.Namespace) -> int:
    monitor = Monitor.load(args.run, say=lambda line: err.print(line, highlight=False, soft_wrap=True))
    sinks = [JsonlSink(args.events)] if args.events else []
    refused: list[str] = []
    verdicts: list[tuple[dict, float, float]] = []
    try:
        if args.mqtt:
            sinks.append(MqttSink(args.mqtt))
        for folder in args.replay:
            try:
                sample = folder_sample(folder, monitor.model.modalities, "nothing to monitor")
            except InputError as exc:
                refused.append(str(exc))
                err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
                continue
            events: list[dict] = []

            def emit(batch: list[dict]) -> None:
                for sink in sinks:
                    sink(batch)
                for event in batch:
                    show(event)
                events.extend(e for e in batch if e["type"] == "verdict")

            started = time.perf_counter()
            duration = replay(monitor.start(str(folder)), sample, monitor.run.config, args.speed, emit)
            verdicts.append((events[-1], duration, time.perf_counter() - started))
    finally:
        for sink in sinks:
            sink.close()
    summary(verdicts, monitor.model.threshold)
    return 2 if refused else 0


def show(event: dict) -> None:
    """A live line per alert and per problem."""
    if event["type"] == "alert":
        cause = ", ".join(f"{m} (z {z:.2f})" for m, z in event["modalities"].items())
        a, b = event["window"]
        out.print(f"[bold red]ALERT[/] {Path(event['weld']).name} at {event['t']:.1f} s (window {a:.1f}-{b:.1f} s): {cause}; "
                  f"score {event['score']:.2f} >= {event['threshold']:.2f}", highlight=False, soft_wrap=True)  # fmt: skip
    elif event["type"] == "problem":
        err.print(f"[yellow]problem[/] {Path(event['weld']).name} at {event['t']:.1f} s: {event['problem']}", highlight=False, soft_wrap=True)


def summary(verdicts: list[tuple[dict, float, float]], threshold: float) -> None:
    if not verdicts:
        return
    table = Table(title=f"{len(verdicts)} weld(s) monitored (alert threshold {threshold:.3f})")
    for column in ("weld", "seconds", "verdict", "score", "alerts", "first alert", "problems", "real-time factor"):
        table.add_column(column)
    for v, duration, wall in verdicts:
        score = "–" if v["score"] is None else f"{v['score']:.3f}"
        first = "–" if v["first_alert"] is None else f"{v['first_alert']:.1f} s"
        table.add_row(Path(v["weld"]).name, f"{duration:.1f}", v["decision"] or "[red]none: not seen[/]", score, str(v["alerts"]), first,
                      str(v["problems"]), f"{duration / max(wall, 1e-9):.1f}")  # fmt: skip
    out.print(table)
