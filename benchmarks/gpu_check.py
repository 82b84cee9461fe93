"""GPU check: the `full` architectures end to end on one CUDA GPU, on real-size synthetic welds.

Cache fill (with the split between decoding and encoding) -> a few training epochs -> evaluate ->
predict, through the same code as `weldfusion train / evaluate / predict`; then the monitor's real-time
factor (`weldfusion monitor --replay --speed max`) on an anomaly run of the same welds. V-JEPA 2 ViT-L, DINOv2-B and
AST are randomly initialised from their real configurations (no download); give local weights with
e.g. `--set model.video.pretrained=/models/vjepa2-vitl-fpc64-256`. Without CUDA it says so and exits 0.

    python benchmarks/gpu_check.py [--per-class 4] [--seconds 30] [--epochs 3] [--set KEY=VALUE ...]
    python benchmarks/gpu_check.py --smoke   # the same steps on the CPU with the cpu preset (keeps this script working in CI)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from weldfusion.config import Config, load_config
from weldfusion.data.dataset import WeldDataset
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import Sample, build_samples
from weldfusion.engine import fit_run
from weldfusion.evaluation.evaluate import evaluate_run
from weldfusion.evaluation.predict import predict
from weldfusion.features import build_transforms
from weldfusion.models.cache import fill_cache, frozen_modalities, open_stores
from weldfusion.models.devices import autocast, loader_workers, pin_memory
from weldfusion.models.model import build_encoder
from weldfusion.data.samples import folder_sample
from weldfusion.monitor.replay import replay
from weldfusion.monitor.session import Monitor as WeldMonitor
from weldfusion.synth.generate import synthesize

RANDOM_FULL = ["model.video.pretrained=null", "model.images.pretrained=null", "model.audio.pretrained=null"]
GIB = 1 << 30


def utilisation_reader() -> tuple[Callable[[], float | None], str]:
    """A function reading the GPU's utilisation in %, and where it comes from."""
    try:
        torch.cuda.utilization()
        return lambda: float(torch.cuda.utilization()), "pynvml"
    except Exception:  # noqa: BLE001 - pynvml missing or unusable
        pass
    if shutil.which("nvidia-smi"):
        index = str(torch.cuda.current_device())
        query = ["nvidia-smi", "-i", index, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        return lambda: float(subprocess.run(query, capture_output=True, text=True, check=True).stdout.split()[0]), "nvidia-smi"
    return lambda: None, "unavailable"


class Monitor:
    """Samples GPU utilisation every `period` seconds and keeps the peak memory of each phase."""

    def __init__(self, device: torch.device, period: float = 0.5):
        self.cuda = device.type == "cuda"
        self.read, self.source = utilisation_reader() if self.cuda else (lambda: None, "unavailable (no GPU)")
        self.period = period
        self.utilisation: dict[str, list[float]] = {}
        self.peak_gib: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        samples: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample, args=(samples, stop), daemon=True)
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        sampler.start()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
                self.peak_gib[name] = round(torch.cuda.max_memory_allocated() / GIB, 2)
            stop.set()
            sampler.join()
            self.utilisation[name] = samples

    def _sample(self, samples: list[float], stop: threading.Event) -> None:
        while not stop.wait(self.period):
            try:
                value = self.read()
            except (subprocess.SubprocessError, ValueError, IndexError, RuntimeError):
                value = None
            if value is not None:
                samples.append(value)

    def summary(self, name: str) -> str:
        values = self.utilisation.get(name) or []
        if not values:
            return f"GPU utilisation {self.source}"
        return f"GPU utilisation mean {statistics.fmean(values):.0f} %, max {max(values):.0f} % ({self.source})"


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def decode_rate(samples: list[Sample], modality: str, config: Config, device: torch.device) -> float:
    """Welds/s of the fill's loader alone (decoding and preprocessing, no encoder)."""
    dataset = WeldDataset(samples, [modality], config.data, build_transforms(config, [modality]))
    loader = DataLoader(dataset, batch_size=config.cache.batch_size, pin_memory=pin_memory(device),
                        num_workers=min(loader_workers(config.data.num_workers, device), len(samples)))  # fmt: skip
    start = time.perf_counter()
    for _ in loader:
        pass
    return len(samples) / (time.perf_counter() - start)


def encode_rate(samples: list[Sample], modality: str, config: Config, device: torch.device, repeats: int = 5) -> float:
    """Welds/s of the frozen encoder alone, on one decoded batch already on the device."""
    dataset = WeldDataset(samples[: config.cache.batch_size], [modality], config.data, build_transforms(config, [modality]))
    batch = next(iter(DataLoader(dataset, batch_size=config.cache.batch_size)))
    inputs, mask = batch["inputs"][modality].to(device), batch["mask"][modality].to(device)
    encoder = build_encoder(modality, config).to(device).eval()
    with torch.inference_mode(), autocast(device, config.cache.autocast):
        encoder(inputs, mask)  # warm-up (kernels, allocator)
        synchronise(device)
        start = time.perf_counter()
        for _ in range(repeats):
            encoder(inputs, mask)
        synchronise(device)
    return repeats * len(inputs) / (time.perf_counter() - start)


def measure_fill(samples: list[Sample], config: Config, device: torch.device, monitor: Monitor) -> dict:
    """The cache fill of each frozen modality end to end, and its decode and encode parts alone."""
    transforms = build_transforms(config)
    out: dict = {}
    with monitor.phase("fill"):
        start = time.perf_counter()
        for modality in frozen_modalities(config):
            began = time.perf_counter()
            fill_cache(samples, config, transforms, open_stores(config, transforms, modalities=[modality]), device)
            out[modality] = {"welds_per_s": len(samples) / (time.perf_counter() - began)}
        out["all"] = {"welds_per_s": len(samples) / (time.perf_counter() - start)}
    for modality in frozen_modalities(config):
        out[modality].update(decode_welds_per_s=decode_rate(samples, modality, config, device),
                             encode_welds_per_s=encode_rate(samples, modality, config, device))  # fmt: skip
    return out


def step_seconds(run: Path) -> float | None:
    """Median training step time from logs/steps.csv (each row: seconds since its epoch began)."""
    with (run / "logs" / "steps.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    gaps = [float(b["seconds"]) - float(a["seconds"]) for a, b in zip(rows, rows[1:]) if a["epoch"] == b["epoch"]]
    return statistics.median(gaps) if gaps else None


def predict_latency(run: Path, folders: list[Path], device: torch.device) -> tuple[float, float]:
    """(seconds per weld beyond the first, seconds of a one-weld call): model and encoder loading
    counts in the second only."""
    start = time.perf_counter()
    predict(run, folders[:1], device=device)
    single = time.perf_counter() - start
    start = time.perf_counter()
    predict(run, folders, device=device)
    return (time.perf_counter() - start - single) / max(len(folders) - 1, 1), single


def monitor_rate(root: Path, run: Path, config: Config, folders: list[Path], device: torch.device) -> dict:
    """The monitor's real-time factor (stream seconds per processing second, replayed as fast as possible)
    on an anomaly run of the same data (its features come from the cache already filled)."""
    fit_run(run, root, config.copy_with(["protocol=anomaly", "eval.anomaly_k=2"]), say=lambda *a: None,
            accelerator="gpu" if device.type == "cuda" else "cpu")  # fmt: skip
    started = time.perf_counter()
    weld_monitor = WeldMonitor.load(run, say=lambda *a: None, device=device)
    fit_s, stream_s, wall_s = time.perf_counter() - started, 0.0, 0.0
    for folder in folders:
        sample = folder_sample(folder, weld_monitor.model.modalities, "nothing to monitor")
        started = time.perf_counter()
        stream_s += replay(weld_monitor.start(str(folder)), sample, weld_monitor.run.config)
        synchronise(device)
        wall_s += time.perf_counter() - started
    return {"welds": len(folders), "stream_s": stream_s, "processing_s": wall_s, "real_time_factor": stream_s / wall_s,
            "fit_s": fit_s}  # fmt: skip


def run_check(args: argparse.Namespace, device: torch.device, tmp: Path) -> dict:
    root, run = tmp / "data", tmp / "run"
    size, preset, extra = ("small", "cpu", []) if args.smoke else ("real", "full", RANDOM_FULL)
    started = time.perf_counter()
    synthesize(root, per_class=args.per_class, seconds=args.seconds, size=size, split="supervised", seed=0,
               workers=max(1, min(os.cpu_count() or 1, 16)))  # fmt: skip
    print(f"synthesised {size}-size welds in {time.perf_counter() - started:.0f} s", flush=True)
    config = load_config(preset, [*extra, f"cache.dir={tmp / 'cache'}", f"train.epochs={args.epochs}", "train.warmup_epochs=1",
                                  "train.patience=0", *args.overrides])  # fmt: skip
    samples, _ = build_samples(root, read_manifest(root / "manifest.csv"))
    monitor = Monitor(device)
    results: dict = {"welds": len(samples), "seconds_per_weld": args.seconds, "fill": measure_fill(samples, config, device, monitor)}
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    with monitor.phase("train"):
        started = time.perf_counter()
        fit_run(run, root, config, say=lambda *a: None, accelerator=accelerator)
        results["train"] = {"seconds": time.perf_counter() - started, "step_s": step_seconds(run), "epochs": args.epochs}
    with monitor.phase("evaluate"):
        started = time.perf_counter()
        evaluate_run(run, "test", device=device)
        results["evaluate"] = {"seconds": time.perf_counter() - started}
    folders = [s.folder for s in samples if s.split == "test"][: args.predict]
    with monitor.phase("predict"):
        per_weld, single = predict_latency(run, folders, device)
        results["predict"] = {"welds": len(folders), "s_per_weld": per_weld, "one_weld_call_s": single}
    with monitor.phase("monitor"):
        results["monitor"] = monitor_rate(root, tmp / "anomaly", config, folders, device)
    results["utilisation"] = {name: monitor.summary(name) for name in monitor.utilisation}
    results["peak_gpu_gib"] = monitor.peak_gib
    return results


def report(results: dict, device: torch.device) -> None:
    fill = results["fill"]
    print(f"cache fill, {results['welds']} welds of {results['seconds_per_weld']:.0f} s: {fill['all']['welds_per_s']:.2f} welds/s "
          f"end to end; {results['utilisation']['fill']}")  # fmt: skip
    for modality, figures in fill.items():
        if modality != "all":
            print(f"  {modality:<7} {figures['welds_per_s']:7.2f} welds/s  (decode alone {figures['decode_welds_per_s']:.2f}, "
                  f"encode alone {figures['encode_welds_per_s']:.2f})")  # fmt: skip
    train = results["train"]
    step = "n/a" if train["step_s"] is None else f"{train['step_s'] * 1000:.1f} ms"
    print(f"training: {train['epochs']} epochs in {train['seconds']:.1f} s, step {step} (median); {results['utilisation']['train']}")
    print(f"evaluate (test split): {results['evaluate']['seconds']:.1f} s")
    p = results["predict"]
    print(f"predict: {p['s_per_weld'] * 1000:.0f} ms per weld ({p['welds']} welds; a one-weld call with model loading "
          f"{p['one_weld_call_s']:.1f} s)")  # fmt: skip
    m = results["monitor"]
    print(f"monitor: real-time factor {m['real_time_factor']:.1f} ({m['stream_s']:.0f} s of {m['welds']} welds' recordings in "
          f"{m['processing_s']:.1f} s, video+audio+sensor windows; fitting its banks once {m['fit_s']:.0f} s); {results['utilisation']['monitor']}")  # fmt: skip
    peak = ", ".join(f"{k} {v} GiB" for k, v in results["peak_gpu_gib"].items()) or "n/a (no GPU)"
    print(f"peak GPU memory: {peak}")
    print(json.dumps({"gpu_check": {"device": device_name(device), **results}}))


def device_name(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu (smoke run: these figures say nothing about a GPU)"
    return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=4, help="welds per defect class (Good gets twice as many)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each weld's recordings")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--predict", type=int, default=8, help="welds timed through predict")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--smoke", action="store_true", help="the same steps on the CPU, cpu preset, small welds")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}); nothing to measure")
        return 0
    device = torch.device("cpu" if args.smoke else "cuda")
    print(f"gpu-check on {device_name(device)}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report(run_check(args, device, Path(tmp)), device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
