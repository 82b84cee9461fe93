"""Configuration as data: typed dataclasses, YAML presets shipped in the package, `--set` overrides.

A preset is a YAML file holding any subset of the fields below; the rest keep their defaults.
`load_config("cpu", ["train.epochs=3"])` gives the resolved, validated `Config`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from weldfusion import MODALITIES
from weldfusion.errors import InputError
from weldfusion.io import write_text_atomic

SENSOR_CHANNELS: tuple[str, ...] = (
    "Pressure",
    "CO2 Weld Flow",
    "Feed",
    "Primary Weld Current",
    "Wire Consumed",
    "Secondary Weld Voltage",
)


@dataclass
class VideoData:
    frames: int = 32  # sampled evenly over the whole clip
    size: int | None = 224  # crop size; None = the checkpoint processor's crop size


@dataclass
class ImagesData:
    views: int = 5  # photos per weld; fewer are padded and masked
    size: int | None = None  # None = the checkpoint processor's crop size
    tag_box: list[float] | None = None  # [x0, y0, x1, y1] as fractions: paper-tag region to blank out


@dataclass
class AudioData:
    sample_rate: int = 16000
    clips: int = 3  # clips spread evenly over the recording; frames and mel bins per clip come from the AST config


@dataclass
class SensorData:
    steps: int = 256
    channels: list[str] = field(default_factory=lambda: list(SENSOR_CHANNELS))
    current_channel: str = "Primary Weld Current"
    arc_threshold: float = 5.0  # amperes: arc on when the current exceeds it
    crop_to_arc: bool = True  # drop the arc-off margins before resampling


@dataclass
class DataConfig:
    video: VideoData = field(default_factory=VideoData)
    images: ImagesData = field(default_factory=ImagesData)
    audio: AudioData = field(default_factory=AudioData)
    sensor: SensorData = field(default_factory=SensorData)
    num_workers: int = 2
    max_video_frames: int = 20000  # decode bound: a clip longer than this is refused
    max_file_mb: int = 2048  # size bound for any single file


@dataclass
class EncoderConfig:
    """A pretrained transformers backbone (V-JEPA 2, DINOv2 or AST)."""

    pretrained: str | None = None  # hub id or local folder; None = random init from `arch`
    arch: dict[str, Any] = field(default_factory=dict)  # config fields of the backbone (random init, or info)
    freeze: bool = True
    unfreeze_last: int = 0  # with freeze: also train the last k transformer blocks
    init_seed: int = 0  # random init only
    pool_tokens: int | None = None  # average-pool each clip/view's tokens to this many (keeps the cache small)
    aggregate: str = "mean"  # images: how views combine: mean | max | concat


@dataclass
class SensorEncoderConfig:
    """Transformer encoder over the sensor log, trained from scratch."""

    d_model: int = 256
    layers: int = 4
    heads: int = 8
    ff: int = 1024
    dropout: float = 0.1
    positions: str = "learned"  # learned | sinusoidal


@dataclass
class FusionConfig:
    kind: str = "cross_attention"  # cross_attention | simple
    dim: int = 512
    tokens: int = 4
    heads: int = 8
    dropout: float = 0.1
    hidden: int = 1024


@dataclass
class ModelConfig:
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    video: EncoderConfig = field(default_factory=lambda: EncoderConfig(pretrained="facebook/vjepa2-vitl-fpc64-256", pool_tokens=256))
    images: EncoderConfig = field(default_factory=lambda: EncoderConfig(pretrained="facebook/dinov2-base", pool_tokens=64))
    audio: EncoderConfig = field(default_factory=lambda: EncoderConfig(pretrained="MIT/ast-finetuned-audioset-14-14-0.443", pool_tokens=128))
    sensor: SensorEncoderConfig = field(default_factory=SensorEncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    embedding_dim: int = 512
    classifier: bool = False  # a linear head for the combined SupCon + cross-entropy loss


@dataclass
class CacheConfig:
    dir: str | None = None  # None: $WELDFUSION_CACHE, else ~/.cache/weldfusion
    dtype: str = "float16"  # float16 | bfloat16 | float32
    autocast: bool = True  # bf16 autocast while filling (CPU and GPU)
    batch_size: int = 4


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    samples_per_class: int = 4  # K of the P x K class-balanced batches
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd
    scheduler: str = "cosine"  # cosine (linear warmup, then cosine) | step | plateau | none
    warmup_epochs: int = 10
    warmup_start_lr: float = 1e-7
    min_lr: float = 1e-6
    step_epochs: int = 30  # step: decay every this many epochs
    gamma: float = 0.1  # step and plateau decay factor
    plateau_patience: int = 5
    grad_clip: float = 1.0
    precision: str = "auto"  # auto: bf16-mixed on GPUs that support it, 16-mixed on others, 32 on CPU
    patience: int = 10  # early stopping on validation loss; 0 disables
    temperature: float = 0.07
    modality_dropout: float = 0.0  # training: hide each modality of a weld with this probability (one always stays)
    token_dropout: float = 0.0  # training: hide each cached token with this probability
    supcon_weight: float = 1.0
    ce_weight: float = 0.0  # > 0 (with model.classifier) adds cross-entropy: the combined loss
    flat_loss_steps: int = 50  # warn when the training loss has not moved over this many steps
    flat_loss_tolerance: float = 1e-3  # relative range under which the loss counts as flat
    debug_batches: int = 3  # batches reported by --debug


@dataclass
class EvalConfig:
    k: int = 5
    metric: str = "cosine"  # cosine | euclidean | manhattan
    temperature: float | None = None  # None: majority vote; else votes weighted by softmax(similarity / T)
    anomaly_k: int = 5  # neighbours among the Good TRAIN welds for the anomaly score
    anomaly_metric: str = "euclidean"  # distances of standardised features: magnitude matters (cosine ignores it)
    weight_step: float = 0.1  # grid step of the per-modality fusion weights chosen on VAL
    embedding_map: str = "tsne"  # tsne | pca (t-SNE falls back to PCA above 3000 welds)
    batch_size: int = 32


@dataclass
class Config:
    seed: int = 0
    protocol: str = "classify"  # classify (SupCon + k-NN) | anomaly (distance to Good welds)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> Config:
        d, m = self.data, self.model
        check_modalities(m.modalities, "model.modalities")
        if m.images.aggregate not in ("mean", "max", "concat"):
            raise InputError(f"config: model.images.aggregate={m.images.aggregate!r}: use mean, max or concat")
        if m.fusion.kind not in ("cross_attention", "simple"):
            raise InputError(f"config: model.fusion.kind={m.fusion.kind!r}: use cross_attention or simple")
        if m.fusion.dim % m.fusion.heads or m.sensor.d_model % m.sensor.heads:
            raise InputError("config: model.fusion.dim and model.sensor.d_model must be divisible by their heads")
        if m.sensor.positions not in ("learned", "sinusoidal"):
            raise InputError(f"config: model.sensor.positions={m.sensor.positions!r}: use learned or sinusoidal")
        t = self.train
        if self.protocol not in ("classify", "anomaly"):
            raise InputError(f"config: protocol={self.protocol!r}: use classify or anomaly")
        if t.optimizer not in ("adamw", "adam", "sgd") or t.scheduler not in ("cosine", "step", "plateau", "none"):
            raise InputError(f"config: train.optimizer={t.optimizer!r} / train.scheduler={t.scheduler!r}: see the presets for the choices")
        if t.precision not in ("auto", "32", "bf16-mixed", "16-mixed"):
            raise InputError(f"config: train.precision={t.precision!r}: use auto, 32, bf16-mixed or 16-mixed")
        if t.ce_weight > 0 and not m.classifier:
            raise InputError("config: train.ce_weight > 0 needs model.classifier: true (the cross-entropy head)")
        if t.epochs < 1 or t.batch_size < 4 or t.samples_per_class < 2 or t.temperature <= 0:
            raise InputError("config: train.epochs >= 1, train.batch_size >= 4, train.samples_per_class >= 2, train.temperature > 0")
        e = self.eval
        if {e.metric, e.anomaly_metric} - {"cosine", "euclidean", "manhattan"} or e.embedding_map not in ("tsne", "pca"):
            raise InputError(f"config: eval.metric={e.metric!r} / eval.embedding_map={e.embedding_map!r}: see the presets")
        if e.k < 1 or e.anomaly_k < 1 or not 0 < e.weight_step <= 1 or (e.temperature is not None and e.temperature <= 0):
            raise InputError("config: eval.k and eval.anomaly_k >= 1, 0 < eval.weight_step <= 1, eval.temperature > 0")
        if self.cache.dtype not in ("float16", "bfloat16", "float32"):
            raise InputError(f"config: cache.dtype={self.cache.dtype!r}: use float16, bfloat16 or float32")
        if d.video.frames < 1 or d.images.views < 1 or d.audio.clips < 1 or d.sensor.steps < 2:
            raise InputError("config: data.video.frames, data.images.views, data.audio.clips must be >= 1 and data.sensor.steps >= 2")
        if d.images.tag_box is not None:
            x0, y0, x1, y1 = _box(d.images.tag_box)
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise InputError(f"config: data.images.tag_box {d.images.tag_box} must be fractions x0<x1, y0<y1 in [0, 1]")
        if len(d.sensor.channels) < 1 or d.sensor.current_channel not in d.sensor.channels:
            raise InputError("config: data.sensor.current_channel must be one of data.sensor.channels")
        return self


def _box(values: list[float]) -> tuple[float, float, float, float]:
    if len(values) != 4:
        raise InputError(f"config: a box needs 4 numbers, got {values}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("weldfusion.presets").iterdir() if p.name.endswith(".yaml"))


def load_config(preset: str = "cpu", overrides: list[str] | None = None) -> Config:
    """Resolve a preset name (or a YAML file path) plus `key=value` overrides into a Config."""
    data = _read_preset(preset)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected key=value, e.g. train.epochs=5")
        _assign(data, key.strip().split("."), yaml.safe_load(raw))
    return from_dict(data).validate()


def from_dict(data: dict[str, Any]) -> Config:
    return _build(Config, data, "")


def save_config(config: Config, path: Path) -> None:
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def _read_preset(preset: str) -> dict[str, Any]:
    path = Path(preset)
    if preset.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise InputError(f"{preset}: preset file not found")
        text = path.read_text(encoding="utf-8")
    elif preset in preset_names():
        text = resources.files("weldfusion.presets").joinpath(f"{preset}.yaml").read_text(encoding="utf-8")
    else:
        raise InputError(f"unknown preset {preset!r}: use one of {', '.join(preset_names())} or a .yaml file")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{preset}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{preset}: a preset must be a mapping of config sections")
    return data


def _assign(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise InputError(f"--set {'.'.join(keys)}: {key} is not a section")
    data[keys[-1]] = value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"config: {where or 'top level'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"config: unknown key {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except InputError:
                continue
        raise InputError(f"config: {where}={value!r} has the wrong type (expected {hint})")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config: {where} must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"config: {where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise InputError(f"config: {where}={value!r} must be {hint.__name__}")
    return value


def check_modalities(names: list[str], where: str) -> list[str]:
    bad = [m for m in names if m not in MODALITIES]
    if bad or not names or len(set(names)) != len(names):
        raise InputError(f"config: {where} must be distinct names from {', '.join(MODALITIES)}, got {names}")
    return names
