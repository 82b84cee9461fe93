"""The built-in modalities (SPEC §2), registered in `weldfusion.registry.MODALITIES` on import."""

from weldfusion.modalities.audio import Audio
from weldfusion.modalities.base import BackboneSpec, ModalitySpec
from weldfusion.modalities.images import Images
from weldfusion.modalities.sensor import Sensor
from weldfusion.modalities.video import Video
from weldfusion.registry import MODALITIES

for _spec in (Video(), Images(), Audio(), Sensor()):
    MODALITIES.register(_spec.name, _spec)

__all__ = ["BackboneSpec", "ModalitySpec"]
