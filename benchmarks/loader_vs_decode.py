"""Our readers vs today's readers vs the decoders alone, on `--size real` synthetic welds (`full` preset
shapes), and whole welds/s on one core and on all cores; every figure is measured in this one run.

- ours: `decode_modality` (GOP-selective video decoding, the torch fbank).
- today's: the readers before issue 13 (`baselines.todays_readers`: sequential video, numpy fbank);
  the fbank row compares the audio transforms alone.
- decoder: the decoders alone (`baselines.decoder_only`): every video frame decoded by PyAV without
  colour conversion (and `ffmpeg -i X -f null -` where ffmpeg is installed), the photos at the JPEG
  draft scale the reader uses, the FLAC, the CSV parse.
One core: this process pinned to one CPU, every library at one thread. All cores: a DataLoader with one
worker per core (one thread each, as in training and cache fills); and video one weld at a time with
every core, as `predict` reads.

    python benchmarks/loader_vs_decode.py [--welds 6] [--seconds 36] [--repeats 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader

from weldfusion.config import Config, load_config
from weldfusion.data.dataset import Transforms, WeldDataset, decode_modality
from weldfusion.data.manifest import read_manifest
from weldfusion.data.readers import read_audio
from weldfusion.data.samples import Sample, build_samples
from weldfusion.features import build_transforms
from weldfusion.synth.generate import synthesize

from baselines import decode_video, decoder_only, ffmpeg_null, has_ffmpeg, numpy_fbank, todays_readers  # benchmarks/, this script's folder

MODALITIES = ("video", "images", "audio", "sensor")


def rate(items: list, work: Callable[[object], object], repeats: int) -> float:
    """Items/s of the fastest of `repeats` passes (after a warm-up: codecs, page cache)."""
    work(items[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            work(item)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


@contextmanager
def one_core() -> Iterator[None]:
    """This process (and what it starts) on one CPU, torch and OpenCV at one thread."""
    cpus, threads, cv_threads = os.sched_getaffinity(0), torch.get_num_threads(), cv2.getNumThreads()
    os.sched_setaffinity(0, {min(cpus)})
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


def figures(ours: float, todays: float, decoder: float | None = None, **extra: float) -> dict:
    out = {"ours_per_s": round(ours, 2), "todays_per_s": round(todays, 2), "ratio": round(ours / todays, 2)}
    if decoder is not None:
        out |= {"decoder_per_s": round(decoder, 2), "vs_decoder": round(ours / decoder, 2)}
    return out | {k: round(v, 2) for k, v in extra.items()}


def per_modality(samples: list[Sample], config: Config, transforms: Transforms, repeats: int) -> dict:
    """Each modality's samples/s on one core: ours, today's, the decoder alone (and ffmpeg for video)."""
    min_size = transforms.images.resize.short_edge
    out = {}
    for modality in MODALITIES:
        ours = rate(samples, lambda s, m=modality: decode_modality(s, m, config.data, transforms), repeats)
        with todays_readers():
            todays = rate(samples, lambda s, m=modality: decode_modality(s, m, config.data, transforms), repeats)
        decoder = rate(samples, lambda s, m=modality: decoder_only(s.files[m], m, min_size, threads=1), repeats)
        extra = {}
        if modality == "video" and has_ffmpeg():
            extra["ffmpeg_null_per_s"] = rate(samples, lambda s: ffmpeg_null(s.files["video"][0], threads=1), repeats)
        out[modality] = figures(ours, todays, decoder, **extra)
    per_weld = {k: 1 / sum(1 / out[m][k] for m in MODALITIES) for k in ("ours_per_s", "todays_per_s", "decoder_per_s")}
    out["weld"] = figures(per_weld["ours_per_s"], per_weld["todays_per_s"], per_weld["decoder_per_s"])
    waves = [read_audio(s.files["audio"][0], config.data.audio.sample_rate).value for s in samples]
    out["fbank"] = figures(rate(waves, transforms.audio, repeats), rate(waves, partial(numpy_fbank, transforms.audio), repeats))
    return out


def loader_rate(samples: list[Sample], config: Config, transforms: Transforms, workers: int, repeats: int) -> float:
    """Welds/s through a DataLoader with `workers` worker processes (persistent; warm-up epoch excluded)."""
    dataset = WeldDataset(samples, list(MODALITIES), config.data, transforms)
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, persistent_workers=True)
    best = float("inf")
    for epoch in range(repeats + 1):
        start = time.perf_counter()
        for _ in loader:
            pass
        if epoch:
            best = min(best, time.perf_counter() - start)
    return len(samples) / best


def all_cores(samples: list[Sample], config: Config, transforms: Transforms, repeats: int) -> dict:
    cores = len(os.sched_getaffinity(0))
    read = lambda s: decode_modality(s, "video", config.data, transforms)  # noqa: E731
    video_ours = rate(samples, read, repeats)
    weld_ours = loader_rate(samples, config, transforms, cores, repeats)
    with todays_readers():
        video_todays = rate(samples, read, repeats)
        weld_todays = loader_rate(samples, config, transforms, cores, repeats)
    extra = {"ffmpeg_null_per_s": rate(samples, lambda s: ffmpeg_null(s.files["video"][0], 0), repeats)} if has_ffmpeg() else {}
    video_decoder = rate(samples, lambda s: decode_video(s.files["video"][0], cores), repeats)
    return {"cores": cores, "video_all_cores": figures(video_ours, video_todays, video_decoder, **extra),
            "weld_all_cores": figures(weld_ours, weld_todays)}  # fmt: skip


def report(one: dict, every: dict) -> None:
    print("one core (samples/s, higher is better; ratio = ours / today's):")
    print(f"{'modality':<8} {'ours':>8} {'today':>8} {'decoder':>8} {'ratio':>7} {'vs dec':>7}")
    for name, f in one.items():
        decoder = f"{f['decoder_per_s']:8.2f}" if "decoder_per_s" in f else f"{'':8}"
        vs_decoder = f"{f['vs_decoder']:6.2f}x" if "vs_decoder" in f else ""
        print(f"{name:<8} {f['ours_per_s']:8.2f} {f['todays_per_s']:8.2f} {decoder} {f['ratio']:6.2f}x {vs_decoder}")
    print("  (weld: all four modalities one after the other; fbank: the audio transform alone, on decoded waves)")
    if "ffmpeg_null_per_s" in one["video"]:
        print(f"  video decoder alone via `ffmpeg -f null`: {one['video']['ffmpeg_null_per_s']:.2f}/s")
    video, weld = every["video_all_cores"], every["weld_all_cores"]
    print(f"all {every['cores']} cores:")
    print(f"  video, one weld at a time (predict): ours {video['ours_per_s']:.2f}/s, today {video['todays_per_s']:.2f}/s "
          f"({video['ratio']:.2f}x); decoder alone (frame threads) {video['decoder_per_s']:.2f}/s"
          + (f", ffmpeg -f null {video['ffmpeg_null_per_s']:.2f}/s" if "ffmpeg_null_per_s" in video else ""))  # fmt: skip
    print(f"  whole welds, DataLoader with {every['cores']} workers: ours {weld['ours_per_s']:.2f}/s, today {weld['todays_per_s']:.2f}/s ({weld['ratio']:.2f}x)")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--welds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=36.0, help="weld length (the real median is ~36 s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, help="an existing dataset root (default: synthesise one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp)
        if args.data is None:
            synthesize(root, per_class=1, seconds=args.seconds, size="real", split="official", seed=0)
        samples = build_samples(root, read_manifest(root / "manifest.csv"))[0][: args.welds]
        config = load_config("full")
        transforms = build_transforms(config)
        print(f"{len(samples)} real-size synthetic welds, `full` preset shapes")
        with one_core():
            one = per_modality(samples, config, transforms, args.repeats)
        every = all_cores(samples, config, transforms, args.repeats)
    report(one, every)
    results = one | {k: v for k, v in every.items() if k != "cores"} | {"cores": every["cores"]}
    print(json.dumps({"loader_vs_decode": results}))
    return results


if __name__ == "__main__":
    main()
