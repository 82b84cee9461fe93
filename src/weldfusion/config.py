"""Configuration as data: pydantic models, YAML presets shipped in the package, `--set` overrides.

A preset is a YAML file holding any subset of the fields below; the rest keep their defaults.
`load_config("cpu", ["train.epochs=3"])` gives the resolved, validated `Config`. Every set of allowed
values is a `Literal` defined once here (validation, CLI choices and docs read it); numbers are
checked for range. Each modality has a section `data.<name>` and `model.<name>` whose model its
spec declares (`weldfusion.modalities`), so a new modality brings its own options.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from weldfusion.errors import InputError
from weldfusion.io import write_text_atomic
from weldfusion.registry import MODALITIES, PROTOCOLS

SENSOR_CHANNELS: tuple[str, ...] = (
    "Pressure",
    "CO2 Weld Flow",
    "Feed",
    "Primary Weld Current",
    "Wire Consumed",
    "Secondary Weld Voltage",
)

Metric = Literal["cosine", "euclidean", "manhattan"]
FusionKind = Literal["cross_attention", "simple"]
Positions = Literal["learned", "sinusoidal"]
Optimizer = Literal["adamw", "adam", "sgd"]
Scheduler = Literal["cosine", "step", "plateau", "none"]
Precision = Literal["auto", "32", "bf16-mixed", "16-mixed"]
CacheDtype = Literal["float16", "bfloat16", "float32"]
EmbeddingMap = Literal["tsne", "pca"]
Accelerator = Literal["auto", "cpu", "gpu"]
AnomalyScorer = Literal["tokens", "pooled"]

Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


def choices(literal: Any) -> tuple[str, ...]:
    """The allowed values of a Literal type (for CLI choices and docs)."""
    return get_args(literal)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class VideoData(Section):
    frames: Positive = 32  # sampled evenly over the whole clip
    size: Positive | None = 224  # frame height (crop size); None = the checkpoint processor's crop size
    width: Positive | None = None  # whole frame resized to size x width (a patch multiple); None = centre square crop


class ImagesData(Section):
    views: Positive = 5  # photos per weld; fewer are padded and masked
    size: Positive | None = None  # photo height (crop size); None = the checkpoint processor's crop size
    width: Positive | None = None  # whole photo resized to size x width (a patch multiple); None = centre square crop
    tag_box: list[float] | None = None  # [x0, y0, x1, y1] as fractions: paper-tag region to blank out

    @model_validator(mode="after")
    def _box(self) -> ImagesData:
        box = self.tag_box
        if box is not None and not (len(box) == 4 and 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            raise ValueError(f"tag_box {box} must be 4 fractions x0 < x1, y0 < y1 in [0, 1]")
        return self


class AudioData(Section):
    sample_rate: Positive = 16000
    clips: Positive = 3  # clips spread evenly over the recording; frames and mel bins per clip come from the AST config
    max_seconds: PositiveFloat = 1200.0  # decode bound: a longer recording is refused (the real ones last 25-38 s)


# Physical bounds per channel, deliberately generous (the real logs: ~150-190 A, ~19-23 V, a few bar):
# a value outside them (or inf / nan) is a broken cell, reported and interpolated like an empty one.
SENSOR_LIMITS: dict[str, tuple[float, float]] = {
    "Pressure": (-1e3, 1e3),
    "CO2 Weld Flow": (-1e4, 1e4),
    "Feed": (-1e4, 1e4),
    "Primary Weld Current": (-5e3, 5e3),
    "Wire Consumed": (-1e9, 1e9),
    "Secondary Weld Voltage": (-1e3, 1e3),
}


class SensorData(Section):
    steps: Annotated[int, Field(ge=2)] = 256
    channels: list[str] = Field(default_factory=lambda: list(SENSOR_CHANNELS), min_length=1)
    current_channel: str = "Primary Weld Current"
    arc_threshold: float = 5.0  # amperes: arc on when the current exceeds it
    crop_to_arc: bool = True  # drop the arc-off margins before resampling
    limits: dict[str, tuple[float, float]] = Field(default_factory=lambda: dict(SENSOR_LIMITS))  # channel -> [low, high]
    max_mb: Positive = 64  # parser bounds, shared by `data check` and the reader: file size,
    max_fields: Positive = 256  # fields per line (header and rows),
    max_rows: Positive = 200_000  # and data rows (the real logs hold 195-666)

    @model_validator(mode="after")
    def _current(self) -> SensorData:
        if self.current_channel not in self.channels:
            raise ValueError(f"current_channel {self.current_channel!r} must be one of channels")
        return self


class EncoderConfig(Section):
    """A pretrained transformers backbone (V-JEPA 2, DINOv2 or AST)."""

    pretrained: str | None = None  # hub id or local folder; None = random init from `arch`
    arch: dict[str, Any] = Field(default_factory=dict)  # config fields of the backbone (random init, or info)
    freeze: bool = True
    unfreeze_last: NonNegative = 0  # with freeze: also train the last k transformer blocks
    init_seed: int = 0  # random init only
    pool_grid: Annotated[list[Positive], Field(min_length=3, max_length=3)] | None = None  # [time, height, width]: each
    # clip/view's token grid average-pooled to at most this size (bounds the cache); None keeps every token


class SensorEncoderConfig(Section):
    """Transformer encoder over the sensor log, trained from scratch."""

    d_model: Positive = 256
    layers: Positive = 4
    heads: Positive = 8
    ff: Positive = 1024
    dropout: Fraction = 0.1
    positions: Positions = "learned"

    @model_validator(mode="after")
    def _heads(self) -> SensorEncoderConfig:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by heads {self.heads}")
        return self


class FusionConfig(Section):
    kind: FusionKind = "cross_attention"
    dim: Positive = 512
    tokens: Positive = 4
    heads: Positive = 8
    dropout: Fraction = 0.1
    hidden: Positive = 1024

    @model_validator(mode="after")
    def _heads(self) -> FusionConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        return self


class ModalitySections(Section):
    """A config section that also holds one sub-section per registered modality, parsed by its spec."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    side: ClassVar[str]  # "data" or "model": which of the spec's settings models parses the sub-sections

    @model_validator(mode="after")
    def _modalities(self) -> ModalitySections:
        extra = self.__pydantic_extra__ or {}
        unknown = sorted(set(extra) - set(MODALITIES.names()))
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join([*type(self).model_fields, *MODALITIES.names()])})")
        for spec in MODALITIES:
            settings = getattr(spec, f"{self.side}_settings")
            value = extra.get(spec.name, {})
            if not isinstance(value, settings):
                value = value if value is not None else {}
                unknown = sorted(set(value) - set(settings.model_fields)) if isinstance(value, dict) else []
                if unknown:  # also for a plug-in's settings model that would ignore it
                    raise InputError(f"config: {self.side}.{spec.name}.{unknown[0]}: unknown key")
                try:
                    value = settings.model_validate(value)
                except ValidationError as exc:
                    raise InputError(config_error(exc, f"{self.side}.{spec.name}.")) from None
            extra[spec.name] = value
        return self

    def section(self, modality: str) -> Any:
        return getattr(self, modality)


class DataConfig(ModalitySections):
    side: ClassVar[str] = "data"
    num_workers: NonNegative = 2
    max_video_frames: Positive = 20000  # decode bound: a clip longer than this is refused
    max_file_mb: Positive = 2048  # size bound for any single file


class ModelConfig(ModalitySections):
    side: ClassVar[str] = "model"
    modalities: list[str] = Field(default_factory=lambda: ["video", "images", "audio", "sensor"])
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    embedding_dim: Positive = 512
    classifier: bool = False  # a linear head for the combined SupCon + cross-entropy loss

    @field_validator("modalities")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        known = MODALITIES.names()
        if not names or len(set(names)) != len(names) or set(names) - set(known):
            raise ValueError(f"must be distinct names from {', '.join(known)}, got {names}")
        return names


class CacheConfig(Section):
    dir: str | None = None  # None: $WELDFUSION_CACHE, else ~/.cache/weldfusion
    dtype: CacheDtype = "float16"
    autocast: bool = True  # bf16 autocast while filling (CPU and GPU)
    batch_size: Positive = 4


class TrainConfig(Section):
    epochs: Positive = 100
    batch_size: Annotated[int, Field(ge=4)] = 32
    samples_per_class: Annotated[int, Field(ge=2)] = 4  # K of the P x K class-balanced batches
    optimizer: Optimizer = "adamw"
    lr: PositiveFloat = 1e-4
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    momentum: Fraction = 0.9  # sgd
    scheduler: Scheduler = "cosine"  # cosine: linear warmup, then cosine
    warmup_epochs: NonNegative = 10
    warmup_start_lr: PositiveFloat = 1e-7
    min_lr: Annotated[float, Field(ge=0)] = 1e-6
    step_epochs: Positive = 30  # step: decay every this many epochs
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1  # step and plateau decay factor
    plateau_patience: NonNegative = 5
    grad_clip: Annotated[float, Field(ge=0)] = 1.0  # 0 disables
    precision: Annotated[Precision, BeforeValidator(str)] = "auto"  # auto: bf16-mixed on GPUs that support it, 16-mixed on others, 32 on CPU
    patience: NonNegative = 10  # early stopping on validation loss; 0 disables
    temperature: PositiveFloat = 0.07
    modality_dropout: Fraction = 0.0  # training: hide each modality of a weld with this probability (one always stays)
    token_dropout: Fraction = 0.0  # training: hide each cached token with this probability
    supcon_weight: Annotated[float, Field(ge=0)] = 1.0
    ce_weight: Annotated[float, Field(ge=0)] = 0.0  # > 0 (with model.classifier) adds cross-entropy: the combined loss
    flat_loss_steps: Annotated[int, Field(ge=2)] = 50  # warn when the training loss has not moved over this many steps
    flat_loss_tolerance: Annotated[float, Field(ge=0)] = 1e-3  # relative range under which the loss counts as flat
    debug_batches: NonNegative = 3  # batches reported by --debug

    @model_validator(mode="after")
    def _rates(self) -> TrainConfig:
        if self.min_lr > self.lr or self.warmup_start_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} and warmup_start_lr {self.warmup_start_lr} must not exceed lr {self.lr}")
        return self


class EvalConfig(Section):
    k: Positive = 5
    metric: Metric = "cosine"
    temperature: PositiveFloat | None = None  # None: majority vote; else votes weighted by softmax(similarity / T)
    anomaly_k: Positive = 5  # neighbours among the Good TRAIN welds for the anomaly score
    anomaly_metric: Metric = "euclidean"  # distances of standardised features: magnitude matters (cosine ignores it)
    weight_step: Annotated[float, Field(ge=0.05, le=1)] = 0.1  # grid step of the per-modality fusion weights chosen on VAL
    anomaly_scorer: AnomalyScorer = "tokens"  # tokens: each token's distance to a memory bank of Good tokens; pooled: whole welds
    coreset_ratio: Annotated[float, Field(gt=0, le=1)] = 0.1  # share of the Good TRAIN tokens kept in each memory bank
    token_k: Positive = 1  # nearest bank tokens per query token
    token_quantiles: Annotated[list[Annotated[float, Field(ge=0.5, le=1)]], Field(min_length=1)] = Field(
        default_factory=lambda: [1.0, 0.99, 0.95, 0.9])  # a weld's modality score: this quantile of its token scores
    # (1 = max), chosen per modality on VAL (the first where VAL lacks Good or defect welds)
    embedding_map: EmbeddingMap = "tsne"  # t-SNE falls back to PCA above 3000 welds
    batch_size: Positive = 32


class MonitorWindow(Section):
    """One modality's sliding windows while a weld is watched (`weldfusion.monitor`)."""

    seconds: PositiveFloat = 1.0  # window length
    hop: PositiveFloat = 0.5  # a window is scored every hop seconds
    frames: Positive = 8  # video: frames sampled evenly from the window (a multiple of the tubelet size)
    pool: Annotated[list[Positive], Field(min_length=3, max_length=3)] | None = None  # [time, height, width]: the
    # window's token grid average-pooled to at most this size (bounds the bank); None keeps every token


MonitorFusion = Literal["max", "weighted", "equal"]


class MonitorConfig(Section):
    """Watching a weld as it is made (SPEC §12): windows, banks, fusion, alert rule."""

    modalities: list[str] = Field(default_factory=lambda: ["video", "audio", "sensor"])
    video: MonitorWindow = Field(default_factory=lambda: MonitorWindow(pool=[2, 4, 6]))
    audio: MonitorWindow = Field(default_factory=MonitorWindow)
    sensor: MonitorWindow = Field(default_factory=MonitorWindow)
    tick: PositiveFloat = 0.5  # a fused window every tick seconds of stream time
    fusion: MonitorFusion = "max"  # max of the modalities' standardised scores; weighted: the run's anomaly weights; equal: mean
    alert_k: Positive = 2  # alert when alert_k of the last alert_m fused windows exceed the threshold ...
    alert_m: Positive = 3  # ... once per episode; re-armed when fewer than alert_k of the last alert_m do
    false_alerts_per_weld: Annotated[float, Field(ge=0)] = 0.05  # threshold: at most this many alerts per VAL Good weld
    bank_ratio: Annotated[float, Field(gt=0, le=1)] = 1.0  # share of the Good TRAIN window tokens kept (greedy coreset)
    bank_max: Positive = 50000  # tokens per modality bank at most (a coreset beyond)
    stall_seconds: PositiveFloat = 2.0  # a modality this far behind the others is reported stopped
    gap_seconds: PositiveFloat = 0.4  # consecutive items further apart than this (and 3 periods) are a gap
    coverage: Annotated[float, Field(gt=0, le=1)] = 0.8  # share of a window its items must cover to be scored
    audio_block: PositiveFloat = 0.1  # replay: seconds of audio per chunk
    sensor_rate: PositiveFloat = 8.6  # replay: rows per second when a log's timestamps cannot be used

    @model_validator(mode="after")
    def _rule(self) -> MonitorConfig:
        if self.alert_k > self.alert_m:
            raise ValueError(f"alert_k {self.alert_k} must not exceed alert_m {self.alert_m}")
        unknown = sorted(set(self.modalities) - {"video", "audio", "sensor"})
        if unknown or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct names among video, audio, sensor, got {self.modalities}")
        return self

    def window(self, modality: str) -> MonitorWindow:
        return getattr(self, modality)


class Config(Section):
    seed: int = 0
    protocol: str = "classify"  # a registered protocol: classify (SupCon + k-NN) | anomaly (distance to Good welds)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, name: str) -> str:
        if name not in PROTOCOLS:
            raise ValueError(f"use one of {', '.join(PROTOCOLS.names())}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.train.ce_weight > 0 and not self.model.classifier:
            raise ValueError("train.ce_weight > 0 needs model.classifier: true (the cross-entropy head)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def copy_with(self, overrides: list[str]) -> Config:
        """A new config: this one with `key=value` overrides applied (validated)."""
        data = self.to_dict()
        apply_overrides(data, overrides)
        return from_dict(data)


def config_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the first offending key: `config: train.lr: Input should be greater than 0 (got -1)`."""
    first = exc.errors()[0]
    where = prefix + ".".join(str(part) for part in first["loc"] if not str(part).startswith("function-"))
    got = f" (got {first['input']!r})" if first["type"] not in ("value_error", "missing") and not isinstance(first["input"], dict) else ""
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    return f"config: {where.rstrip('.') or 'top level'}: {message}{got}"


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("weldfusion.presets").iterdir() if p.name.endswith(".yaml"))


def load_config(preset: str = "cpu", overrides: list[str] | None = None) -> Config:
    """Resolve a preset name (or a YAML file path) plus `key=value` overrides into a Config."""
    data = _read_preset(preset)
    apply_overrides(data, overrides or [])
    return from_dict(data)


def from_dict(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise InputError(config_error(exc)) from None


def save_config(config: Config, path: Path) -> None:
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected key=value, e.g. train.epochs=5")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise InputError(f"--set {item!r}: the value is not valid YAML") from None
        _assign(data, key.strip().split("."), value)


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
