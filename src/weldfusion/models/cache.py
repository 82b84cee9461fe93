"""Frozen encoders' outputs, computed once per weld and kept: on disk (the feature cache) or in memory.

Layout on disk: `<cache dir>/<modality>-<encoder digest>/<sample digest>.safetensors`, holding
`tokens` (N, D) in the configured dtype, `valid` (N,), and where the tokens lie: `grid` (each item's
time x height x width) and `span` (items, 2: seconds of the recording each item covers, NaN for
photos); `weldfusion.models.layout` maps them back to moments and places. The encoder digest covers everything the
modality's spec names in `cache_identity` (backbone source and weights, encoder options,
preprocessing, dtype); the sample digest covers SUBDIRS and the fingerprints of that modality's
files. Changing any of them invalidates exactly the affected entries. An unusable modality is stored
too, fully masked, with its reason, so it is reported rather than retried every epoch. Entries are
written atomically under a per-entry lock (`.locks/<sample digest>.lock`): an interrupted fill resumes
where it stopped, and two processes writing one entry never collide (the second finds it written).

A fill runs the encoders on the device it is given (bf16/fp16 autocast there when `cache.autocast`),
and can be shared: with `shard=(rank, world)` a process computes the missing entries of every
`world`-th weld from `rank` on, so DDP ranks split the work without computing an entry twice.

`MemoryStore` keeps the same entries in memory, cast to the same dtype, for welds outside a dataset
(`predict`): cached or live, the model sees the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple
from pathlib import Path

import torch
from filelock import FileLock
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from weldfusion.config import Config
from weldfusion.data.dataset import Transforms, WeldDataset
from weldfusion.data.samples import Sample
from weldfusion.errors import InputError
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.models.backbones import digest, file_fingerprint
from weldfusion.models.encoders import Grid
from weldfusion.models.devices import autocast, loader_workers, pin_memory
from weldfusion.models.model import build_encoder
from weldfusion.registry import MODALITIES

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class Entry(NamedTuple):
    tokens: torch.Tensor  # (N, D), items one after another, each in grid order
    valid: torch.Tensor  # (N,) bool
    problem: str  # why the modality is masked ("" when usable)
    grid: Grid  # each item's token grid: time x height x width
    span: torch.Tensor  # (items, 2) float32 seconds each item covers


def cache_root(config: Config) -> Path:
    if config.cache.dir:
        return Path(config.cache.dir)
    return Path(os.environ.get("WELDFUSION_CACHE") or Path.home() / ".cache" / "weldfusion")


def frozen_modalities(config: Config) -> list[str]:
    """Modalities whose encoder is entirely frozen: their outputs are computed once and kept."""
    return [m for m in config.model.modalities if MODALITIES.get(m).frozen(config)]


class MemoryStore:
    """Entries of one modality in memory, in the cache's dtype."""

    def __init__(self, modality: str, dtype: str = "float16"):
        self.modality = modality
        self.dtype = DTYPES[dtype]
        self._entries: dict[str, Entry] = {}

    def has(self, sample: Sample) -> bool:
        return sample.key in self._entries

    def store(self, sample: Sample, entry: Entry) -> None:
        self._entries[sample.key] = Entry(entry.tokens.detach().to("cpu", self.dtype).clone(), entry.valid.detach().cpu().bool().clone(),
                                          entry.problem, tuple(entry.grid), entry.span.detach().cpu().float().clone())  # fmt: skip

    def load(self, sample: Sample) -> Entry:
        return self._entries[sample.key]

    def refresh(self) -> None:
        pass


class FeatureCache(MemoryStore):
    """One modality's cached encoder outputs on disk for one encoder identity."""

    def __init__(self, root: Path, modality: str, identity_: dict, dtype: str = "float16"):
        super().__init__(modality, dtype)
        self.folder = Path(root) / f"{modality}-{digest(identity_)}"
        self.identity = identity_
        self._keys: dict[tuple[str, str], str] = {}  # fingerprints are read once per fill, not every epoch

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

    def store(self, sample: Sample, entry: Entry) -> None:
        if not (self.folder / "identity.json").is_file():
            write_json_atomic(self.folder / "identity.json", self.identity)
        tensors = {"tokens": entry.tokens.detach().to("cpu", self.dtype).contiguous(), "valid": entry.valid.detach().cpu().to(torch.uint8),
                   "grid": torch.tensor(entry.grid, dtype=torch.int64), "span": entry.span.detach().cpu().float().contiguous()}  # fmt: skip
        metadata = {"sample": sample.key, "problem": entry.problem}
        path = self.path(sample)
        (self.folder / ".locks").mkdir(exist_ok=True)
        with FileLock(self.folder / ".locks" / f"{path.stem}.lock"):
            if not path.is_file():  # else another process stored it while this one computed
                write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    def load(self, sample: Sample) -> Entry:
        """(tokens, valid, problem) of one weld; a damaged entry is an error naming its file."""
        path = self.path(sample)
        try:
            with safe_open(str(path), framework="pt") as f:
                return Entry(f.get_tensor("tokens"), f.get_tensor("valid").bool(), (f.metadata() or {}).get("problem", ""),
                             tuple(f.get_tensor("grid").tolist()), f.get_tensor("span"))  # fmt: skip
        except FileNotFoundError:
            raise InputError(f"{path}: no cache entry for {sample.key} (under multi-node DDP, cache.dir must be a folder "
                             "every node sees)") from None  # fmt: skip
        except (OSError, SafetensorError, KeyError) as exc:
            raise InputError(f"{path}: damaged cache entry for {sample.key} ({exc}); delete it to recompute") from None


def open_stores(config: Config, transforms: Transforms, persistent: bool = True,
                modalities: list[str] | None = None) -> dict[str, MemoryStore]:  # fmt: skip
    """A store per frozen modality (or per one of `modalities`): the on-disk cache, or memory (welds outside a dataset)."""
    chosen = modalities or frozen_modalities(config)
    if not persistent:
        return {m: MemoryStore(m, config.cache.dtype) for m in chosen}
    root = cache_root(config)
    return {m: FeatureCache(root, m, MODALITIES.get(m).cache_identity(config, transforms[m]), config.cache.dtype) for m in chosen}


def fill_cache(samples: list[Sample], config: Config, transforms: Transforms, stores: dict[str, MemoryStore],
               device: torch.device | str = "cpu", progress: Callable[[str, int, int], None] | None = None,
               workers: int | None = None, shard: tuple[int, int] = (0, 1)) -> dict[str, int]:  # fmt: skip
    """Compute and store the missing entries of this process's `shard` (rank, world) of `samples`;
    returns how many were computed per modality. Encoders are loaded only for modalities with
    missing entries."""
    rank, world = shard
    mine = samples[rank::world]
    computed = {}
    for modality, store in stores.items():
        store.refresh()
        todo = [s for s in mine if not store.has(s)]
        computed[modality] = len(todo)
        if todo:
            encode(todo, modality, store, config, transforms, torch.device(device), progress,
                   config.data.num_workers if workers is None else workers)  # fmt: skip
    return computed


def encode(todo: list[Sample], modality: str, store: MemoryStore, config: Config, transforms: Transforms, device: torch.device,
           progress: Callable[[str, int, int], None] | None, workers: int) -> None:  # fmt: skip
    """Run `modality`'s frozen encoder over `todo` in batches on `device` and store every entry."""
    encoder = build_encoder(modality, config).to(device).eval()
    loader = DataLoader(WeldDataset(todo, [modality], config.data, transforms), batch_size=config.cache.batch_size,
                        num_workers=min(loader_workers(workers, device), len(todo)), pin_memory=pin_memory(device))  # fmt: skip
    done = 0
    with torch.inference_mode(), autocast(device, config.cache.autocast):
        for batch in loader:
            tokens, valid = encoder(batch["inputs"][modality].to(device, non_blocking=True),
                                    batch["mask"][modality].to(device, non_blocking=True))  # fmt: skip
            tokens, valid = tokens.to("cpu", store.dtype), valid.cpu()  # one transfer per batch
            for row, index in enumerate(batch["index"].tolist()):
                entry = Entry(tokens[row], valid[row], batch["problems"][modality][row], encoder.grid, batch["span"][modality][row])
                store.store(todo[index], entry)
            done += len(batch["index"])
            if progress:
                progress(modality, done, len(todo))


class CachedDataset(Dataset):
    """Items of a live dataset (for the modalities computed each time) plus stored tokens."""

    def __init__(self, live: WeldDataset, stores: dict[str, MemoryStore]):
        self.live = live
        self.stores = stores

    def __len__(self) -> int:
        return len(self.live)

    def __getitem__(self, index: int) -> dict:
        item = self.live[index]
        sample = self.live.samples[index]
        item["tokens"], item["token_mask"] = {}, {}
        for modality, store in self.stores.items():
            entry = store.load(sample)
            item["tokens"][modality], item["token_mask"][modality], item["problems"][modality] = entry.tokens, entry.valid, entry.problem
        return item
