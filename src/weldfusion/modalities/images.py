"""Post-weld photos: `images/*.jpg` sorted by name, up to 5 views kept apart, DINOv2 (SPEC §2-3)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from PIL import Image

from weldfusion.config import Config, DataConfig, ImagesData
from weldfusion.data.readers import Decoded, check_size, first_line, read_images
from weldfusion.data.transforms import ImageTransform
from weldfusion.errors import ModalityError
from weldfusion.models.encoders import ImageEncoder
from weldfusion.models.preprocessing import image_transform
from weldfusion.modalities.base import BackboneSpec


class Images(BackboneSpec):
    name = "images"
    extensions = (".jpg", ".jpeg")
    folder = "images"
    encoder_class = ImageEncoder
    data_settings = ImagesData

    def items(self, data: DataConfig) -> int:
        return data.images.views

    def build_transform(self, config: Config) -> ImageTransform:
        return image_transform(config)

    def input_shape(self, data: DataConfig, transform: ImageTransform) -> tuple[int, ...]:
        return (data.images.views, 3, *transform.resize.shape)

    def read(self, files: tuple[Path, ...], data: DataConfig, transform: ImageTransform) -> Decoded:
        return read_images(files, data.images.views, transform, transform.resize.short_edge, data.max_file_mb)

    def probe(self, files: tuple[Path, ...], data: DataConfig, transform: ImageTransform) -> list[str]:
        notes = [note for note in (_verify_photo(p, data.max_file_mb) for p in files) if note]
        if len(notes) == len(files):
            raise ModalityError(files[0].parent, f"no readable photo ({notes[0]})")
        return notes


    def transform_identity(self, transform: ImageTransform) -> dict:
        return {"resize": asdict(transform.resize), "tag_box": transform.tag_box}


def _verify_photo(path: Path, max_mb: int) -> str | None:
    try:
        check_size(path, max_mb)
        with Image.open(path) as image:
            image.verify()
    except ModalityError as exc:
        return f"{path.name}: {exc.problem}; view masked"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"{path.name}: unreadable ({first_line(exc)}); view masked"
    return None
