"""Render one DBT volume in the canonical orientation (chest wall on the left), display values in [0, 1].

Tissue is a two-compartment model (Bakic et al.; Burgess): a soft threshold of power-law noise, shifted by a smooth
fibroglandular density field, gives the fraction of glandular tissue per pixel; fat and gland get their own
attenuation. Lesions act on that fraction (masses raise the smooth density before the threshold, distortions warp
it) before the linear structures, the skin, the thickness fall-off, small dense objects, quantum noise and the
reconstruction blur are applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

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
PARENCHYMA_GRID_MM = 1.0
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
    # Tissue never reaches past the nipple: render only the columns up to it (plus room for the blurs).
    cols = min(spec.shape[1], int(np.ceil(breast.geometry.extent.max())) + 8)
    breast, work = breast.cropped(cols), replace(spec, shape=(spec.shape[0], cols))
    parenchyma = _parenchyma(breast, work, scene.masses, anatomy_rng)
    muscle = (smooth_depth_noise(work.shape, work.n_frames, anatomy_rng, correlation_frames=3.0)
              if breast.pectoral.any() else None)  # texture of the pectoral muscle (MLO views only)
    frames = np.zeros((spec.n_frames, *spec.shape), np.float32)
    frames[:, :, :cols] = _render_frames(breast, scene, work, parenchyma, muscle, noise_rng)
    return RenderedVolume(frames=frames, lesions=tuple(lesions))


def _seed_sequence(seed: np.random.SeedSequence | int | list[int]) -> np.random.SeedSequence:
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


@dataclass(frozen=True)
class _Parenchyma:
    """The fields the gland fraction is made of (F x H x W each)."""

    texture: np.ndarray  # unit-variance power-law texture
    density: np.ndarray  # smooth fibroglandular density: the soft threshold's argument, less the texture
    lobules: np.ndarray  # band-passed field whose zero crossings are the septa


def _parenchyma(breast: Breast, spec: VolumeSpec, masses: list[Mass], rng: np.random.Generator) -> _Parenchyma:
    per_frame = 3.0 / spec.spacing_mm
    # Synthesised on a grid of ~1 mm (at most 4 pixels): finer structure of a beta = 3 field carries under 1% of
    # its variance, and lies below the reconstruction blur.
    grid = int(np.clip(breast.mm * PARENCHYMA_GRID_MM, 1, 4))
    texture = depth_noise(spec.shape, spec.n_frames, PARENCHYMA_BETA, rng, correlation_frames=1.5 * per_frame,
                          factor=grid)
    density = smooth_depth_noise(spec.shape, spec.n_frames, rng, correlation_frames=4.0 * per_frame)
    lobules = band_noise(spec.shape, spec.n_frames, 18.0 * breast.mm, rng, correlation_frames=1.0 * per_frame)
    fat_margin = np.clip(breast.distance / np.float32(15 * breast.mm), 0.0, 1.0)  # subcutaneous fat layer
    density *= np.float32(0.6)
    density += np.float32(1.8) * breast.prior * fat_margin - np.float32(1.5 - 1.5 * spec.density)
    _raise_masses(density, masses)
    return _Parenchyma(texture=texture, density=density, lobules=lobules)


def _gland_fraction(parenchyma: _Parenchyma, frame: int) -> np.ndarray:
    """Fraction of fibroglandular tissue in one frame (H x W), mostly in [0, 1].

    A soft threshold of texture + smooth density. The zero crossings of the band-passed lobule field form closed
    curves, which become the thin fibrous septa around fat lobules (the 'Swiss cheese' look of fatty regions).
    Computed a frame at a time and in place, so that the buffers stay in cache.
    """
    texture = parenchyma.texture[frame]
    fraction = parenchyma.density[frame] + texture
    fraction *= np.float32(-1.0 / SOFTNESS)
    np.exp(fraction, out=fraction)
    fraction += np.float32(1.0)
    np.reciprocal(fraction, out=fraction)  # sigmoid((texture + density) / SOFTNESS)
    septa = np.square(parenchyma.lobules[frame])
    septa *= np.float32(-100.0)
    np.exp(septa, out=septa)  # exp(-(lobules / 0.1)^2): 1 on the zero crossings
    septa *= np.float32(0.35)
    septa *= np.float32(1.0) - fraction
    fraction += septa
    # Fine texture inside both compartments (ducts, lobules, stroma below the compartment scale).
    fraction += np.float32(0.12) * texture
    return fraction


def _raise_masses(density: np.ndarray, masses: list[Mass]) -> None:
    """Masses are dense tissue: inside each, the smooth density (before the soft threshold) is raised to the
    mass's own, never lowered.

    The texture is added afterwards and the threshold saturates, so a mass keeps the heterogeneous look of
    fibroglandular tissue and is never denser than the breast's densest gland; only its small `extra`
    attenuation (added later) goes beyond. The raise is measured once at the focus frame, so the mass fades
    steadily away from it.
    """
    n_frames, shape = density.shape[0], density.shape[1:]
    for mass in masses:
        where = mass.patch(shape)
        if where is None:
            continue
        focus = int(np.clip(round(mass.focus), 0, n_frames - 1))
        target = np.float32(SOFTNESS * np.log(mass.density / (1.0 - mass.density)))  # threshold argument
        raise_by = np.maximum(target - density[focus][where], np.float32(0.0))
        for z in range(n_frames):
            profile = mass.profile(z, shape)
            if profile is not None:
                density[z][where] += profile[1] * raise_by


@dataclass(frozen=True)
class _Outline:
    """What depends only on the slice's outline: shared by the frames at the same distance from the centre."""

    mask: np.ndarray  # bool, tissue
    thickness: np.ndarray  # float32, relative signal of the thinning edge
    skin: np.ndarray  # float32, attenuation of the skin band


def _outlines(breast: Breast, offsets: np.ndarray) -> list[_Outline]:
    found: dict[float, _Outline] = {}
    for offset in np.abs(offsets):
        key = round(float(offset), 6)
        if key not in found:
            mask = breast_mask(breast.geometry, key)
            distance = distance_to_skin(mask)
            found[key] = _Outline(mask=mask, thickness=thickness_profile(distance, breast.geometry),
                                  skin=np.float32(SKIN) * skin_line(distance, breast.geometry))
    return [found[round(float(offset), 6)] for offset in np.abs(offsets)]


def _render_frames(breast: Breast, scene: Scene, spec: VolumeSpec, parenchyma: _Parenchyma,
                   muscle: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Display values of every frame (F x H x W) from its gland fraction."""
    frames = np.empty((spec.n_frames, *spec.shape), np.float32)
    outlines = _outlines(breast, depth_offsets(spec.n_frames, spec.spacing_mm))
    if muscle is not None:
        pectoral = cv2.GaussianBlur(breast.pectoral.astype(np.float32), (0, 0), max(breast.mm, 0.6))
    for z, outline in enumerate(outlines):
        tissue = _gland_fraction(parenchyma, z)
        for retraction in scene.retractions:
            retraction.warp(tissue, z)
        tissue *= np.float32(GLAND - FAT)
        tissue += np.float32(FAT)
        for mass in scene.masses:
            profile = mass.profile(z, spec.shape)
            if profile is not None:
                tissue[profile[0]] += np.float32(mass.extra) * profile[1]
        for curves in scene.curves:
            curves.draw(tissue, z)
        tissue *= outline.thickness
        tissue += outline.skin
        if muscle is not None:
            tissue += pectoral * (np.float32(MUSCLE) + np.float32(0.03) * muscle[z] - tissue)
        for blobs in scene.blobs:
            blobs.draw(tissue, z)
        tissue *= outline.mask
        noise = rng.standard_normal(spec.shape, dtype=np.float32)
        noise *= np.sqrt(np.maximum(tissue, 0) * np.float32(1.0 / 0.5))
        noise *= np.float32(QUANTUM_NOISE)
        tissue += noise
        cv2.GaussianBlur(tissue, (0, 0), RECONSTRUCTION_BLUR_PX, dst=frames[z])
    return np.clip(frames, 0.0, 1.0, out=frames)
