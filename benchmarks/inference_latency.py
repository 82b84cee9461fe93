"""Per-weld latency of `predict` for the `cpu` preset (model loading excluded), split into decode /
encode / fuse / k-NN, and the samples/s of batched embedding; measured in one run.

    python benchmarks/inference_latency.py [--welds 12] [--size small|real] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from weldfusion.config import load_config
from weldfusion.data.dataset import WeldDataset, decode_sample
from weldfusion.metrics import knn
from weldfusion.evaluation.predict import folder_sample
from weldfusion.models.artifact import load_model, load_reference
from weldfusion.features import build_transforms
from weldfusion.synth.generate import synthesize
from weldfusion.engine import fit_run


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--welds", type=int, default=12)
    parser.add_argument("--size", choices=("small", "real"), default="real")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "train", per_class=6, seconds=2.0, size="small", split="supervised", seed=0)
        config = load_config("cpu", ["train.epochs=3", f"cache.dir={tmp / 'cache'}", "data.num_workers=0"])
        fit_run(tmp / "run", tmp / "train", config, say=lambda *a: None)
        synthesize(tmp / "new", per_class=1, seconds=args.seconds, size=args.size, split="official", seed=9)
        folders = sorted(p for p in (tmp / "new").glob("*/*") if p.is_dir())[: args.welds]
        loaded = load_model(tmp / "run" / "model")  # loading excluded from the timings
        model, cfg = loaded.model, loaded.config
        transforms = build_transforms(cfg)
        reference, _, _ = load_reference(tmp / "run" / "model")
        totals = {"decode": 0.0, "encode": 0.0, "fuse": 0.0, "knn": 0.0}
        with torch.inference_mode():
            for folder in folders:
                t0 = time.perf_counter()
                sample = folder_sample(folder, cfg.model.modalities)
                decoded = decode_sample(sample, cfg.model.modalities, cfg.data, transforms, loaded.stats)
                batch = {"inputs": {m: torch.from_numpy(a)[None] for m, a in decoded.arrays.items()},
                         "mask": {m: torch.from_numpy(k)[None] for m, k in decoded.masks.items()}}  # fmt: skip
                t1 = time.perf_counter()
                tokens, valid = model.encode(batch)
                t2 = time.perf_counter()
                fused = model.fusion({m: tokens[m].float() for m in model.modalities}, valid)
                embedding = torch.nn.functional.normalize(model.norm(fused.vector), dim=-1)
                t3 = time.perf_counter()
                knn.search(reference.numpy(), embedding.numpy(), cfg.eval.k, cfg.eval.metric)
                t4 = time.perf_counter()
                for key, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    totals[key] += seconds
            per_weld = {k: round(1000 * v / len(folders), 2) for k, v in totals.items()}
            dataset = WeldDataset([folder_sample(f, cfg.model.modalities) for f in folders], cfg.model.modalities, cfg.data, transforms, loaded.stats)
            start = time.perf_counter()
            for batch in DataLoader(dataset, batch_size=8, num_workers=2):
                model(batch)
            batched = len(folders) / (time.perf_counter() - start)
    total = sum(per_weld.values())
    print(f"cpu preset, {len(folders)} {args.size}-size welds of ~{args.seconds:.0f} s; per-weld latency (ms), load excluded:")
    for key, ms in per_weld.items():
        print(f"  {key:<7} {ms:8.2f}  ({ms / total:.0%})")
    print(f"  {'total':<7} {total:8.2f}")
    print(f"batched embedding (batch 8, 2 loader workers): {batched:.2f} welds/s")
    results = {"per_weld_ms": per_weld, "total_ms": round(total, 2), "batched_welds_per_s": round(batched, 2), "size": args.size}
    print(json.dumps({"inference_latency": results}))
    return results


if __name__ == "__main__":
    main()
