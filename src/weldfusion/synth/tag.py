"""The paper tag on every photographed plate: a white label with the weld's class code printed on it.

The digits are drawn as seven-segment strokes scaled to the tag, so they read the same at every
photo size and on every machine (no font files involved).
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from weldfusion.synth.nuisance import TAG_SIZE

PAPER = (236, 235, 226)
INK = (28, 30, 36)
SEGMENTS = {  # which of the segments a b c d e f g each digit lights
    "0": "abcdef", "1": "bc", "2": "abdeg", "3": "abcdg", "4": "bcfg", "5": "acdfg", "6": "acdefg", "7": "abc",
    "8": "abcdefg", "9": "abcdfg",
}  # fmt: skip


def draw_digit(draw: ImageDraw.ImageDraw, digit: str, left: float, top: float, width: float, height: float) -> None:
    stroke = max(width * 0.18, 1.0)
    mid = top + height / 2
    right, bottom = left + width, top + height
    boxes = {
        "a": (left, top, right, top + stroke), "g": (left, mid - stroke / 2, right, mid + stroke / 2),
        "d": (left, bottom - stroke, right, bottom), "f": (left, top, left + stroke, mid), "b": (right - stroke, top, right, mid),
        "e": (left, mid, left + stroke, bottom), "c": (right - stroke, mid, right, bottom),
    }  # fmt: skip
    for segment in SEGMENTS[digit]:
        draw.rectangle(boxes[segment], fill=INK)


def draw_tag(image: Image.Image, corner: tuple[float, float], code: int) -> None:
    """Paste the tag (top-left `corner` as fractions of the photo) with the two-digit class `code`, in place."""
    width, height = image.size
    tag_w, tag_h = max(int(TAG_SIZE[0] * width), 8), max(int(TAG_SIZE[1] * height), 6)
    tag = Image.new("RGB", (tag_w, tag_h), PAPER)
    draw = ImageDraw.Draw(tag)
    digit_w, digit_h = tag_w * 0.26, tag_h * 0.62
    for i, digit in enumerate(f"{code:02d}"):
        draw_digit(draw, digit, tag_w * (0.14 + 0.38 * i), tag_h * 0.19, digit_w, digit_h)
    image.paste(tag, (int(corner[0] * width), int(corner[1] * height)))
