"""Our readers (decode + sample + preprocess, `full` preset shapes) vs the raw decode of the same files.

Raw decode: every video frame decoded and converted (OpenCV), the whole FLAC decoded (soundfile),
every JPEG fully decoded (Pillow), the CSV parsed (pandas). Prints samples/s per modality and the
ratio ours/raw, measured in this one run on `--size real` synthetic welds.

    python benchmarks/loader_vs_decode.py [--welds 4] [--seconds 30] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import pandas as pd
import soundfile as sf
from PIL import Image

from weldfusion.config import load_config
from weldfusion.data.dataset import decode_modality
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import Sample, build_samples
from weldfusion.features import build_transforms
from weldfusion.synth.generate import synthesize

MODALITIES = ("video", "images", "audio", "sensor")


def raw_decode(sample: Sample, modality: str) -> None:
    files = sample.files[modality]
    if modality == "video":
        capture = cv2.VideoCapture(str(files[0]))
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        capture.release()
    elif modality == "images":
        for path in files:
            with Image.open(path) as image:
                image.convert("RGB").load()
    elif modality == "audio":
        sf.read(str(files[0]), dtype="float32")
    else:
        pd.read_csv(files[0])


def rate(samples: list[Sample], work: Callable[[Sample], object], repeats: int) -> float:
    work(samples[0])  # warm-up (codec initialisation, page cache)
    start = time.perf_counter()
    for _ in range(repeats):
        for sample in samples:
            work(sample)
    return repeats * len(samples) / (time.perf_counter() - start)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--welds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", type=Path, help="an existing dataset root (default: synthesise one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        if args.data is None:
            synthesize(root, per_class=1, seconds=args.seconds, size="real", split="official", seed=0)
        samples, _ = build_samples(root, read_manifest(root / "manifest.csv"))
        samples = samples[: args.welds]
        config = load_config("full")
        transforms = build_transforms(config)
        results = {}
        print(f"{len(samples)} welds, real resolutions, full-preset shapes; samples/s (higher is better)")
        print(f"{'modality':<8} {'ours':>8} {'raw':>8} {'ratio':>7}")
        for modality in MODALITIES:
            ours = rate(samples, lambda s, m=modality: decode_modality(s, m, config.data, transforms), args.repeats)
            raw = rate(samples, lambda s, m=modality: raw_decode(s, m), args.repeats)
            results[modality] = {"ours_per_s": round(ours, 2), "raw_per_s": round(raw, 2), "ratio": round(ours / raw, 2)}
            print(f"{modality:<8} {ours:8.2f} {raw:8.2f} {ours / raw:6.2f}x")
        per_weld = {k: 1 / sum(1 / results[m][k] for m in MODALITIES) for k in ("ours_per_s", "raw_per_s")}
        results["weld"] = {**{k: round(v, 2) for k, v in per_weld.items()},
                           "ratio": round(per_weld["ours_per_s"] / per_weld["raw_per_s"], 2)}  # fmt: skip
        print(f"{'weld':<8} {per_weld['ours_per_s']:8.2f} {per_weld['raw_per_s']:8.2f} {results['weld']['ratio']:6.2f}x  (all four, one core)")
    print(json.dumps({"loader_vs_decode": results}))
    return results


if __name__ == "__main__":
    main()
