"""Feature cache for frozen encoders: each weld's encoder output is computed once and stored.

Layout: `<cache dir>/<modality>-<encoder digest>/<sample digest>.safetensors`, holding `tokens`
(N, D) in the configured dtype and `valid` (N,). The encoder digest covers the backbone (source,
architecture, local file fingerprints or init seed), the encoder options (pooling, aggregation)
and the preprocessing; the sample digest covers SUBDIRS and the fingerprints of that modality's
files. Changing any of them invalidates exactly the affected entries. An unusable modality is
stored too, fully masked, with its reason, so it is reported rather than retried every epoch.
Entries are written atomically: an interrupted fill resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from weldfusion.config import Config
from weldfusion.data.dataset import WeldDataset
from weldfusion.data.samples import Sample
from weldfusion.data.transforms import Transforms
from weldfusion.errors import InputError
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.models.backbones import digest, file_fingerprint, identity
from weldfusion.models.model import build_encoder

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def cache_root(config: Config) -> Path:
    if config.cache.dir:
        return Path(config.cache.dir)
    return Path(os.environ.get("WELDFUSION_CACHE") or Path.home() / ".cache" / "weldfusion")


def encoder_identity(modality: str, config: Config, transforms: Transforms) -> dict:
    spec = getattr(config.model, modality)
    preprocessing = {
        "video": lambda: {"frames": config.data.video.frames, "resize": asdict(transforms.video)},
        "images": lambda: {"views": config.data.images.views, "resize": asdict(transforms.images.resize),
                           "tag_box": config.data.images.tag_box, "aggregate": spec.aggregate},  # fmt: skip
        "audio": lambda: {"clips": config.data.audio.clips, "extractor": transforms.audio.extractor.to_dict()},
    }[modality]()
    return {"backbone": identity(modality, spec), "pool_tokens": spec.pool_tokens, "preprocessing": preprocessing,
            "dtype": config.cache.dtype, "autocast": config.cache.autocast}  # fmt: skip


class FeatureCache:
    """One modality's cached encoder outputs for one encoder identity."""

    def __init__(self, root: Path, modality: str, identity_: dict, dtype: str = "float16"):
        self.modality = modality
        self.folder = Path(root) / f"{modality}-{digest(identity_)}"
        self.dtype = DTYPES[dtype]
        self.identity = identity_
        self._keys: dict[tuple[str, str], str] = {}  # fingerprints are read once per process, not every epoch

    def sample_key(self, sample: Sample) -> str:
        memo = (str(sample.folder), sample.key)
        if memo not in self._keys:
            files = [file_fingerprint(p) for p in sample.files.get(self.modality, ())]
            self._keys[memo] = digest({"key": sample.key, "files": files, "missing": sample.missing.get(self.modality)})
        return self._keys[memo]

    def refresh(self) -> None:
        """Forget the remembered fingerprints (a fill takes them anew, so changed files are noticed)."""
        self._keys.clear()

    def path(self, sample: Sample) -> Path:
        return self.folder / f"{self.sample_key(sample)}.safetensors"

    def has(self, sample: Sample) -> bool:
        return self.path(sample).is_file()

    def store(self, sample: Sample, tokens: torch.Tensor, valid: torch.Tensor, problem: str = "") -> None:
        if not (self.folder / "identity.json").is_file():
            write_json_atomic(self.folder / "identity.json", self.identity)
        tensors = {"tokens": tokens.detach().to("cpu", self.dtype).contiguous(), "valid": valid.detach().cpu().to(torch.uint8)}
        metadata = {"sample": sample.key, "problem": problem}
        write_atomic(self.path(sample), lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    def load(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor, str]:
        """(tokens, valid, problem) of one weld; a damaged entry is an error naming its file."""
        path = self.path(sample)
        try:
            with safe_open(str(path), framework="pt") as f:
                return f.get_tensor("tokens"), f.get_tensor("valid").bool(), (f.metadata() or {}).get("problem", "")
        except (OSError, SafetensorError, KeyError) as exc:
            raise InputError(f"{path}: damaged cache entry for {sample.key} ({exc}); delete it to recompute") from None


def frozen_modalities(config: Config) -> list[str]:
    """Modalities whose encoder is entirely frozen: their outputs can be cached."""
    return [m for m in config.model.modalities if m != "sensor" and getattr(config.model, m).freeze
            and not getattr(config.model, m).unfreeze_last]  # fmt: skip


def open_caches(config: Config, transforms: Transforms, modalities: list[str]) -> dict[str, FeatureCache]:
    root = cache_root(config)
    return {m: FeatureCache(root, m, encoder_identity(m, config, transforms), config.cache.dtype) for m in modalities}


def fill_cache(samples: list[Sample], config: Config, transforms: Transforms, caches: dict[str, FeatureCache],
               device: torch.device | str = "cpu", progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:  # fmt: skip
    """Compute and store every missing entry; returns how many were computed per modality.

    Encoders are loaded only for modalities with missing entries; batches run under
    `torch.inference_mode()` and, when enabled, bf16 autocast.
    """
    computed = {}
    device = torch.device(device)
    for modality, cache in caches.items():
        cache.refresh()
        todo = [s for s in samples if not cache.has(s)]
        computed[modality] = len(todo)
        if not todo:
            continue
        encoder = build_encoder(modality, config).to(device).eval()
        dataset = WeldDataset(todo, [modality], config, transforms)
        loader = DataLoader(dataset, batch_size=config.cache.batch_size, num_workers=config.data.num_workers,
                            persistent_workers=False)  # fmt: skip
        done = 0
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.cache.autocast)
        with torch.inference_mode(), autocast:
            for batch in loader:
                tokens, valid = encoder(batch["inputs"][modality].to(device), batch["mask"][modality].to(device))
                for row, index in enumerate(batch["index"].tolist()):
                    cache.store(todo[index], tokens[row], valid[row], batch["problems"][modality][row])
                done += len(batch["index"])
                if progress:
                    progress(modality, done, len(todo))
        del encoder
    return computed


class CachedDataset(Dataset):
    """Items of a live dataset (for the modalities computed each epoch) plus cached tokens."""

    def __init__(self, live: WeldDataset, caches: dict[str, FeatureCache]):
        self.live = live
        self.caches = caches

    def __len__(self) -> int:
        return len(self.live)

    def __getitem__(self, index: int) -> dict:
        item = self.live[index]
        sample = self.live.samples[index]
        item["tokens"], item["token_mask"] = {}, {}
        for modality, cache in self.caches.items():
            item["tokens"][modality], item["token_mask"][modality], item["problems"][modality] = cache.load(sample)
        return item

