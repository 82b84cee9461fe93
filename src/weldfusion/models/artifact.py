"""The inference artefact of a run, shaped like a transformers model folder:
`model.safetensors` + `config.json` (+ `reference.safetensors`, the embedded training welds).

Weights of pretrained, frozen encoders are not copied: config.json names their source and they are
loaded from it. Everything else (sensor encoder, fusion, head, randomly initialised or fine-tuned
encoders) is in model.safetensors. Loading never executes code from the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from weldfusion.config import Config, from_dict
from weldfusion.data.categories import CATEGORIES
from weldfusion.data.dataset import Standardisation
from weldfusion.data.transforms import ChannelStats
from weldfusion.errors import InputError
from weldfusion.io import write_atomic, write_json_atomic
from weldfusion.models.model import WeldFusionModel, build_encoder
from weldfusion.registry import MODALITIES

FORMAT = "weldfusion-model"


@dataclass
class LoadedModel:
    config: Config
    model: WeldFusionModel
    stats: Standardisation  # per-channel statistics of the standardised modalities (train split)
    meta: dict = field(default_factory=dict)


def _external(config: Config) -> set[str]:
    """Modalities whose frozen pretrained weights are loaded from their source, not stored."""
    return {m for m in config.model.modalities if MODALITIES.get(m).external_weights(config)}


def _modality_of(key: str) -> str | None:
    """'encoders.video.backbone...' -> 'video'; None for fusion/norm/head weights."""
    return key.split(".")[1] if key.startswith("encoders.") else None


def export_model(folder: Path, model: WeldFusionModel, config: Config, stats: Standardisation, meta: dict) -> None:
    """Write model.safetensors and config.json; `model` may lack encoders of cached modalities."""
    state = {k: v for k, v in model.state_dict().items() if _modality_of(k) not in _external(config)}
    for modality in set(config.model.modalities) - set(model.encoders) - _external(config):
        encoder = build_encoder(modality, config)  # randomly initialised from its seed: store it
        state.update({f"encoders.{modality}.{k}": v for k, v in encoder.state_dict().items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    write_atomic(folder / "model.safetensors", lambda tmp: save_file(tensors, str(tmp), metadata={"format": FORMAT}))
    write_json_atomic(folder / "config.json", {
        "format": FORMAT, "config": config.to_dict(), "labels": list(CATEGORIES),
        "standardisation": {m: v.to_dict() for m, v in stats.items()},
        "meta": meta,
    })  # fmt: skip


def read_model_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found (is this a weldfusion run folder or its model/ folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a weldfusion model config")
    return data


def load_model(folder: Path, cached: set[str] | frozenset[str] = frozenset()) -> LoadedModel:
    """Rebuild the model (encoders of `cached` modalities left out) and load its weights."""
    folder = Path(folder)
    data = read_model_config(folder)
    if not isinstance(data.get("config"), dict):
        raise InputError(f"{folder / 'config.json'}: holds no configuration")
    config = from_dict(data["config"])
    model = WeldFusionModel(config, cached=set(cached))
    weights = folder / "model.safetensors"
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise InputError(f"{weights}: not found") from None
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{weights}: damaged or not a safetensors file ({exc})") from None
    state = {k: v for k, v in state.items() if _modality_of(k) not in cached}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise InputError(f"{weights}: does not match its config.json ({str(exc).splitlines()[-1].strip()})") from None
    missing = [k for k in result.missing_keys if _modality_of(k) not in _external(config)]
    if missing or result.unexpected_keys:
        raise InputError(f"{weights}: does not match its config.json (missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
    try:
        saved = data.get("standardisation") or ({"sensor": data["sensor_stats"]} if data.get("sensor_stats") else {})  # older folders
        stats = {m: ChannelStats.from_dict(v) for m, v in saved.items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{folder / 'config.json'}: damaged standardisation statistics ({exc})") from None
    return LoadedModel(config, model.eval(), stats, data.get("meta", {}))


def save_reference(folder: Path, embeddings: torch.Tensor, labels: torch.Tensor, keys: list[str]) -> None:
    tensors = {"embeddings": embeddings.float().contiguous(), "labels": labels.long().contiguous()}
    write_atomic(folder / "reference.safetensors",
                 lambda tmp: save_file(tensors, str(tmp), metadata={"keys": json.dumps(keys)}))  # fmt: skip


def load_reference(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    path = Path(folder) / "reference.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor("embeddings"), f.get_tensor("labels"), json.loads(f.metadata()["keys"])
    except (OSError, SafetensorError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: missing or damaged reference embeddings ({exc})") from None
