"""Render docs/phantom.png: normal phantom slices beside one slice of each lesion kind, boxes drawn, and below
each lesion slice its first box enlarged.

Slices are read back through the BCS-DBT reader, so the figure shows exactly what methods see.
Usage: python docs/render_phantom.py [--out docs/phantom.png] [--seed 0]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from adbench_dbt.data.dataset import BCSDBT
from adbench_dbt.data.phantom import generate_phantom, get_preset
from adbench_dbt.data.phantom.plan import plan_volumes
from adbench_dbt.data.prepare import prepare

KINDS = ("spiculated_mass", "circumscribed_mass", "distortion", "calcifications")


INSET_PX = 200


def _tile(image: np.ndarray, boxes, title: str) -> np.ndarray:
    tile = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    for x, y, w, h in boxes:
        cv2.rectangle(tile, (x - 3, y - 3), (x + w + 2, y + h + 2), (40, 40, 230), 1)
    cv2.putText(tile, title, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (80, 220, 255), 1, cv2.LINE_AA)
    return tile


def _inset(image: np.ndarray, box, width: int) -> np.ndarray:
    """The first box of a tile with one box of context on each side, enlarged and unmarked, centred in a cell
    as wide as the tile: subtle lesions are invisible at tile size."""
    x, y, w, h = box
    side = min(3 * max(w, h), *image.shape)
    x0 = int(np.clip(x + w // 2 - side // 2, 0, image.shape[1] - side))
    y0 = int(np.clip(y + h // 2 - side // 2, 0, image.shape[0] - side))
    crop = (np.clip(image[y0:y0 + side, x0:x0 + side], 0, 1) * 255).astype(np.uint8)
    cell = np.zeros((INSET_PX, width, 3), np.uint8)
    left = (width - INSET_PX) // 2
    cell[:, left:left + INSET_PX] = cv2.cvtColor(cv2.resize(crop, (INSET_PX, INSET_PX),
                                                            interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
    cv2.putText(cell, f"x{INSET_PX / side:.1f}", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (80, 220, 255), 1,
                cv2.LINE_AA)
    return cell


def _lesion_kinds(seed: int) -> dict[str, str]:
    """Volume key -> lesion kind, from the plan that generated the phantom (the tables only carry the AD flag)."""
    return {f"{j.patient}_{j.study}_{j.view}": j.spec.lesions[0].kind
            for j in plan_volumes(get_preset("demo"), seed) if j.spec.lesions}


def render(out: Path, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "demo", Path(tmp) / "cache"
        generate_phantom(root, "demo", seed=seed, workers=2)
        prepare(root, cache, workers=2)
        dataset = BCSDBT(root, cache)
        kinds = _lesion_kinds(seed)
        normals = {}
        for sl in dataset.split("train"):
            normals.setdefault(sl.view, sl)
        lesions = {}
        for sl in dataset.split("test"):
            lesions.setdefault(kinds[f"{sl.patient}_{sl.study}_{sl.view}"], sl)
        top = [_tile(sl.image, (), f"normal {view}") for view, sl in sorted(normals.items())]
        shown = {kind: lesions[kind] for kind in KINDS if kind in lesions}
        bottom = [_tile(sl.image, sl.boxes, f"{kind.replace('_', ' ')} {sl.view}") for kind, sl in shown.items()]
        insets = [_inset(sl.image, sl.boxes[0], top[0].shape[1]) for sl in shown.values()]
        bottom += [np.zeros_like(top[0])] * (len(top) - len(bottom))
        insets += [np.zeros_like(insets[0])] * (len(top) - len(insets))
        figure = np.concatenate([np.concatenate(row, axis=1) for row in (top, bottom, insets)], axis=0)
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), figure)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("phantom.png"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    render(args.out, args.seed)
