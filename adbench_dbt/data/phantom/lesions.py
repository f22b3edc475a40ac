"""Lesions and their boxes: spiculated and circumscribed masses, architectural distortions, calcification clusters.

Sizes are drawn as a box area fraction of the slice (log-uniform over the real range, ~0.1% to a few %), the lesion
is built to fit that box, and the box written to the tables is the bounding box of what was actually drawn in the
focus frame (plus a 1 mm margin), so it always covers the lesion. Contrast is subtle by construction: a mass
lifts the local gland fraction to that of fibroglandular tissue (keeping the texture) plus a small extra
attenuation of 0.04-0.09: a mass is denser than the gland around it, as in real DBT, but its texture and lobulated
margins are kept, so it is not a uniform bright disc; the box still has to be found by modelling tissue.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adbench_dbt.data.phantom.anatomy import Breast, sample_positions
from adbench_dbt.data.phantom.primitives import Blobs, Curves, Mass, Retraction, random_walk_curves

MALIGNANT_KINDS = ("spiculated_mass", "circumscribed_mass", "distortion", "calcifications")
MALIGNANT_WEIGHTS = (0.35, 0.2, 0.2, 0.25)
BENIGN_KINDS = ("circumscribed_mass", "calcifications")
# Calcification clusters are small (a few mm to ~1.5 cm): their boxes stay at the low end of the area range.
MAX_CALCIFICATION_FRACTION = 0.008

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class LesionPlan:
    """What a study's lesion is, decided once so that both views of the breast show the same finding."""

    kind: str
    box_fraction: float  # box area / slice area
    malignant: bool


@dataclass(frozen=True)
class Lesion:
    """A placed lesion: its primitives and its box (x, y, width, height) in the canonical frame."""

    plan: LesionPlan
    box: Box
    focus_frame: int
    curves: tuple[Curves, ...] = ()
    blobs: tuple[Blobs, ...] = ()
    masses: tuple[Mass, ...] = ()
    retractions: tuple[Retraction, ...] = ()

    @property
    def is_distortion(self) -> bool:
        return self.plan.kind == "distortion"


def sample_plan(rng: np.random.Generator, area_range: tuple[float, float], malignant: bool = True) -> LesionPlan:
    """Kind and box size of a lesion; box area fraction log-uniform in `area_range`."""
    kinds, weights = (MALIGNANT_KINDS, MALIGNANT_WEIGHTS) if malignant else (BENIGN_KINDS, (0.6, 0.4))
    kind = str(rng.choice(kinds, p=weights))
    low, high = area_range
    if kind == "calcifications":
        high = max(low, min(high, MAX_CALCIFICATION_FRACTION))
    return LesionPlan(kind=kind, box_fraction=float(np.exp(rng.uniform(np.log(low), np.log(high)))),
                      malignant=malignant)


def place_lesion(plan: LesionPlan, breast: Breast, n_frames: int, spacing_mm: float, rng: np.random.Generator,
                 avoid: tuple[Box, ...] = ()) -> Lesion:
    """Build `plan` at a random position inside the breast (denser tissue preferred), away from `avoid` boxes."""
    rows, cols = breast.geometry.shape
    side = np.sqrt(plan.box_fraction * rows * cols)
    for _ in range(12):
        half = side / 2.0
        admissible = breast.interior(half + 2 * breast.mm)
        border = int(np.ceil(half + 2 * breast.mm))  # clear of the chest wall and the frame edges too
        admissible[:border], admissible[rows - border:], admissible[:, :border] = False, False, False
        for x, y, w, h in avoid:  # keep clear of earlier lesions (with a margin of half a box)
            admissible[max(int(y - half), 0): int(y + h + half), max(int(x - half), 0): int(x + w + half)] = False
        if admissible.any():
            break
        side *= 0.85  # a small breast: shrink the lesion until it fits
    else:
        raise ValueError(f"cannot place a {plan.kind} lesion: the breast has no room left")
    centre = sample_positions(admissible * (0.25 + breast.prior), 1, rng)[0]
    focus = int(rng.integers(1, n_frames - 1)) if n_frames >= 3 else 0
    build = {"spiculated_mass": _spiculated_mass, "circumscribed_mass": _circumscribed_mass,
             "distortion": _distortion, "calcifications": _calcifications}[plan.kind]
    parts = build(plan, centre, side / 2.0, focus, breast.mm, spacing_mm, rng)
    box = _bounding_box(parts, focus, breast.geometry.shape, margin=breast.mm)
    return Lesion(plan=plan, box=box, focus_frame=focus, **parts)


def _depth_sigma(size_mm: float, spacing_mm: float) -> float:
    """Frames over which a lesion of this in-plane size stays visible (DBT depth resolution is poor)."""
    return max(size_mm / 2.0 / spacing_mm, 0.9)


def _mass(centre: np.ndarray, radius: float, focus: int, rng: np.random.Generator, *, lobes: tuple[float, float],
          edge: float, density: float, extra: float, depth_sigma: float, elongation: float) -> Mass:
    """A lobulated mass: low orders give the lobes, orders up to 12 a micro-lobulated, never circular outline."""
    orders = np.arange(2, 13)
    harmonics = np.stack([orders, rng.uniform(*lobes, len(orders)) * 2.0 / orders ** 1.2,
                          rng.uniform(0, 2 * np.pi, len(orders))], axis=1)
    return Mass(center=(float(centre[0]), float(centre[1])), radius=radius, elongation=elongation,
                angle=rng.uniform(0, np.pi), harmonics=harmonics, edge=edge, density=density, extra=extra,
                focus=float(focus), depth_sigma=depth_sigma)


def _radiating_lines(centre: np.ndarray, count: int, inner: float, length: np.ndarray, focus: int, mm: float,
                     rng: np.random.Generator, amplitude: tuple[float, float]) -> Curves:
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    starts = centre + inner * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return Curves(points=random_walk_curves(starts, angles, length, 0.06, rng, n_points=10),
                  amplitude=rng.uniform(*amplitude, count), width_px=max(0.5 * mm, 1.0),
                  focus=np.full(count, float(focus)), depth_sigma=rng.uniform(0.8, 1.4, count),
                  drift=rng.normal(0, 0.3 * mm, (count, 2)), taper=True)


def _spiculated_mass(plan, centre, half, focus, mm, spacing_mm, rng) -> dict:
    radius = half * rng.uniform(0.4, 0.55)
    count = int(rng.integers(8, 20))
    spicules = _radiating_lines(centre, count, 0.7 * radius, (half - radius) / 0.6 * rng.uniform(0.7, 1.0, count),
                                focus, mm, rng, (0.10, 0.16))
    core = _mass(centre, radius, focus, rng, lobes=(0.04, 0.12), edge=0.35 * radius, density=rng.uniform(0.55, 0.85),
                 extra=rng.uniform(0.06, 0.09), depth_sigma=_depth_sigma(2 * radius / mm, spacing_mm),
                 elongation=rng.uniform(1.0, 1.3))
    return {"curves": (spicules,), "masses": (core,)}


def _circumscribed_mass(plan, centre, half, focus, mm, spacing_mm, rng) -> dict:
    elongation = rng.uniform(1.0, 1.5)
    radius = half * rng.uniform(0.7, 0.85) / elongation
    # benign: well defined; malignant: partly indistinct and more lobulated
    edge = max(rng.uniform(0.6, 1.5) * mm, 0.8) if not plan.malignant else max(rng.uniform(1.0, 3.0) * mm, 1.0)
    lobes = (0.04, 0.1) if not plan.malignant else (0.06, 0.16)
    extra = rng.uniform(0.06, 0.09) if plan.malignant else rng.uniform(0.04, 0.07)
    core = _mass(centre, radius, focus, rng, lobes=lobes, edge=edge, density=rng.uniform(0.5, 0.8), extra=extra,
                 depth_sigma=_depth_sigma(2 * radius * elongation / mm, spacing_mm), elongation=elongation)
    return {"masses": (core,)}


def _distortion(plan, centre, half, focus, mm, spacing_mm, rng) -> dict:
    count = int(rng.integers(10, 22))
    lines = _radiating_lines(centre, count, rng.uniform(0.05, 0.2) * half,
                             half * rng.uniform(0.6, 0.95, count), focus, mm, rng, (0.10, 0.16))
    pull = Retraction(center=(float(centre[0]), float(centre[1])), radius=0.45 * half,
                      strength=rng.uniform(0.35, 0.55), focus=float(focus),
                      depth_sigma=float(lines.depth_sigma.mean()))  # seen over the same few frames as its lines
    return {"curves": (lines,), "retractions": (pull,)}


def _calcifications(plan, centre, half, focus, mm, spacing_mm, rng) -> dict:
    count = int(rng.integers(6, 30)) if plan.malignant else int(rng.integers(5, 12))
    spread = half * (0.45 if plan.malignant else 0.35)
    offsets = np.clip(rng.normal(0, spread, (count, 2)), -0.8 * half, 0.8 * half)
    if plan.malignant:  # pleomorphic: varied size, some linear/elongated
        sigma_x = np.maximum(rng.uniform(0.1, 0.3, count) * mm, 0.45)
        sigma_y = sigma_x * rng.choice([1.0, 1.0, 1.8, 2.5], count)
        amplitude = rng.uniform(0.15, 0.4, count) * _subpixel_gain(mm)
    else:  # round, regular
        sigma_x = sigma_y = np.full(count, max(rng.uniform(0.25, 0.4) * mm, 0.5))
        amplitude = rng.uniform(0.25, 0.4, count) * _subpixel_gain(mm)
    blobs = Blobs(centers=centre + offsets, sigma_x=sigma_x, sigma_y=sigma_y, amplitude=amplitude,
                  focus=np.clip(focus + rng.normal(0, 0.8, count), 0, None), depth_sigma=np.full(count, 0.8),
                  smear_px_per_frame=1.0 * mm)
    parts: dict = {"blobs": (blobs,)}
    if plan.malignant and rng.random() < 0.4:  # often within a faint, ill-defined density
        parts["masses"] = (_mass(centre, 0.6 * half, focus, rng, lobes=(0.05, 0.15), edge=0.4 * half, density=0.5,
                                 extra=0.04, depth_sigma=_depth_sigma(half / mm, spacing_mm), elongation=1.0),)
    return parts


def _subpixel_gain(mm: float) -> float:
    """Brightness boost for calcifications far smaller than a pixel (frames well below native resolution).

    At 2 px/mm and above they keep their physical contrast; below, partial-volume averaging would erase them,
    which would leave low-resolution presets with calcification clusters nobody could find.
    """
    return float(np.clip(2.0 / mm, 1.0, 3.0))


def _bounding_box(parts: dict, focus: int, shape: tuple[int, int], margin: float) -> Box:
    """Box of what is visible in the focus frame: mass cores, the inner 60% of lines, every calcification."""
    points = []
    for mass in parts.get("masses", ()):
        profile = mass.profile(focus, shape)
        if profile is not None:
            (ys, xs), member = profile
            rr, cc = np.nonzero(member > 0.3)
            points.append(np.stack([cc + xs.start, rr + ys.start], axis=1))
    for curves in parts.get("curves", ()):
        keep = int(np.ceil(0.6 * curves.points.shape[1]))
        points.append(curves.points[:, :keep].reshape(-1, 2))
    for blobs in parts.get("blobs", ()):
        points.append(blobs.centers)
    for retraction in parts.get("retractions", ()):
        points.append(np.asarray([retraction.center]))
    xy = np.concatenate(points)
    x0, y0 = np.floor(xy.min(0) - margin).astype(int)
    x1, y1 = np.ceil(xy.max(0) + margin).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, shape[1] - 1), min(y1, shape[0] - 1)
    return int(x0), int(y0), int(x1 - x0 + 1), int(y1 - y0 + 1)
