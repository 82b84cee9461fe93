"""What a modality is, in one place: its files, reader, preprocessing, shapes and masks, encoder,
cache identity, untrained features and synthetic rendering.

The rest of weldfusion iterates over `weldfusion.registry.MODALITIES`; adding a modality means
writing one `ModalitySpec` subclass and registering an instance (see docs/architecture.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from weldfusion.config import Config, DataConfig, EncoderConfig
from weldfusion.data.readers import Decoded
from weldfusion.errors import InputError
from weldfusion.models.backbones import backbone_config, identity
from weldfusion.models.cache import Entry
from weldfusion.models.encoders import BackboneEncoder, ModalityEncoder
from weldfusion.models.layout import TokenSet, token_set


class ModalitySpec:
    """One modality. Subclasses set the class attributes and implement `read` and `build_encoder`."""

    name: str
    extensions: tuple[str, ...]  # file name endings, lower case
    folder: str | None = None  # files live in this sub-folder of the weld folder (several files), else one `<part><ext>`
    data_settings: type[BaseModel]  # the config section data.<name>
    model_settings: type[BaseModel]  # the config section model.<name>
    standardised: bool = False  # per-channel statistics of the train split are applied to its values (stored with the run)

    # -- files ---------------------------------------------------------------------------------
    def expected(self, part: str) -> str:
        return f"{self.folder}/*{self.extensions[0]}" if self.folder else f"{part}{self.extensions[0]}"

    def locate(self, folder: Path, part: str) -> tuple[Path, ...]:
        """This modality's file(s) in a weld folder: `<part><ext>` (or the folder's only such file), or
        every matching file of the sub-folder, sorted by name."""
        if self.folder:
            sub = folder / self.folder
            return tuple(sorted(p for p in sub.iterdir() if p.is_file() and self._matches(p))) if sub.is_dir() else ()
        exact = [folder / f"{part}{ext}" for ext in self.extensions if (folder / f"{part}{ext}").is_file()]
        if exact:
            return (exact[0],)
        if not folder.is_dir():
            return ()
        others = sorted(p for p in folder.iterdir() if p.is_file() and self._matches(p))
        return (others[0],) if len(others) == 1 else ()

    def _matches(self, path: Path) -> bool:
        return path.name.lower().endswith(self.extensions)

    # -- reading -------------------------------------------------------------------------------
    def channels(self, data: DataConfig, width: int) -> list[str]:
        """Names of the last axis of the decoded values (standardised modalities' statistics)."""
        return [f"{self.name}[{i}]" for i in range(width)]

    def items(self, data: DataConfig) -> int:
        """Items per weld that carry their own validity (photo views, audio clips); 1 by default."""
        return 1

    def build_transform(self, config: Config) -> Any:
        """The encoder's preprocessing for this configuration (None: `read` needs none)."""
        return None

    def input_shape(self, data: DataConfig, transform: Any) -> tuple[int, ...]:
        raise NotImplementedError

    def read(self, files: tuple[Path, ...], data: DataConfig, transform: Any) -> Decoded:
        """Decode and preprocess into `input_shape`; ModalityError names the file and the problem. The
        data layer calls this with the configuration's data section only."""
        raise NotImplementedError

    def probe(self, files: tuple[Path, ...], data: DataConfig, transform: Any) -> list[str]:
        """The cheap check of `data check`: notes on what is usable; ModalityError when nothing is."""
        return self.read(files, data, transform).notes

    # -- model ---------------------------------------------------------------------------------
    def build_encoder(self, config: Config, weights: bool = True) -> ModalityEncoder:
        raise NotImplementedError

    def encoder_dim(self, config: Config) -> int:
        raise NotImplementedError

    def frozen(self, config: Config) -> bool:
        """Is the encoder entirely frozen? Then its outputs are computed once and cached."""
        return False

    def external_weights(self, config: Config) -> bool:
        """Frozen pretrained weights are loaded from their source, not copied into the run's model."""
        return False

    def cache_identity(self, config: Config, transform: Any) -> dict:
        """What determines the cached tokens besides the files (backbone, preprocessing, dtype)."""
        raise NotImplementedError

    # -- without training ----------------------------------------------------------------------
    def has_untrained(self, config: Config) -> bool:
        """Does `untrained_features` give this modality a representation (by default: frozen tokens)?"""
        return self.frozen(config)

    def untrained_features(self, tokens: torch.Tensor | None, valid: torch.Tensor | None, value: np.ndarray | None,
                           ) -> np.ndarray | None:  # fmt: skip
        """One weld's representation without any training (per-modality figures, pooled anomaly
        scorer): by default the mean and std of its frozen encoder's valid tokens."""
        return pool_statistics(tokens, valid) if tokens is not None and valid is not None else None

    def tokens(self, entry: Entry | None, decoded: Decoded | None) -> TokenSet | None:
        """One weld's tokens with their places, for the token-level scorer: by default the frozen
        encoder's stored tokens (`entry`); modalities without one derive them from `decoded`."""
        if entry is None:
            return None
        return token_set(entry.tokens.float().numpy(), entry.valid.numpy(), entry.grid, entry.span.numpy())

    # -- synthetic data ------------------------------------------------------------------------
    def render(self, folder: Path, part: str, label: int, seconds: float, rng: np.random.Generator) -> None:
        """Write this modality's file(s) for one synthetic weld. The four built-in modalities are drawn
        together by `weldfusion.synth` (their signals share one weld plan); others implement this."""


class BackboneSpec(ModalitySpec):
    """A modality encoded by a pretrained transformers backbone (model section: EncoderConfig)."""

    model_settings = EncoderConfig
    encoder_class: type[BackboneEncoder]  # names the transformers classes (`backbone_classes`)

    def build_encoder(self, config: Config, weights: bool = True) -> BackboneEncoder:
        try:
            return self.encoder_class(config.model.section(self.name), weights)
        except InputError as exc:
            raise InputError(f"model.{self.name}.pretrained: {exc}") from None

    def backbone_config(self, config: Config) -> Any:
        """The backbone's architecture (checkpoint config, or the class defaults with `arch`), no weights."""
        return backbone_config(self.encoder_class.backbone_classes, config.model.section(self.name), offline_ok=True)

    def encoder_dim(self, config: Config) -> int:
        return int(self.backbone_config(config).hidden_size)

    def frozen(self, config: Config) -> bool:
        spec = config.model.section(self.name)
        return spec.freeze and not spec.unfreeze_last

    def external_weights(self, config: Config) -> bool:
        return self.frozen(config) and config.model.section(self.name).pretrained is not None

    def cache_identity(self, config: Config, transform: Any) -> dict:
        spec = config.model.section(self.name)
        return {"backbone": identity(self.encoder_class.backbone_classes, spec), "encoder": spec.model_dump(mode="json", exclude={"freeze", "unfreeze_last"}),
                "data": config.data.section(self.name).model_dump(mode="json"), "transform": self.transform_identity(transform),
                "dtype": config.cache.dtype, "autocast": config.cache.autocast}  # fmt: skip

    def transform_identity(self, transform: Any) -> dict:
        return {}


def pool_statistics(tokens: torch.Tensor, valid: torch.Tensor) -> np.ndarray | None:
    """(N, D) tokens of one weld -> (2D,) mean and std over its valid tokens; None if none is valid."""
    if not valid.any():
        return None
    kept = tokens[valid].float()
    return torch.cat([kept.mean(0), kept.std(0, unbiased=False)]).numpy().astype(np.float64)
