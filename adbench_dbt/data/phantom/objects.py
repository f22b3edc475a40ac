"""Normal structures and benign findings present in every kind of volume.

Vessels, ducts and Cooper's ligaments give the linear patterns that architectural distortions must be told apart
from; clips, skin markers, calcified vessels, benign calcifications and lymph nodes put bright and mass-like
objects into NORMAL volumes, so that "bright" or "round" is not a shortcut to "cancer".
"""
from __future__ import annotations

import numpy as np

from adbench_dbt.data.phantom.anatomy import Breast, sample_positions
from adbench_dbt.data.phantom.primitives import Blobs, Curves, Mass, random_walk_curves


def _oblique_drift(count: int, mm: float, spacing_mm: float, rng: np.random.Generator,
                   slope: tuple[float, float]) -> np.ndarray:
    """Lateral shift per frame of structures crossing the slices at a random angle (slope in mm per mm depth)."""
    angle = rng.uniform(0, 2 * np.pi, count)
    size = rng.uniform(*slope, count) * spacing_mm * mm
    return np.stack([np.cos(angle) * size, np.sin(angle) * size], axis=1)


def vessels(breast: Breast, n_frames: int, spacing_mm: float, rng: np.random.Generator) -> list[Curves]:
    """Blood vessels: a few long, meandering tubes running from the chest wall toward the nipple."""
    mm, geometry = breast.mm, breast.geometry
    depth = float(geometry.extent.max())
    out = []
    for width_mm, count, amplitude in ((2.2, rng.integers(2, 5), (0.06, 0.1)), (1.0, rng.integers(3, 8),
                                                                               (0.04, 0.07))):
        start_zone = breast.mask & (np.arange(geometry.shape[1])[None, :] < 0.35 * depth)
        starts = sample_positions(start_zone, int(count), rng)
        out.append(Curves(
            points=random_walk_curves(starts, rng.normal(0.0, 0.45, count), rng.uniform(0.35, 0.8, count) * depth,
                                      0.09, rng),
            amplitude=rng.uniform(*amplitude, count), width_px=max(width_mm * mm, 1.0),
            focus=rng.uniform(0, n_frames - 1, count), depth_sigma=rng.uniform(1.5, 3.5, count) * 3.0 / spacing_mm,
            drift=_oblique_drift(int(count), mm, spacing_mm, rng, (0.1, 0.4))))
    return out


def ducts(breast: Breast, n_frames: int, spacing_mm: float, rng: np.random.Generator) -> Curves:
    """Ducts and trabeculae converging on the nipple: faint lines through the glandular region."""
    mm, geometry = breast.mm, breast.geometry
    apex_row = float(np.argmax(geometry.extent))
    apex = np.array([geometry.extent.max() - 4 * mm, apex_row])
    count = int(rng.integers(6, 14))
    starts = sample_positions(breast.interior(4 * mm) * breast.prior, count, rng)
    toward = np.arctan2(apex[1] - starts[:, 1], apex[0] - starts[:, 0])
    lengths = 0.7 * np.hypot(*(apex - starts).T)
    return Curves(points=random_walk_curves(starts, toward + rng.normal(0, 0.1, count), lengths, 0.05, rng),
                  amplitude=rng.uniform(0.025, 0.05, count), width_px=max(0.8 * mm, 0.8),
                  focus=rng.uniform(0, n_frames - 1, count),
                  depth_sigma=rng.uniform(1.0, 2.0, count) * 3.0 / spacing_mm,
                  drift=_oblique_drift(count, mm, spacing_mm, rng, (0.1, 0.5)))


def ligaments(breast: Breast, n_frames: int, spacing_mm: float, rng: np.random.Generator) -> Curves:
    """Cooper's ligaments: thin arcs in the subcutaneous fat, visible where they cut the slice."""
    mm = breast.mm
    zone = (breast.distance > 3 * mm) & (breast.distance < 25 * mm) & ~breast.pectoral
    count = int(np.clip(breast.mask.sum() / (30 * mm) ** 2, 8, 40) * rng.uniform(0.6, 1.0))
    starts = sample_positions(zone * (1.0 - 0.7 * breast.prior), count, rng)
    return Curves(points=random_walk_curves(starts, rng.uniform(0, 2 * np.pi, count),
                                            rng.uniform(8, 30, count) * mm, 0.12, rng),
                  amplitude=rng.uniform(0.03, 0.07, count), width_px=max(0.4 * mm, 0.7),
                  focus=rng.uniform(0, n_frames - 1, count),
                  depth_sigma=rng.uniform(0.6, 1.2, count) * 3.0 / spacing_mm,
                  drift=_oblique_drift(count, mm, spacing_mm, rng, (0.3, 1.0)))


def benign_calcifications(breast: Breast, n_frames: int, rng: np.random.Generator) -> list[Blobs]:
    """Scattered punctate calcifications anywhere in the breast, and sometimes a coarse 'popcorn' one."""
    mm, out = breast.mm, []
    count = int(rng.poisson(8)) if rng.random() < 0.75 else 0
    if count:
        centres = sample_positions(breast.interior(2 * mm), count, rng)
        sigma = np.maximum(rng.uniform(0.12, 0.3, count) * mm, 0.45)
        out.append(Blobs(centers=centres, sigma_x=sigma, sigma_y=sigma, amplitude=rng.uniform(0.12, 0.35, count),
                         focus=rng.uniform(0, n_frames - 1, count), depth_sigma=np.full(count, 0.7),
                         smear_px_per_frame=1.0 * mm))
    if rng.random() < 0.25:
        centre = sample_positions(breast.interior(5 * mm), 1, rng)[0]
        parts = int(rng.integers(3, 7))
        sigma = np.maximum(rng.uniform(0.5, 1.1, parts) * mm, 0.6)
        out.append(Blobs(centers=centre + rng.normal(0, 1.2 * mm, (parts, 2)), sigma_x=sigma, sigma_y=sigma,
                         amplitude=rng.uniform(0.35, 0.6, parts), focus=np.full(parts, rng.uniform(0, n_frames - 1)),
                         depth_sigma=np.full(parts, 1.2), smear_px_per_frame=1.5 * mm))
    return out


def calcified_vessel(vessel: Curves, index: int, breast: Breast, rng: np.random.Generator) -> Blobs:
    """Vascular calcification: dashed 'tram tracks' along both walls of one vessel."""
    points = vessel.points[index]
    segment = np.diff(points, axis=0)
    normal = np.stack([-segment[:, 1], segment[:, 0]], axis=1) / (np.linalg.norm(segment, axis=1, keepdims=True)
                                                                + 1e-9)
    start = int(rng.integers(0, len(segment) // 2))
    run = slice(start, start + int(rng.integers(len(segment) // 3, len(segment) - start + 1)))
    centres = np.concatenate([points[:-1][run] + normal[run] * vessel.width_px / 2,
                              points[:-1][run] - normal[run] * vessel.width_px / 2])
    centres = centres[rng.random(len(centres)) < 0.7]
    count = len(centres)
    sigma = np.full(count, max(0.35 * breast.mm, 0.5))
    return Blobs(centers=centres, sigma_x=sigma, sigma_y=sigma, amplitude=rng.uniform(0.2, 0.35, count),
                 focus=np.full(count, vessel.focus[index]), depth_sigma=np.full(count, vessel.depth_sigma[index]),
                 smear_px_per_frame=1.0 * breast.mm)


def biopsy_clip(breast: Breast, n_frames: int, rng: np.random.Generator) -> Blobs:
    """A metal marker clip: a short bent bar, saturating, with a long out-of-plane smear."""
    mm = breast.mm
    centre = sample_positions(breast.interior(8 * mm), 1, rng)
    parts = 7
    bar = random_walk_curves(centre, rng.uniform(0, 2 * np.pi, 1), np.array([rng.uniform(3, 5) * mm]), 0.35, rng,
                             n_points=parts)[0]
    sigma = np.full(parts, max(0.35 * mm, 0.5))
    return Blobs(centers=bar, sigma_x=sigma, sigma_y=sigma, amplitude=np.full(parts, 0.9),
                 focus=np.full(parts, rng.uniform(0, n_frames - 1)), depth_sigma=np.full(parts, 2.0),
                 smear_px_per_frame=2.0 * mm)


def skin_marker(breast: Breast, n_frames: int, rng: np.random.Generator) -> Blobs:
    """A radiopaque skin marker (BB) on the skin surface: in focus on an outer frame."""
    mm = breast.mm
    centre = sample_positions((breast.distance > 0.5 * mm) & (breast.distance < 2 * mm) & ~breast.pectoral, 1, rng)
    sigma = np.full(1, max(0.9 * mm, 0.8))
    return Blobs(centers=centre, sigma_x=sigma, sigma_y=sigma, amplitude=np.full(1, 0.9),
                 focus=np.full(1, float(rng.choice([0, n_frames - 1]))), depth_sigma=np.full(1, 1.5),
                 smear_px_per_frame=2.0 * mm)


def lymph_node(breast: Breast, n_frames: int, rng: np.random.Generator) -> Mass:
    """Intramammary lymph node: a small, sharp, oval density with a fatty hilum (a benign look-alike of a mass)."""
    mm, geometry = breast.mm, breast.geometry
    upper = np.arange(geometry.shape[0])[:, None] < geometry.shape[0] * 0.6
    centre = sample_positions(breast.interior(8 * mm) & upper, 1, rng)[0]
    return Mass(center=(float(centre[0]), float(centre[1])), radius=rng.uniform(2.5, 5.0) * mm,
                elongation=rng.uniform(1.3, 1.8), angle=rng.uniform(0, np.pi), harmonics=np.zeros((0, 3)),
                edge=max(0.4 * mm, 0.6), density=rng.uniform(0.55, 0.8), extra=rng.uniform(0.0, 0.03),
                focus=rng.uniform(0, n_frames - 1), depth_sigma=1.2, hilum=True)


def normal_structures(breast: Breast, n_frames: int, spacing_mm: float, rng: np.random.Generator,
                      findings_rate: float = 1.0) -> tuple[list[Curves], list[Blobs], list[Mass]]:
    """Everything a lesion-free volume contains. `findings_rate` scales the chance of benign findings."""
    curves = vessels(breast, n_frames, spacing_mm, rng)
    curves += [ducts(breast, n_frames, spacing_mm, rng), ligaments(breast, n_frames, spacing_mm, rng)]
    blobs = benign_calcifications(breast, n_frames, rng)
    masses = []
    if rng.random() < 0.3 * findings_rate:
        big = curves[0]
        blobs.append(calcified_vessel(big, int(rng.integers(len(big.points))), breast, rng))
    if rng.random() < 0.15 * findings_rate:
        blobs.append(biopsy_clip(breast, n_frames, rng))
    if rng.random() < 0.12 * findings_rate:
        blobs.append(skin_marker(breast, n_frames, rng))
    if rng.random() < 0.3 * findings_rate:
        masses.append(lymph_node(breast, n_frames, rng))
    return curves, blobs, masses
