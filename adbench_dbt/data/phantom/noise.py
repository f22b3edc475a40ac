"""Anatomical noise: Gaussian random fields with a power-law (1/f^beta) spectrum, slowly varying through depth.

Breast parenchyma in mammography and DBT is well described by a power-law spectrum with beta close to 3 (Burgess
2001; Engstrom 2009), which is why it defeats simple detectors: a lesion must be found against background that
looks like itself at every scale. Depth variation uses an angle interpolation between independent fields
(cos(t) A + sin(t) B), which keeps every frame exactly stationary with the same spectrum and unit variance while
adjacent frames stay strongly correlated, like neighbouring reconstructed slices.

Speed: white noise is drawn directly as its spectrum (no forward FFT), every key field is transformed once and the
frames are mixed from the keys in image space (one small matrix product), and bands with nothing above a coarser
grid's Nyquist frequency are synthesised on that grid and upsampled.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from scipy import fft

Gain = Callable[[np.ndarray], np.ndarray]  # amplitude spectrum as a function of |f| (cycles per pixel)


def radial_frequency(shape: tuple[int, int], spacing: float = 1.0) -> np.ndarray:
    """|f| in cycles per pixel on the rfft2 grid of an image of `shape` sampled every `spacing` pixels."""
    fy = np.fft.fftfreq(shape[0], d=spacing).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1], d=spacing).astype(np.float32)[None, :]
    return np.sqrt(fy * fy + fx * fx)


def power_law_gain(f: np.ndarray, beta: float, cutoff: float = 0.0) -> np.ndarray:
    """Amplitude |f|^(-beta/2), flattened below `cutoff` cycles/pixel (DC is zeroed by the synthesis)."""
    return np.maximum(f, np.float32(max(cutoff, 1e-6))) ** np.float32(-beta / 2.0)


def _normalise(fields: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per field, estimated on every 4th row and column (the fields are smooth at that
    scale, and full-size statistics would be the costliest pass of the synthesis)."""
    sample = fields[..., ::4, ::4] if min(fields.shape[-2:]) >= 64 else fields
    fields -= sample.mean(axis=(-2, -1), keepdims=True)
    fields *= np.float32(1.0) / (sample.std(axis=(-2, -1), keepdims=True) + np.float32(1e-12))
    return fields


def _white_spectra(rng: np.random.Generator, count: int, shape: tuple[int, int]) -> np.ndarray:
    """Spectra (count x rfft2 grid, complex64) of independent white-noise images, drawn without an FFT."""
    pairs = rng.standard_normal((count, shape[0], shape[1] // 2 + 1, 2), dtype=np.float32)
    spectra = pairs.view(np.complex64)[..., 0]
    # The zero- and Nyquist-frequency columns of a real image's spectrum are Hermitian: symmetrise them so that
    # they keep their full power through the inverse transform.
    mirror = -np.arange(shape[0]) % shape[0]
    for column in {0, shape[1] // 2} if shape[1] % 2 == 0 else {0}:
        line = spectra[:, :, column]
        spectra[:, :, column] = (line + np.conj(line[:, mirror])) * np.float32(np.sqrt(0.5))
    return spectra


def _grid(shape: tuple[int, int], factor: int) -> tuple[int, int]:
    return -(-shape[0] // factor), -(-shape[1] // factor)


def _fields(gain: Gain, shape: tuple[int, int], count: int, rng: np.random.Generator, factor: int = 1) -> np.ndarray:
    """`count` fields with amplitude spectrum `gain`, on a grid `factor` times coarser than `shape` (not upsampled).

    The unnormalised inverse transform makes a band's variance independent of the grid it is synthesised on, so
    bands made on different grids add up with the right relative power.
    """
    small = _grid(shape, factor)
    spectrum = gain(radial_frequency(small, spacing=factor)).astype(np.float32)
    spectrum[0, 0] = 0.0
    white = _white_spectra(rng, count, small)
    white *= spectrum
    # one thread: generate_phantom parallelises over volumes with processes
    return fft.irfft2(white, s=small, norm="forward", workers=1).astype(np.float32, copy=False)


def _resize(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if frames.shape[1:] == shape:
        return frames
    out = np.empty((len(frames), *shape), np.float32)
    for frame, target in zip(frames, out):
        cv2.resize(frame, (shape[1], shape[0]), dst=target, interpolation=cv2.INTER_CUBIC)
    return out


def _depth_weights(n_frames: int, frames_per_key: float) -> np.ndarray:
    """(n_frames x n_keys) mixing weights: frame z is cos(t) key[i] + sin(t) key[i + 1], moving on every frame."""
    position = np.arange(n_frames, dtype=np.float64) / frames_per_key
    index = np.floor(position).astype(int)
    angle = (position - index) * (np.pi / 2.0)
    weights = np.zeros((n_frames, int(index[-1]) + 2), np.float32)
    weights[np.arange(n_frames), index] = np.cos(angle)
    weights[np.arange(n_frames), index + 1] = np.sin(angle)
    return weights


def _depth_field(gain: Gain, shape: tuple[int, int], n_frames: int, frames_per_key: float,
                 rng: np.random.Generator, factor: int = 1) -> np.ndarray:
    """Frames moving from one independent key field to the next every `frames_per_key`, on the grid of `factor`."""
    weights = _depth_weights(n_frames, frames_per_key)
    # einsum, not a BLAS product: BLAS threads would compete with the process pool for a 10 x 9 mixing
    return np.einsum("fk,khw->fhw", weights, _fields(gain, shape, weights.shape[1], rng, factor))


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator, count: int = 1,
                    cutoff: float = 0.0) -> np.ndarray:
    """`count` independent zero-mean, unit-variance fields (count x H x W float32) with power ~ 1/f^beta."""
    return _normalise(_fields(lambda f: power_law_gain(f, beta, cutoff), shape, count, rng))


def depth_noise(shape: tuple[int, int], n_frames: int, beta: float, rng: np.random.Generator,
                correlation_frames: float, cutoff: float = 0.0, factor: int = 1) -> np.ndarray:
    """Frames (n_frames x H x W) of a power-law field that decorrelates over ~`correlation_frames` frames.

    Fine structure decorrelates faster through depth than coarse structure (a small duct leaves the slice sooner
    than a large gland), so the spectrum is split in two complementary bands (squared gains sum to one, so the
    power law is kept exactly) and the fine band advances twice as fast through its key fields. The coarse band
    (structures a quarter of the image across and larger) is synthesised on a grid ~64 pixels across;
    `factor` > 1 synthesises the whole field `factor` times coarser (for fields with no fine detail).
    """
    if n_frames < 1 or correlation_frames <= 0:
        raise ValueError(f"depth_noise: need n_frames >= 1 and correlation_frames > 0, got {n_frames}, "
                         f"{correlation_frames}")
    split = np.float32(4.0 / max(shape))

    def coarse_gain(f: np.ndarray) -> np.ndarray:
        return 1.0 / np.sqrt(1.0 + (f / split) ** 4)

    def coarse(f: np.ndarray) -> np.ndarray:
        return coarse_gain(f) * power_law_gain(f, beta, cutoff)

    def fine(f: np.ndarray) -> np.ndarray:
        return np.sqrt(1.0 - coarse_gain(f) ** 2) * power_law_gain(f, beta, cutoff)

    coarse_factor = max(factor, max(shape) // 64)  # its gain is ~1/16 at 4 x split, far below that Nyquist
    coarse_frames = _depth_field(coarse, shape, n_frames, 2.0 * correlation_frames, rng, coarse_factor)
    frames = _depth_field(fine, shape, n_frames, correlation_frames, rng, factor)
    frames += _resize(coarse_frames, frames.shape[1:])
    return _resize(_normalise(frames), shape)


def smooth_depth_noise(shape: tuple[int, int], n_frames: int, rng: np.random.Generator, correlation_frames: float,
                       beta: float = 4.0, factor: int = 4) -> np.ndarray:
    """A steep-spectrum (mostly coarse) depth field, synthesised at 1/`factor` resolution and upsampled (cheap)."""
    return depth_noise(shape, n_frames, beta, rng, correlation_frames, factor=factor)


def band_noise(shape: tuple[int, int], n_frames: int, wavelength_px: float, rng: np.random.Generator,
               correlation_frames: float) -> np.ndarray:
    """A depth field concentrated around one spatial wavelength (its zero crossings form a cellular network).

    The band reaches ~3 x its centre frequency, so it is synthesised on a grid wavelength/8 times coarser.
    """
    centre = np.float32(1.0 / max(wavelength_px, 2.0))

    def gain(f: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * (np.log(np.maximum(f, 1e-6) / centre) / np.float32(0.35)) ** 2)

    factor = max(1, int(wavelength_px / 8.0))
    return _resize(_normalise(_depth_field(gain, shape, n_frames, correlation_frames, rng, factor)), shape)


def spectrum_slope(image: np.ndarray, f_min: float = 0.02, f_max: float = 0.25) -> float:
    """beta of the best fit P(f) ~ 1/f^beta between f_min and f_max cycles/pixel (radially averaged, windowed)."""
    image = np.asarray(image, np.float64)
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    power = np.abs(np.fft.rfft2((image - image.mean()) * window)) ** 2
    f = radial_frequency(image.shape).astype(np.float64)
    bins = np.geomspace(f_min, f_max, 16)
    which = np.digitize(f.ravel(), bins)
    sums = np.bincount(which, weights=power.ravel(), minlength=len(bins) + 1)[1:len(bins)]
    counts = np.bincount(which, minlength=len(bins) + 1)[1:len(bins)]
    centres = np.sqrt(bins[:-1] * bins[1:])
    keep = counts > 0
    slope = np.polyfit(np.log(centres[keep]), np.log(sums[keep] / counts[keep]), 1)[0]
    return float(-slope)
