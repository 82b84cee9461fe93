"""The monitor on the realistic synthetic TEST split of an anomaly-split dataset, `cpu` preset, measured in
one run: the share of defective welds alerted before their recordings end, the delay from an event's
onset to the alert, false alerts per Good weld, the real-time factor, and the AUROC of the monitor's
end-of-weld verdict scores beside the offline anomaly scores of the same welds.

    python benchmarks/monitor.py [--per-class 20] [--seconds 5] [--keep DIR] [--set monitor.key=value ...]

Onset: the earliest start of the weld's ground-truth event windows in the monitored recordings (video,
audio, sensor; seconds from the start of each recording, as the monitor's `t`). `alerted_before_end`
counts any alert before the recordings end; `alerted_after_onset_before_end` only alerts at or after the
onset, and the delay is measured to the first of those (alerts before the onset are counted apart).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from weldfusion.config import load_config
from weldfusion.data.categories import GOOD
from weldfusion.engine import fit_run
from weldfusion.metrics.localisation import read_ground_truth
from weldfusion.monitor.replay import replay
from weldfusion.monitor.session import Monitor
from weldfusion.registry import PROTOCOLS
from weldfusion.runs import load_run_data
from weldfusion.synth.generate import synthesize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the dataset and run in this folder")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for the run (e.g. monitor.fusion=weighted)")
    args = parser.parse_args()
    torch.manual_seed(0)
    work = args.keep or Path(tempfile.mkdtemp(prefix="wf-monitor-"))
    root, run = work / "data", work / ("run-" + "-".join(args.set) if args.set else "run")
    if not (root / "manifest.csv").is_file():
        started = time.perf_counter()
        synthesize(root, per_class=args.per_class, seconds=args.seconds, size="small", split="anomaly", seed=0,
                   workers=2, difficulty="realistic")  # fmt: skip
        print(f"synthesised {root} in {time.perf_counter() - started:.0f} s", flush=True)
    if not (run / "run.json").is_file():
        config = load_config("cpu", ["protocol=anomaly", f"cache.dir={work / 'cache'}", *args.set])
        fit_run(run, root, config, say=lambda line: print(line, flush=True), accelerator="cpu")
    started = time.perf_counter()
    monitor = Monitor.load(run, say=lambda line: print(line, flush=True), device="cpu")
    fit_seconds = time.perf_counter() - started
    data = load_run_data(monitor.run, device=torch.device("cpu"))
    test = data.split("test")
    truth = read_ground_truth(root / "ground_truth.json")
    rows, stream_s, wall_s = [], 0.0, 0.0
    for sample in test:
        events: list[dict] = []
        started = time.perf_counter()
        stream_s += replay(monitor.start(sample.key), sample, monitor.run.config, emit=events.extend)
        wall_s += time.perf_counter() - started
        rows.append(outcome(sample.label, truth[sample.key], events, monitor.model.modalities))
    offline = PROTOCOLS.get("anomaly").load(monitor.run.paths.model, data.features).score(test, data.features)
    print(json.dumps({"monitor": figures(rows, offline.defect_score, stream_s, wall_s, fit_seconds, monitor, args)}))


def outcome(label: int, truth, events: list[dict], modalities: list[str]) -> dict:
    """One weld: its onset and end, its alerts' times, its verdict score."""
    verdict = next(e for e in events if e["type"] == "verdict")
    windows = [a for m in modalities for a, _ in truth.windows.get(m, [])]
    alerts = [e["t"] for e in events if e["type"] == "alert"]
    return {"good": label == GOOD, "onset": min(windows) if windows else None, "end": verdict["t"], "alerts": alerts,
            "score": verdict["score"], "problems": verdict["problems"]}  # fmt: skip


def figures(rows: list[dict], offline: np.ndarray, stream_s: float, wall_s: float, fit_s: float, monitor: Monitor,
            args: argparse.Namespace) -> dict:  # fmt: skip
    good = [r for r in rows if r["good"]]
    timed = [r for r in rows if not r["good"] and r["onset"] is not None]
    alerted = [r for r in timed if any(t <= r["end"] for t in r["alerts"])]
    caught = [r for r in timed if any(r["onset"] <= t <= r["end"] for t in r["alerts"])]
    delays = [min(t for t in r["alerts"] if t >= r["onset"]) - r["onset"] for r in caught]
    labels = np.array([not r["good"] for r in rows])
    verdict = np.array([r["score"] if r["score"] is not None else np.nan for r in rows], float)
    both = np.isfinite(verdict) & np.isfinite(offline)
    auc = lambda s: round(float(roc_auc_score(labels[both], s[both])), 4) if 0 < labels[both].sum() < both.sum() else None  # noqa: E731
    return {
        "welds": {"test": len(rows), "good": len(good), "defective_with_time_event": len(timed)},
        "alerted_before_end": round(len(alerted) / len(timed), 4) if timed else None,
        "alerted_after_onset_before_end": round(len(caught) / len(timed), 4) if timed else None,
        "median_delay_s": round(statistics.median(delays), 3) if delays else None,
        "early_alerts_per_defective_weld": round(sum(sum(t < r["onset"] for t in r["alerts"]) for r in timed) / max(len(timed), 1), 4),
        "false_alerts_per_good_weld": round(sum(len(r["alerts"]) for r in good) / len(good), 4) if good else None,
        "real_time_factor": round(stream_s / wall_s, 2), "stream_seconds": round(stream_s, 1), "processing_seconds": round(wall_s, 1),
        "auroc_verdict": auc(verdict), "auroc_offline": auc(offline),
        "threshold": round(monitor.model.threshold, 4), "threshold_chosen_on": monitor.model.chosen_on,
        "val": monitor.model.fitted.get("val"), "fit_seconds": round(fit_s, 1), "torch_threads": torch.get_num_threads(),
        "settings": {"per_class": args.per_class, "seconds": args.seconds, "set": args.set, "fusion": monitor.settings.fusion,
                     "rule": f"{monitor.settings.alert_k} of {monitor.settings.alert_m}", "tick_s": monitor.settings.tick},
    }  # fmt: skip


if __name__ == "__main__":
    main()
