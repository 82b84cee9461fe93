"""weldfusion: quad-modal welding defect detection (video, photos, audio, sensor log)."""

__version__ = "0.1.0"

MODALITIES: tuple[str, ...] = ("video", "images", "audio", "sensor")
