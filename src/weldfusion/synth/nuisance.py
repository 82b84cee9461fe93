"""Session nuisance of the realistic generator: what differs between sessions, whatever their class.

Every session draws its camera, lighting, plate finish, recipe and background from the same
distribution for every class (so none of it tells the class), and each weld jitters its session's
cameras a little. `NUISANCE` scales every spread at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from weldfusion.synth import render

NUISANCE = 1.0  # global strength of the session nuisance (1 = the ranges below)
VIEWS = 5
TAG_SIZE = (0.15, 0.2)  # paper tag width and height as fractions of the photo


def spread(rng: np.random.Generator, centre: float, half: float) -> float:
    """`centre` plus a uniform offset of up to `half` scaled by NUISANCE."""
    return float(centre + NUISANCE * rng.uniform(-half, half))


def level(rng: np.random.Generator, centre: float, half: float) -> float:
    """A `spread` that cannot go below zero (rates, noise levels)."""
    return max(spread(rng, centre, half), 0.0)


@dataclass(frozen=True)
class View:
    """How one photo sees the finished plate; positions are fractions of the photo."""

    y: float  # bead centre height at the photo's middle
    tilt: float  # rise of the bead centre from the left to the right edge
    x0: float  # where the bead starts (weld start)
    x1: float  # where the bead ends (crater)
    half: float  # bead half-width, fraction of the photo height
    light: float  # overall brightness
    slope: tuple[float, float]  # lighting gradient along x and y
    colour: tuple[float, float, float]  # colour of the light
    tag: tuple[float, float]  # top-left corner of the paper tag

    def bead_x(self, progress: float | np.ndarray) -> float | np.ndarray:
        """Photo x of the bead point laid at `progress` (0 = weld start, 1 = end)."""
        return self.x0 + progress * (self.x1 - self.x0)

    def bead_y(self, x: float | np.ndarray) -> float | np.ndarray:
        return self.y + self.tilt * (x - 0.5)


@dataclass(frozen=True)
class Session:
    """Per-session nuisance shared by a session's welds."""

    recipe: render.Recipe  # current, voltage, gas, feed, speed, fps, exposure (video gain), seam height, hum, loudness
    noise: float  # video sensor noise (grey levels)
    background: float  # video background level
    arc_x: float  # camera offset: the arc's place in the frame (fraction of the width)
    pool: float  # weld-pool size factor
    flicker: float  # arc brightness flicker (relative std)
    sparks: float  # normal sparks per second (video)
    pops: float  # normal pops per second (audio)
    room: float  # audio background noise level
    mains: float  # machine hum amplitude (50 Hz)
    bead: tuple[float, float, float]  # bead colour
    oxide: float  # normal heat tint beside the bead
    balls: float  # normal spatter balls per photo
    jitter: float  # sensor noise scale
    spikes: float  # normal current spikes per second
    views: tuple[View, ...]


def draw_recipe(rng: np.random.Generator) -> render.Recipe:
    """The welding recipe and camera settings; the same distribution for every class."""
    return render.Recipe(
        current=round(spread(rng, 170, 20)), voltage=round(spread(rng, 21.5, 2.0), 1), gas_bar=round(spread(rng, 4.0, 0.5), 1),
        feed=spread(rng, 8.0, 0.8), speed=int(rng.choice([25, 30])), fps=int(rng.choice([30, 31])),
        exposure=spread(rng, 1.0, 0.3), seam=spread(rng, 0.52, 0.1), tint=(1.0, 1.0, 1.0), hum=spread(rng, 110, 25),
        loudness=spread(rng, 1.0, 0.35),
    )  # fmt: skip


def draw_view(rng: np.random.Generator, view: int) -> View:
    y, half, tilt = spread(rng, 0.5 + 0.03 * (view - 2), 0.1), spread(rng, 0.075, 0.02), spread(rng, 0.0, 0.08)
    return View(
        y=y, tilt=tilt, x0=spread(rng, 0.1, 0.06), x1=spread(rng, 0.9, 0.06), half=half,
        light=spread(rng, 1.0, 0.2), slope=(spread(rng, 0.0, 0.25), spread(rng, 0.0, 0.25)),
        colour=(spread(rng, 1.0, 0.08), 1.0, spread(rng, 1.0, 0.08)), tag=tag_place(rng, y, half, tilt),
    )  # fmt: skip


def tag_place(rng: np.random.Generator, y: float, half: float, tilt: float) -> tuple[float, float]:
    """Top-left corner of the paper tag: anywhere along the plate, above or below the bead, clear of it."""
    width, height = TAG_SIZE
    x = rng.uniform(0.02, 0.98 - width)
    centre = y + tilt * (x + width / 2 - 0.5)
    clearance = abs(tilt) * width / 2 + 2.2 * half
    bands = [(0.03, centre - clearance - height), (centre + clearance, 0.97 - height)]  # where the top edge may go
    fits = [band for band in bands if band[1] >= band[0]]
    low, high = fits[int(rng.integers(len(fits)))] if fits else max(bands, key=lambda band: band[1] - band[0])
    return x, float(np.clip(rng.uniform(low, max(low, high)), 0.0, 1.0 - height))


def draw_session(rng: np.random.Generator) -> Session:
    return Session(
        recipe=draw_recipe(rng), noise=level(rng, 4.0, 2.5), background=level(rng, 25.0, 12.0), arc_x=spread(rng, 0.55, 0.08),
        pool=level(rng, 1.0, 0.2), flicker=level(rng, 0.1, 0.07), sparks=level(rng, 20.0, 18.0), pops=level(rng, 2.0, 1.8),
        room=level(rng, 0.012, 0.01), mains=level(rng, 0.01, 0.01), bead=(spread(rng, 1.0, 0.1), 1.0, spread(rng, 1.0, 0.12)),
        oxide=level(rng, 0.25, 0.2), balls=level(rng, 3.0, 3.0), jitter=level(rng, 1.0, 0.5), spikes=level(rng, 0.4, 0.35),
        views=tuple(draw_view(rng, v) for v in range(VIEWS)),
    )  # fmt: skip


def jitter_view(rng: np.random.Generator, view: View) -> View:
    """The same camera for another weld of the session: the plate lies a little differently."""
    dx, dy = spread(rng, 0.0, 0.02), spread(rng, 0.0, 0.02)
    return replace(view, y=view.y + dy, x0=view.x0 + dx, x1=view.x1 + dx, light=view.light * spread(rng, 1.0, 0.05),
                   tag=(view.tag[0] + spread(rng, 0.0, 0.01), view.tag[1] + spread(rng, 0.0, 0.01)))  # fmt: skip
