"""Render one DBT volume in the canonical orientation (chest wall on the left), display values in [0, 1].

Tissue is a two-compartment model (Bakic et al.; Burgess): a soft threshold of power-law noise, shifted by a smooth
fibroglandular density field, gives the fraction of glandular tissue per pixel; fat and gland get their own
attenuation. Lesions act on that fraction (masses raise it, distortions warp it) before the linear structures, the
skin, the thickness fall-off, small dense objects, quantum noise and the reconstruction blur are applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from adbench_dbt.data.phantom.anatomy import (Breast, breast_mask, build_breast, depth_offsets, distance_to_skin,
                                              sample_geometry, skin_line, thickness_profile)
from adbench_dbt.data.phantom.lesions import Lesion, LesionPlan, place_lesion
from adbench_dbt.data.phantom.noise import band_noise, depth_noise, smooth_depth_noise
from adbench_dbt.data.phantom.objects import normal_structures
from adbench_dbt.data.phantom.primitives import Blobs, Curves, Mass, Retraction

FAT, GLAND, MUSCLE, SKIN = 0.34, 0.64, 0.7, 0.12
PARENCHYMA_BETA = 3.0
QUANTUM_NOISE = 0.05  # per-pixel std before the reconstruction blur, at a display value of 0.5
RECONSTRUCTION_BLUR_PX = 0.7
SOFTNESS = 0.5


@dataclass(frozen=True)
class VolumeSpec:
    """Everything that decides a volume, besides its random stream."""

    shape: tuple[int, int]
    n_frames: int
    view: str  # lcc, lmlo, rcc, rmlo
    spacing_mm: float = 3.0
    density: float = 0.5  # 0 = almost entirely fatty, 1 = extremely dense
    lesions: tuple[LesionPlan, ...] = ()
    findings_rate: float = 1.0  # scales benign findings (actionable volumes get more)


@dataclass(frozen=True)
class RenderedVolume:
    frames: np.ndarray  # float32 F x H x W, canonical orientation, display values (background 0)
    lesions: tuple[Lesion, ...] = field(default=())


@dataclass(frozen=True)
class Scene:
    curves: list[Curves]
    blobs: list[Blobs]
    masses: list[Mass]
    retractions: list[Retraction]


def render_volume(spec: VolumeSpec, seed: np.random.SeedSequence | int | list[int]) -> RenderedVolume:
    """Sample the anatomy, findings and lesions of `spec` and render every frame.

    Anatomy, lesions and quantum noise draw from separate streams of `seed`, so the same volume rendered without
    its lesions is pixel-identical everywhere except where a lesion was drawn (tests compare the two).
    """
    anatomy_rng, lesion_rng, noise_rng = (np.random.default_rng(s) for s in _seed_sequence(seed).spawn(3))
    view_position = spec.view[1:].upper()
    breast = build_breast(sample_geometry(spec.shape, view_position, anatomy_rng))
    curves, blobs, masses = normal_structures(breast, spec.n_frames, spec.spacing_mm, anatomy_rng,
                                              spec.findings_rate)
    lesions: list[Lesion] = []
    for plan in spec.lesions:
        lesions.append(place_lesion(plan, breast, spec.n_frames, spec.spacing_mm, lesion_rng,
                                    avoid=tuple(lesion.box for lesion in lesions)))
    scene = Scene(curves=curves + [c for les in lesions for c in les.curves],
                  blobs=blobs + [b for les in lesions for b in les.blobs],
                  masses=masses + [m for les in lesions for m in les.masses],
                  retractions=[r for les in lesions for r in les.retractions])
    gland = _gland_fraction(breast, spec, anatomy_rng)
    muscle = smooth_depth_noise(spec.shape, spec.n_frames, anatomy_rng, correlation_frames=3.0)
    frames = _render_frames(breast, scene, spec, gland, muscle, noise_rng)
    return RenderedVolume(frames=frames, lesions=tuple(lesions))


def _seed_sequence(seed: np.random.SeedSequence | int | list[int]) -> np.random.SeedSequence:
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


def _gland_fraction(breast: Breast, spec: VolumeSpec, rng: np.random.Generator) -> np.ndarray:
    """Fraction of fibroglandular tissue per pixel and frame (F x H x W) in [0, 1].

    The zero crossings of a band-passed field form closed curves, which become the thin fibrous septa around
    fat lobules (the 'Swiss cheese' look of fatty regions).
    """
    per_frame = 3.0 / spec.spacing_mm
    texture = depth_noise(spec.shape, spec.n_frames, PARENCHYMA_BETA, rng, correlation_frames=1.5 * per_frame)
    coarse = smooth_depth_noise(spec.shape, spec.n_frames, rng, correlation_frames=4.0 * per_frame)
    lobules = band_noise(spec.shape, spec.n_frames, 18.0 * breast.mm, rng, correlation_frames=1.0 * per_frame)
    fat_margin = np.clip(breast.distance / np.float32(15 * breast.mm), 0.0, 1.0)  # subcutaneous fat layer
    level = (np.float32(1.8) * breast.prior * fat_margin + np.float32(0.6) * coarse
             - np.float32(1.5 - 1.5 * spec.density))
    fraction = 1.0 / (1.0 + np.exp(-(texture * np.float32(1.0) + level) / np.float32(SOFTNESS)))
    septa = np.exp(-(lobules / np.float32(0.1)) ** 2)
    fraction += np.float32(0.35) * septa * (1.0 - fraction)
    # Fine texture inside both compartments (ducts, lobules, stroma below the compartment scale).
    return fraction + np.float32(0.12) * texture


def _render_frames(breast: Breast, scene: Scene, spec: VolumeSpec, gland: np.ndarray, muscle: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    frames = np.empty((spec.n_frames, *spec.shape), np.float32)
    offsets = depth_offsets(spec.n_frames, spec.spacing_mm)
    pectoral = cv2.GaussianBlur(breast.pectoral.astype(np.float32), (0, 0), max(breast.mm, 0.6))
    for z in range(spec.n_frames):
        fraction = gland[z]
        for retraction in scene.retractions:
            retraction.warp(fraction, z)
        tissue = np.float32(FAT) + np.float32(GLAND - FAT) * fraction
        for mass in scene.masses:
            profile = mass.profile(z, spec.shape)
            if profile is not None:
                where, member = profile
                dense = np.float32(FAT) + np.float32(GLAND - FAT) * np.maximum(fraction[where], 0.9 * member)
                tissue[where] = dense + np.float32(mass.extra) * member
        for curves in scene.curves:
            curves.draw(tissue, z)
        mask = breast_mask(breast.geometry, float(offsets[z]))
        distance = distance_to_skin(mask)
        tissue *= thickness_profile(distance, breast.geometry)
        tissue += np.float32(SKIN) * skin_line(distance, breast.geometry)
        tissue += pectoral * (np.float32(MUSCLE) + np.float32(0.03) * muscle[z] - tissue)
        for blobs in scene.blobs:
            blobs.draw(tissue, z)
        tissue *= mask
        noise = rng.standard_normal(spec.shape, dtype=np.float32)
        tissue += np.float32(QUANTUM_NOISE) * np.sqrt(np.maximum(tissue, 0) / np.float32(0.5)) * noise
        frames[z] = cv2.GaussianBlur(tissue, (0, 0), RECONSTRUCTION_BLUR_PX)
    return np.clip(frames, 0.0, 1.0, out=frames)
