"""Drawing primitives placed in 3-D: each has a focus frame and fades (or smears) with distance from it.

Anatomy, benign findings and lesions are all described with these four kinds, so the volume renderer has one code
path for everything and a lesion is drawn exactly like the normal structures it must be told apart from.
Coordinates are (x, y) = (column, row) in the canonical orientation; depths are frame indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SUBPIXEL_BITS = 4


def depth_weight(frame: int, focus: np.ndarray, depth_sigma: np.ndarray) -> np.ndarray:
    """Gaussian visibility of structures focused at `focus` (frames) in slice `frame`."""
    return np.exp(-0.5 * ((frame - np.asarray(focus)) / np.asarray(depth_sigma)) ** 2)


def random_walk_curves(starts: np.ndarray, headings: np.ndarray, lengths: np.ndarray, wiggle: float,
                       rng: np.random.Generator, n_points: int = 24) -> np.ndarray:
    """Smooth random curves (n x n_points x 2): the heading drifts like a random walk of std `wiggle` rad/step."""
    n = len(starts)
    turns = np.cumsum(rng.normal(0.0, wiggle, (n, n_points - 1)), axis=1)
    heading = np.asarray(headings)[:, None] + turns
    step = (np.asarray(lengths) / (n_points - 1))[:, None]
    steps = np.stack([np.cos(heading) * step, np.sin(heading) * step], axis=-1)
    origin = np.asarray(starts, np.float64)[:, None, :]
    return np.concatenate([origin, origin + np.cumsum(steps, axis=1)], axis=1)


@dataclass(frozen=True)
class Curves:
    """Thin curvilinear structures (vessels, ligaments, spicules) crossing the slices obliquely."""

    points: np.ndarray  # (n, m, 2) in the focus frame
    amplitude: np.ndarray  # (n,) peak attenuation added
    width_px: float  # full width at half maximum
    focus: np.ndarray  # (n,)
    depth_sigma: np.ndarray  # (n,)
    drift: np.ndarray  # (n, 2) lateral shift per frame away from focus
    taper: bool = False  # amplitude falls linearly to zero along each curve (spicules)

    def draw(self, canvas: np.ndarray, frame: int) -> None:
        weight = self.amplitude * depth_weight(frame, self.focus, self.depth_sigma)
        visible = weight > 0.01 * max(float(np.max(self.amplitude, initial=0.0)), 1e-6)
        if not visible.any():
            return
        sigma = self.width_px / 2.355
        gain = np.sqrt(2 * np.pi) * sigma if sigma > 0.5 else 1.0
        shifted = self.points + (frame - self.focus)[:, None, None] * self.drift[:, None, :]
        # Draw and blur only the region the visible curves can reach (the blur is the costly part).
        pad = 4.0 * sigma + 2.0
        low = np.floor(shifted[visible].reshape(-1, 2).min(0) - pad).astype(int)
        high = np.ceil(shifted[visible].reshape(-1, 2).max(0) + pad).astype(int)
        (x0, y0), (x1, y1) = np.maximum(low, 0), np.minimum(high, canvas.shape[::-1])
        if x0 >= x1 or y0 >= y1:
            return
        layer = np.zeros((y1 - y0, x1 - x0), canvas.dtype)
        fixed = np.round((shifted - (x0, y0)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        n_points = self.points.shape[1]
        for i in np.flatnonzero(visible):
            if self.taper:  # a tapering line is drawn as segments of decreasing strength
                for j in range(n_points - 1):
                    value = weight[i] * gain * (1.0 - j / (n_points - 1))
                    cv2.polylines(layer, [fixed[i, j:j + 2]], False, float(value), 1, cv2.LINE_8, _SUBPIXEL_BITS)
            else:
                cv2.polylines(layer, [fixed[i]], False, float(weight[i] * gain), 1, cv2.LINE_8, _SUBPIXEL_BITS)
        if sigma > 0.5:
            layer = cv2.GaussianBlur(layer, (0, 0), sigma)
        canvas[y0:y1, x0:x1] += layer


@dataclass(frozen=True)
class Blobs:
    """Small dense objects (calcifications, clip parts, skin markers): anisotropic Gaussians.

    Off focus they fade and smear along the rows (the tube sweep direction), which is how dense objects leave
    their out-of-plane artefact in DBT; the smear conserves the integrated signal.
    """

    centers: np.ndarray  # (n, 2)
    sigma_x: np.ndarray  # (n,)
    sigma_y: np.ndarray  # (n,)
    amplitude: np.ndarray  # (n,)
    focus: np.ndarray  # (n,)
    depth_sigma: np.ndarray  # (n,)
    smear_px_per_frame: float

    def draw(self, canvas: np.ndarray, frame: int) -> None:
        distance = np.abs(frame - self.focus)
        sigma_y = np.sqrt(self.sigma_y ** 2 + (self.smear_px_per_frame * distance) ** 2)
        amplitude = self.amplitude * depth_weight(frame, self.focus, self.depth_sigma) * self.sigma_y / sigma_y
        rows, cols = canvas.shape
        for (cx, cy), sx, sy, a in zip(self.centers, self.sigma_x, sigma_y, amplitude):
            if a < 1e-3:
                continue
            x0, x1 = max(int(cx - 3 * sx) , 0), min(int(cx + 3 * sx) + 2, cols)
            y0, y1 = max(int(cy - 3 * sy), 0), min(int(cy + 3 * sy) + 2, rows)
            if x0 >= x1 or y0 >= y1:
                continue
            gx = np.exp(-0.5 * ((np.arange(x0, x1) - cx) / sx) ** 2)
            gy = np.exp(-0.5 * ((np.arange(y0, y1) - cy) / sy) ** 2)
            canvas[y0:y1, x0:x1] += (a * gy[:, None] * gx[None, :]).astype(np.float32)


@dataclass(frozen=True)
class Mass:
    """A focal region of dense tissue: a lobulated ellipse that raises the local gland fraction.

    `harmonics` (k x 3: order, relative amplitude, phase) perturb the radius; `edge` is the margin width in
    pixels (sharp for circumscribed masses, wide for indistinct ones); `density` is the gland fraction the
    mass raises the smooth local density to (tissue texture is kept; denser surroundings are left as they are,
    so there a mass stands out only by its `extra` attenuation, comparable to tissue variation); `hilum` carves
    a fatty notch (lymph nodes).
    """

    center: tuple[float, float]
    radius: float
    elongation: float
    angle: float
    harmonics: np.ndarray
    edge: float
    density: float  # in (0, 1)
    extra: float
    focus: float
    depth_sigma: float
    hilum: bool = False

    def extent(self) -> float:
        """Largest distance from the centre the profile reaches (for boxes and patch sizes)."""
        return self.radius * self.elongation * (1.0 + np.abs(self.harmonics[:, 1]).sum()) + 2 * self.edge

    def patch(self, shape: tuple[int, int]) -> tuple[slice, slice] | None:
        """The (rows, cols) slices of an image of `shape` the mass can reach in any frame (None: outside)."""
        reach = self.extent()
        cx, cy = self.center
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, shape[1])
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, shape[0])
        return (slice(y0, y1), slice(x0, x1)) if x0 < x1 and y0 < y1 else None

    def profile(self, frame: int, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray] | None:
        """(patch slices, membership in [0, 1]) at `frame`; the section shrinks and fades away from focus."""
        weight = float(depth_weight(frame, self.focus, self.depth_sigma))
        where = self.patch(shape)
        if weight < 0.02 or where is None:
            return None
        (y0, y1), (x0, x1) = ((part.start, part.stop) for part in where)
        cx, cy = self.center
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u, v = (dx * cos + dy * sin) / self.elongation, -dx * sin + dy * cos
        rho, theta = np.hypot(u, v), np.arctan2(v, u)
        order, amp, phase = self.harmonics.T
        boundary = self.radius * (1.0 + (amp[:, None, None] * np.cos(order[:, None, None] * theta
                                                                   + phase[:, None, None])).sum(0))
        boundary *= np.sqrt(max(weight, 0.25))  # an ellipsoid's section narrows away from its centre plane
        member = 1.0 / (1.0 + np.exp((rho - boundary) / max(self.edge / 3.0, 0.3)))
        if self.hilum:
            notch = np.exp(-0.5 * ((u - 0.8 * self.radius) ** 2 + v ** 2) / (0.35 * self.radius) ** 2)
            member *= 1.0 - 0.9 * notch
        return where, (member * weight).astype(np.float32)


@dataclass(frozen=True)
class Retraction:
    """Architectural distortion: tissue pulled toward a point (applied as a warp of the gland fraction)."""

    center: tuple[float, float]
    radius: float
    strength: float  # fraction of the distance to the centre that tissue is pulled in, at the centre
    focus: float
    depth_sigma: float

    def warp(self, field: np.ndarray, frame: int) -> None:
        """Resample `field` in place so that tissue within ~radius appears drawn toward the centre."""
        weight = float(depth_weight(frame, self.focus, self.depth_sigma))
        if weight < 0.02:
            return
        cx, cy = self.center
        reach = 3.0 * self.radius
        rows, cols = field.shape
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, cols)
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, rows)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        dx, dy = gx - cx, gy - cy
        # Sampling farther out than the pixel itself makes tissue appear pulled in toward the centre.
        pull = self.strength * weight * np.exp(-0.5 * (dx * dx + dy * dy) / self.radius ** 2)
        map_x, map_y = (gx + dx * pull).astype(np.float32), (gy + dy * pull).astype(np.float32)
        field[y0:y1, x0:x1] = cv2.remap(field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
