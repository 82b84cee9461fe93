"""Post-weld photos of the realistic generator: the finished bead on its plate, seen by one camera.

The bead runs from the weld start (left) to the crater (right); a defect event marks the stretch of
bead laid during it (`Event.span`), in the photos that show it (`Event.views`). Shapes follow the
defect: pores are dark pits, spatter leaves balls beside the bead, burnthrough a hole, heat a wide
flat bead with a sagging edge and tint, convexity a narrow, high crown, a cold bead narrow with
sharp unfused toes, overlap a rolled-over edge, undercut a groove along one toe, warping a bowed
plate, crater cracks lines at the end. `footprint` gives the region of each event in a photo, for
the ground truth; the renderer draws inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from weldfusion.synth.events import Event, Layout
from weldfusion.synth.nuisance import Session, View
from weldfusion.synth.tag import draw_tag

GRID = 512  # columns on which footprints are computed (independent of the photo size)
REACH = {  # how far from the bead centre each event shows, in bead half-widths
    "pores": 1.1, "spatter": 4.4, "burnthrough": 1.3, "heat": 1.8, "undercut": 1.5, "overlap": 1.4, "cold": 1.2,
    "convexity": 2.1, "warping": 1.6, "crater": 2.2,
}  # fmt: skip
WIDENING = {"heat": 0.6, "convexity": -0.35, "cold": -0.3}  # relative change of the bead width at full severity


@dataclass(frozen=True)
class Outline:
    """The bead in one photo, per column: weld progress, centre line and half-widths (fractions of the height)."""

    x: np.ndarray
    progress: np.ndarray
    centre: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    def at(self, x: float) -> int:
        return int(np.clip(np.searchsorted(self.x, x), 0, len(self.x) - 1))


def weight(event: Event, progress: np.ndarray, soft: float = 0.015) -> np.ndarray:
    """0..1 along the bead: where `event` marks it (soft edges)."""
    a, b = event.span
    return np.clip(np.minimum(progress - a, b - progress) / soft + 0.5, 0.0, 1.0)


def outline(view: View, events: list[Event], x: np.ndarray) -> Outline:
    progress = (x - view.x0) / (view.x1 - view.x0)
    centre = view.bead_y(x)
    scale, top, bottom = np.ones_like(x), np.ones_like(x), np.ones_like(x)
    for e in events:
        w, s = weight(e, progress), e.severity
        if e.kind == "warping":  # the plate bows: the bead bends away from its straight line
            centre = centre + e.side * 0.12 * s * np.sin(np.pi * np.clip(progress, 0, 1))
        scale *= 1 + WIDENING.get(e.kind, 0.0) * s * w
        if e.kind == "overlap":  # metal rolled over one edge without fusing
            (bottom if e.side > 0 else top)[:] *= 1 + 0.8 * s * w
    return Outline(x, progress, centre, view.half * scale * top, view.half * scale * bottom)


def visible(layout: Layout, view: int) -> list[Event]:
    return [e for e in layout.events if view in e.views]


def footprint(event: Event, view: View, events: list[Event], aspect: float) -> list[float]:
    """[x0, y0, x1, y1] (fractions of the photo) of the region where `event` shows in this view."""
    line = outline(view, events, (np.arange(GRID) + 0.5) / GRID)
    a, b = event.span
    reach = REACH[event.kind]
    if event.kind == "crater":
        pad = reach * view.half * aspect
        left, right = view.bead_x(1.0) - pad, view.bead_x(1.0) + pad
    else:
        pad = (4.0 if event.kind == "spatter" else 0.6) * view.half * aspect
        left, right = view.bead_x(a) - pad, view.bead_x(b) + pad
    cols = slice(line.at(left), line.at(right) + 1)
    top = float(np.min(line.centre[cols] - reach * line.top[cols]))
    bottom = float(np.max(line.centre[cols] + reach * line.bottom[cols]))
    return [round(float(np.clip(v, 0.0, 1.0)), 4) for v in (left, top, right, bottom)]


def plate(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Grey mill-scale plate: smooth blotches and fine grain."""
    height, width = shape
    blotches = cv2.resize(rng.normal(0, 1, (6, 14)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return 112.0 + 10.0 * blotches + rng.normal(0, 3.0, shape).astype(np.float32)


def band(across: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ((across > lo) & (across < hi)).astype(np.float32)


def surface(grey: np.ndarray, session: Session, line: Outline, events: list[Event],
            y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Grey levels with the bead laid on the plate, its signed cross position, the bead mask and the
    heat-tint strength per column."""
    half = np.where(y[:, None] > line.centre[None, :], line.bottom[None, :], line.top[None, :])
    across = (y[:, None] - line.centre[None, :]) / half
    inside = (np.abs(across) <= 1) & ((line.progress >= 0) & (line.progress <= 1))[None, :]
    crown, shade, oxide = np.full_like(line.x, 45.0), np.ones_like(grey), np.full_like(line.x, session.oxide)
    for e in events:
        w, s = weight(e, line.progress)[None, :], e.severity
        if e.kind == "heat":  # flat, tinted, sagging at the lower edge
            crown = crown * (1 - 0.6 * s * w[0])
            oxide = oxide + 0.6 * s * w[0]
            shade *= 1 - 0.4 * s * w * band(across, 1.0, 1.6)
        elif e.kind == "convexity":  # a high crown casting shadows on both sides
            crown = crown * (1 + 1.5 * s)
            shade *= 1 - 0.35 * s * band(np.abs(across), 1.0, 2.0)
        elif e.kind == "cold":  # sharp, unfused toes
            shade *= 1 - 0.45 * s * w * band(np.abs(across), 0.8, 1.0)
        elif e.kind in ("undercut", "overlap"):  # a groove melted beside one toe / the shadow of the rolled edge
            depth, reach = (0.6, 1.4) if e.kind == "undercut" else (0.5, 1.2)
            shade *= 1 - depth * s * w * band(across * e.side, 1.0, reach)
    pitch = 0.02 + 0.01 * session.recipe.speed / 30
    ripples = 0.5 + 0.5 * np.cos(2 * np.pi * ((line.x - line.x[0]) / pitch + 0.5 * across**2))
    bead = 118.0 + 22.0 * ripples * (1 - 0.4 * across**2) + crown[None, :] * np.exp(-(across**2) / 0.08)
    grey = np.where(inside, bead, grey) * shade
    return grey, across, inside, oxide


def colourise(grey: np.ndarray, across: np.ndarray, inside: np.ndarray, oxide: np.ndarray, session: Session) -> np.ndarray:
    """RGB: bead colour on the bead, a blue-violet heat tint beside it."""
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[inside] *= np.array(session.bead, np.float32)
    tint = (band(np.abs(across), 1.0, 1.8) * oxide[None, :])[..., None]
    return rgb * (1 - tint * (1 - np.array([0.72, 0.78, 1.15], np.float32)))


def lighting(view: View, line: Outline, events: list[Event], y: np.ndarray) -> np.ndarray:
    """(H, W, 3) light falling on the plate; a bowed plate catches it unevenly along the bead."""
    light = view.light * (1 + view.slope[0] * (line.x[None, :] - 0.5) + view.slope[1] * (y[:, None] - 0.5))
    for e in events:
        if e.kind == "warping":
            light = light * (1 + 0.15 * e.severity * e.side * np.cos(np.pi * np.clip(line.progress, 0, 1)))[None, :]
    return light[..., None] * np.array(view.colour, np.float32)


def dot(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: tuple[int, int, int]) -> None:
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)


def marks(draw: ImageDraw.ImageDraw, rng: np.random.Generator, e: Event, view: View, line: Outline,
          size: tuple[int, int]) -> None:  # fmt: skip
    """Pits, balls, holes and cracks of one event, drawn in pixels inside its footprint."""
    width, height = size
    s, (a, b) = e.severity, e.span

    def place(spread_px: float, reach: float) -> tuple[float, float]:
        x = view.bead_x(rng.uniform(a, b)) + rng.uniform(-spread_px, spread_px) / width
        i = line.at(x)
        side = line.bottom[i] if rng.random() < 0.5 else -line.top[i]
        return x * width, (line.centre[i] + side * rng.uniform(-reach, reach)) * height

    half_px = view.half * height
    if e.kind == "pores":
        for _ in range(int(3 + 12 * s)):
            cx, cy = place(0, 0.6)
            dot(draw, cx, cy, rng.uniform(0.15, 0.4) * half_px, (34, 30, 28))
    elif e.kind == "spatter":
        for _ in range(int(6 + 24 * s)):
            cx, cy = place(2 * half_px, 1.0)
            cy += np.sign(rng.normal()) * rng.uniform(1.2, 3.0) * half_px
            ball(draw, cx, cy, rng.uniform(0.08, 0.18) * half_px)
    elif e.kind == "burnthrough":
        x0, x1 = view.bead_x(a) * width, view.bead_x(b) * width
        cy = line.centre[line.at((view.bead_x(a) + view.bead_x(b)) / 2)] * height
        r = (0.45 + 0.45 * s) * half_px
        draw.ellipse((x0 - 0.3 * r, cy - 1.25 * r, x1 + 0.3 * r, cy + 1.25 * r), fill=(92, 64, 52))  # oxidised rim
        draw.ellipse((x0, cy - r, x1, cy + r), fill=(14, 12, 11))
    elif e.kind == "crater":
        cx, cy = view.bead_x(1.0) * width, line.centre[line.at(view.bead_x(1.0))] * height
        for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))):
            length = rng.uniform(0.8, 2.0) * half_px * (0.5 + 0.5 * s)
            draw.line((cx, cy, cx + length * np.cos(angle), cy + length * np.sin(angle)), fill=(30, 26, 24),
                      width=max(int(height / 140), 1))  # fmt: skip


def ball(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    """A spatter ball: dark rim, bright spot."""
    dot(draw, cx, cy, max(r, 0.8), (70, 66, 62))
    dot(draw, cx - 0.3 * r, cy - 0.3 * r, max(0.4 * r, 0.5), (215, 212, 205))


def normal_marks(draw: ImageDraw.ImageDraw, rng: np.random.Generator, session: Session, view: View, line: Outline,
                 size: tuple[int, int]) -> None:  # fmt: skip
    """What every weld shows: the crater at the end, a few spatter balls, scratches on the plate."""
    width, height = size
    half_px = view.half * height
    cx, cy = view.bead_x(1.0) * width, line.centre[line.at(view.bead_x(1.0))] * height
    dot(draw, cx, cy, 0.75 * half_px, (78, 74, 70))
    dot(draw, cx, cy, 0.45 * half_px, (100, 96, 92))
    for _ in range(rng.poisson(session.balls)):
        x = rng.uniform(view.x0, view.x1)
        ball(draw, x * width, (line.centre[line.at(x)] + rng.choice([-1, 1]) * rng.uniform(1.5, 4.0) * view.half) * height,
             rng.uniform(0.08, 0.18) * half_px)  # fmt: skip
    for _ in range(rng.integers(0, 4)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.05, 0.3) * width
        draw.line((x0, y0, x0 + length * np.cos(angle), y0 + length * np.sin(angle)), fill=(150, 148, 145), width=1)


def photo(rng: np.random.Generator, session: Session, layout: Layout, view_index: int, size: tuple[int, int],
          code: int) -> Image.Image:  # fmt: skip
    """One RGB photo of the finished weld from camera `view_index`, with the paper tag showing `code`."""
    width, height = size
    view, events = layout.views[view_index], visible(layout, view_index)
    x, y = (np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height
    line = outline(view, events, x)
    grey, across, inside, oxide = surface(plate(rng, (height, width)), session, line, events, y)
    image = Image.fromarray(np.clip(colourise(grey, across, inside, oxide, session), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    normal_marks(draw, rng, session, view, line, size)
    for e in events:
        marks(draw, rng, e, view, line, size)
    draw_tag(image, view.tag, code)
    image = Image.fromarray(np.clip(np.asarray(image, np.float32) * lighting(view, line, events, y), 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(radius=max(width / 1000, 0.4)))
