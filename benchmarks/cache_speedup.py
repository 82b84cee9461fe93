"""One training epoch with and without the feature cache: same welds, same head, same optimiser.

Uncached: every step decodes the welds and runs the frozen encoders (what the prototype did).
Cached: the frozen encoders' outputs are read from the cache filled once beforehand (fill time
printed separately). Architectures are the `full` preset's real ones (V-JEPA 2 ViT-L, DINOv2-B,
AST) with random weights, on `--size real` synthetic welds; then the same for the `cpu` preset.

    python benchmarks/cache_speedup.py [--welds 4] [--seconds 20] [--batch 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from weldfusion.config import Config, load_config
from weldfusion.data.dataset import WeldDataset
from weldfusion.data.manifest import read_manifest
from weldfusion.data.samples import Sample, build_samples
from weldfusion.features import FeatureSource, build_transforms
from weldfusion.models.cache import CachedDataset, fill_cache, frozen_modalities, open_stores
from weldfusion.models.model import WeldFusionModel
from weldfusion.synth.generate import synthesize
from weldfusion.training.losses import SupConLoss

RANDOM_FULL = ["model.video.pretrained=null", "model.images.pretrained=null", "model.audio.pretrained=null"]


def epoch_seconds(model: WeldFusionModel, dataset, batch: int) -> float:
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = SupConLoss(0.07)
    model.train()
    start = time.perf_counter()
    for batch_ in DataLoader(dataset, batch_size=batch, num_workers=0):
        labels = torch.arange(len(batch_["label"])) // 2  # pairs: timing does not depend on the labels
        loss, _ = loss_fn(model(batch_).embedding, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return time.perf_counter() - start


def measure(name: str, config: Config, samples: list[Sample], batch: int) -> dict:
    transforms = build_transforms(config)
    stats = FeatureSource(config).fit_standardisation(samples)
    cached = frozen_modalities(config)
    torch.manual_seed(0)
    full = WeldFusionModel(config)  # every encoder live
    live = WeldDataset(samples, config.model.modalities, config.data, transforms, stats)
    uncached = epoch_seconds(full, live, batch)
    caches = open_stores(config, transforms)
    start = time.perf_counter()
    fill_cache(samples, config, transforms, caches)
    fill = time.perf_counter() - start
    head = WeldFusionModel(config, cached=set(cached))
    head.load_state_dict(full.state_dict(), strict=False)
    dataset = CachedDataset(WeldDataset(samples, [m for m in config.model.modalities if m not in cached], config.data,
                                        transforms, stats), caches)  # fmt: skip
    with_cache = epoch_seconds(head, dataset, batch)
    ratio = uncached / with_cache
    print(f"{name:<5} epoch of {len(samples)} welds: uncached {uncached:8.2f} s | cached {with_cache:6.3f} s | "
          f"speed-up {ratio:.0f}x   (one-off cache fill {fill:.1f} s)")  # fmt: skip
    return {"uncached_s": round(uncached, 3), "cached_s": round(with_cache, 4), "fill_s": round(fill, 2), "ratio": round(ratio, 1)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--welds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        synthesize(root, per_class=1, seconds=args.seconds, size="real", split="official", seed=0)
        samples, _ = build_samples(root, read_manifest(root / "manifest.csv"))
        samples = samples[: args.welds]
        for name, preset, extra in (("full", "full", RANDOM_FULL), ("cpu", "cpu", [])):
            config = load_config(preset, [*extra, f"cache.dir={Path(tmp) / name}", "data.num_workers=0"])
            results[name] = measure(name, config, samples, args.batch)
    print(json.dumps({"cache_speedup": results}))
    return results


if __name__ == "__main__":
    main()
