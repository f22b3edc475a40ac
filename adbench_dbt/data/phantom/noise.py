"""Anatomical noise: Gaussian random fields with a power-law (1/f^beta) spectrum, slowly varying through depth.

Breast parenchyma in mammography and DBT is well described by a power-law spectrum with beta close to 3 (Burgess
2001; Engstrom 2009), which is why it defeats simple detectors: a lesion must be found against background that
looks like itself at every scale. Depth variation uses an angle interpolation between independent fields
(cos(t) A + sin(t) B), which keeps every frame exactly stationary with the same spectrum and unit variance while
adjacent frames stay strongly correlated, like neighbouring reconstructed slices.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy import fft


def radial_frequency(shape: tuple[int, int]) -> np.ndarray:
    """|f| in cycles per pixel on the rfft2 grid of an image of `shape`."""
    fy = np.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    return np.sqrt(fy * fy + fx * fx)


def power_law_filter(shape: tuple[int, int], beta: float, cutoff: float = 0.0) -> np.ndarray:
    """Amplitude filter |f|^(-beta/2) (flattened below `cutoff` cycles/pixel, zero at DC) on the rfft2 grid."""
    f = np.maximum(radial_frequency(shape), np.float32(max(cutoff, 1e-6)))
    amplitude = f ** np.float32(-beta / 2.0)
    amplitude[0, 0] = 0.0
    return amplitude


def _normalise(fields: np.ndarray) -> np.ndarray:
    fields -= fields.mean(axis=(-2, -1), keepdims=True)
    fields /= fields.std(axis=(-2, -1), keepdims=True) + np.float32(1e-12)
    return fields


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator, count: int = 1,
                    cutoff: float = 0.0) -> np.ndarray:
    """`count` independent zero-mean, unit-variance fields (count x H x W float32) with power ~ 1/f^beta."""
    white = rng.standard_normal((count, *shape), dtype=np.float32)
    spectrum = fft.rfft2(white, workers=-1) * power_law_filter(shape, beta, cutoff)
    return _normalise(fft.irfft2(spectrum, s=shape, workers=-1).astype(np.float32, copy=False))


def _through_depth(gain: np.ndarray, shape: tuple[int, int], n_frames: int, frames_per_key: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Spectra (n_frames x rfft grid) moving from one independent key field to the next every `frames_per_key`."""
    position = np.arange(n_frames, dtype=np.float64) / frames_per_key
    index = np.floor(position).astype(int)
    keys = fft.rfft2(rng.standard_normal((int(index[-1]) + 2, *shape), dtype=np.float32), workers=-1)
    keys *= gain[None]
    angle = (position - index) * (np.pi / 2.0)
    return (np.cos(angle).astype(np.float32)[:, None, None] * keys[index]
            + np.sin(angle).astype(np.float32)[:, None, None] * keys[index + 1])


def depth_noise(shape: tuple[int, int], n_frames: int, beta: float, rng: np.random.Generator,
                correlation_frames: float, cutoff: float = 0.0) -> np.ndarray:
    """Frames (n_frames x H x W) of a power-law field that decorrelates over ~`correlation_frames` frames.

    Fine structure decorrelates faster through depth than coarse structure (a small duct leaves the slice sooner
    than a large gland), so the spectrum is split in two complementary bands (squared gains sum to one, so the
    power law is kept exactly) and the fine band advances twice as fast through its key fields.
    """
    if n_frames < 1 or correlation_frames <= 0:
        raise ValueError(f"depth_noise: need n_frames >= 1 and correlation_frames > 0, got {n_frames}, "
                         f"{correlation_frames}")
    f = radial_frequency(shape)
    split = np.float32(4.0 / max(shape))  # structures a quarter of the image across and larger are 'coarse'
    coarse_gain = 1.0 / np.sqrt(1.0 + (f / split) ** 4)
    fine_gain = np.sqrt(1.0 - coarse_gain ** 2)
    base = power_law_filter(shape, beta, cutoff)
    spectra = _through_depth(coarse_gain * base, shape, n_frames, 2.0 * correlation_frames, rng)
    spectra += _through_depth(fine_gain * base, shape, n_frames, correlation_frames, rng)
    return _normalise(fft.irfft2(spectra, s=shape, workers=-1).astype(np.float32, copy=False))


def smooth_depth_noise(shape: tuple[int, int], n_frames: int, rng: np.random.Generator, correlation_frames: float,
                       beta: float = 4.0, factor: int = 4) -> np.ndarray:
    """A steep-spectrum (mostly coarse) depth field, generated at 1/`factor` resolution and upsampled (cheap)."""
    small = (max(shape[0] // factor, 8), max(shape[1] // factor, 8))
    coarse = depth_noise(small, n_frames, beta, rng, correlation_frames)
    return np.stack([cv2.resize(frame, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC) for frame in coarse])


def band_noise(shape: tuple[int, int], n_frames: int, wavelength_px: float, rng: np.random.Generator,
               correlation_frames: float) -> np.ndarray:
    """A depth field concentrated around one spatial wavelength (its zero crossings form a cellular network)."""
    f = radial_frequency(shape)
    centre = np.float32(1.0 / max(wavelength_px, 2.0))
    gain = np.exp(-0.5 * (np.log(np.maximum(f, 1e-6) / centre) / np.float32(0.35)) ** 2).astype(np.float32)
    gain[0, 0] = 0.0
    spectra = _through_depth(gain, shape, n_frames, correlation_frames, rng)
    return _normalise(fft.irfft2(spectra, s=shape, workers=-1).astype(np.float32, copy=False))


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

