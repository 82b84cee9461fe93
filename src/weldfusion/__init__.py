"""weldfusion: quad-modal welding defect detection (video, photos, audio, sensor log)."""

import os

# Corrupt media are reported by weldfusion with the file and the problem; keep libav's own
# decoder chatter off stderr (must be set before OpenCV is first imported).
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
