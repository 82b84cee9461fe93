"""The pretrained backbones, loaded through transformers' one path: `from_pretrained(hub_id_or_folder)`.

Without `pretrained`, a backbone is built from its config class with the `arch` fields and a
seeded random init (the `cpu` preset and the tests do this with tiny configs of the same classes).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
)

from transformers.utils import logging as transformers_logging

from weldfusion.config import EncoderConfig
from weldfusion.errors import InputError

transformers_logging.disable_progress_bar()  # our own progress bars report loading and caching

Backbone = tuple[type[PreTrainedModel], type[PretrainedConfig]]  # a transformers model class and its config class


@functools.cache
def hub_reachable() -> bool:
    """One quick connection test, so that an offline machine never waits on transformers' retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def source_kwargs(pretrained: str) -> dict:
    """A local folder loads as is; a hub id loads from the local HF cache unless the hub answers."""
    return {} if Path(pretrained).is_dir() else {"local_files_only": not hub_reachable()}


def backbone_config(backbone: Backbone, spec: EncoderConfig, offline_ok: bool = False) -> PretrainedConfig:
    """The backbone's architecture: the checkpoint's config.json, or the config class with `arch`.

    With `offline_ok`, a hub id that cannot be reached falls back to the config class defaults,
    which describe the checkpoints of SPEC §3 (used by `weldfusion info`, which needs no weights).
    """
    model_class, config_class = backbone
    if spec.pretrained is None:
        return config_class(**spec.arch)
    try:
        return config_class.from_pretrained(spec.pretrained, **source_kwargs(spec.pretrained), **spec.arch)
    except OSError as exc:
        if offline_ok and not Path(spec.pretrained).exists():
            return config_class(**spec.arch)
        raise InputError(f"{model_class.__name__} {spec.pretrained!r}: cannot read its config ({_short(exc)})") from None


def load_backbone(backbone: Backbone, spec: EncoderConfig, weights: bool = True) -> PreTrainedModel:
    """Load (or randomly initialise) a backbone.

    `weights=False` builds the architecture only (e.g. on the meta device, for parameter counts).
    """
    model_class, _ = backbone
    if not weights:
        model = model_class(backbone_config(backbone, spec, offline_ok=True))
    elif spec.pretrained is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.init_seed)
            model = model_class(backbone_config(backbone, spec))
    else:
        try:
            model = model_class.from_pretrained(spec.pretrained, **source_kwargs(spec.pretrained), **spec.arch)
        except (OSError, ValueError) as exc:
            raise InputError(f"{model_class.__name__} {spec.pretrained!r}: cannot load ({_short(exc)}); give a local "
                             "folder saved with save_pretrained or a reachable hub id") from None  # fmt: skip
    return model.eval()


def identity(backbone: Backbone, spec: EncoderConfig) -> dict:
    """What determines the backbone's weights: source, architecture, and (local) file fingerprints."""
    out: dict = {"class": backbone[0].__name__, "arch": spec.arch}
    if spec.pretrained is None:
        out.update(init_seed=spec.init_seed, torch=torch.__version__)
    else:
        out["pretrained"] = spec.pretrained
        folder = Path(spec.pretrained)
        if folder.is_dir():
            out["files"] = {p.name: file_fingerprint(p) for p in sorted(folder.iterdir())
                            if p.suffix in (".json", ".safetensors", ".bin")}  # fmt: skip
    return out


def file_fingerprint(path: Path, block: int = 1 << 16) -> str:
    """Size + hash of the first and last 64 KiB: cheap on 40 GB of media, changes when a file does."""
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(block))
        if size > block:
            f.seek(max(size - block, block))
            digest.update(f.read(block))
    return digest.hexdigest()[:16]


def digest(data: object) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__
