"""Per-weld latency of `predict` for the `cpu` preset (model loading excluded), split into decode (per
modality) / encode / fuse / k-NN, with our readers and with today's (`baselines.todays_readers`); and
the welds/s of batched embedding with one DataLoader worker per core; measured in one run.

    python benchmarks/inference_latency.py [--welds 12] [--size small|real] [--seconds 36]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from weldfusion.config import load_config
from weldfusion.data.dataset import WeldDataset, decode_sample
from weldfusion.metrics import knn
from weldfusion.data.samples import folder_sample
from weldfusion.models.artifact import LoadedModel, load_model, load_reference
from weldfusion.features import build_transforms
from weldfusion.synth.generate import synthesize
from weldfusion.engine import fit_run

from baselines import todays_readers  # benchmarks/, this script's folder


def latency(folders: list[Path], loaded: LoadedModel, reference: torch.Tensor) -> dict[str, float]:
    """Mean ms per weld of each stage of `predict`, one weld at a time (the second of two passes)."""
    model, cfg = loaded.model, loaded.config
    transforms = build_transforms(cfg)
    totals: dict[str, float] = defaultdict(float)
    for _ in range(2):
        totals.clear()
        for folder in folders:
            t0 = time.perf_counter()
            sample = folder_sample(folder, cfg.model.modalities)
            arrays, masks = {}, {}
            for modality in cfg.model.modalities:
                start = time.perf_counter()
                decoded = decode_sample(sample, [modality], cfg.data, transforms, loaded.stats)
                totals[f"decode {modality}"] += time.perf_counter() - start
                arrays[modality], masks[modality] = decoded.arrays[modality], decoded.masks[modality]
            batch = {"inputs": {m: torch.from_numpy(a)[None] for m, a in arrays.items()},
                     "mask": {m: torch.from_numpy(k)[None] for m, k in masks.items()}}  # fmt: skip
            t1 = time.perf_counter()
            tokens, valid = model.encode(batch)
            t2 = time.perf_counter()
            fused = model.fusion({m: tokens[m].float() for m in model.modalities}, valid)
            embedding = torch.nn.functional.normalize(model.norm(fused.vector), dim=-1)
            t3 = time.perf_counter()
            knn.search(reference.numpy(), embedding.numpy(), cfg.eval.k, cfg.eval.metric)
            t4 = time.perf_counter()
            for stage, seconds in zip(("decode", "encode", "fuse", "knn"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                totals[stage] += seconds
    return {stage: round(1000 * seconds / len(folders), 2) for stage, seconds in totals.items()}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--welds", type=int, default=12)
    parser.add_argument("--size", choices=("small", "real"), default="real")
    parser.add_argument("--seconds", type=float, default=36.0, help="weld length (the real median is ~36 s)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "train", per_class=6, seconds=2.0, size="small", split="supervised", seed=0)
        config = load_config("cpu", ["train.epochs=3", f"cache.dir={tmp / 'cache'}", "data.num_workers=0"])
        fit_run(tmp / "run", tmp / "train", config, say=lambda *a: None)
        synthesize(tmp / "new", per_class=1, seconds=args.seconds, size=args.size, split="official", seed=9)
        folders = sorted(p for p in (tmp / "new").glob("*/*") if p.is_dir())[: args.welds]
        loaded = load_model(tmp / "run" / "model")  # loading excluded from the timings
        reference = load_reference(tmp / "run" / "model")[0]
        with torch.inference_mode():
            ours = latency(folders, loaded, reference)
            with todays_readers():
                todays = latency(folders, loaded, reference)
            modalities = loaded.config.model.modalities
            dataset = WeldDataset([folder_sample(f, modalities) for f in folders], modalities, loaded.config.data,
                                  build_transforms(loaded.config), loaded.stats)  # fmt: skip
            start = time.perf_counter()
            for batch in DataLoader(dataset, batch_size=8, num_workers=cores):
                loaded.model(batch)
            batched = len(folders) / (time.perf_counter() - start)
    stages = ("decode", "encode", "fuse", "knn")
    total, total_todays = sum(ours[s] for s in stages), sum(todays[s] for s in stages)
    print(f"cpu preset, {len(folders)} {args.size}-size welds of ~{args.seconds:.0f} s, {cores} cores; per-weld latency (ms), load excluded:")
    print(f"  {'stage':<15} {'ours':>8} {'today':>8}")
    for stage in ours:
        print(f"  {stage:<15} {ours[stage]:8.2f} {todays[stage]:8.2f}")
    print(f"  {'total':<15} {total:8.2f} {total_todays:8.2f}  ({total_todays / total:.2f}x)")
    print(f"batched embedding (batch 8, {cores} loader workers): {batched:.2f} welds/s")
    results = {"per_weld_ms": ours, "total_ms": round(total, 2), "todays_per_weld_ms": todays, "todays_total_ms": round(total_todays, 2),
               "ratio": round(total_todays / total, 2), "batched_welds_per_s": round(batched, 2), "size": args.size, "cores": cores}  # fmt: skip
    print(json.dumps({"inference_latency": results}))
    return results


if __name__ == "__main__":
    main()
