"""`adbench bench --against-official-picard DIR`: the project's PICARD generator against the official code.

Both generators get the same weights (the official module tree has the same state-dict names), the same masked
windows (M completions of each, as PICARD scores them) and the same live dropout layers. Before timing, one forward
of each from the same random seed must agree, so the rows compare the same computation; for that forward the
official Dropout2d layers draw the project's keyed masks (ours no longer come from torch's generator), while timed
they run their own (same cost). Ours runs as built (contiguous weights) and in channels_last (module and input,
what the scoring modes' channels_last does). Forwards are timed interleaved, after a warm-up, in the same process (same thread
count), in fp32 and under bf16 autocast. The official code is imported from the user's checkout at run time and never shipped.
"""
from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import os
import statistics
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from adbench_dbt.completion.deepfill import SpatialDropout
from adbench_dbt.completion.deepfill_backbone import DeepFillBackbone
from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import ConfigError, RunError
from adbench_dbt.leaderboard import profile_label
from adbench_dbt.provenance import harness_revision
from adbench_dbt.registry import create_method
from adbench_dbt.timing import device_name, stopwatch
from adbench_dbt.windows import WindowGrid

NETWORKS = Path("inpainter") / "model" / "networks.py"  # mazurowski-lab/picard-anomalydetection layout
AGREEMENT_ATOL = 1e-4  # fp32, same weights/input/dropout masks: measured differences are ~5e-8
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def load_official_networks(directory: Path) -> ModuleType:
    """DIR/inpainter/model/networks.py as a module (its `inpainterutils` imports resolve inside DIR/inpainter)."""
    path = Path(directory) / NETWORKS
    if not path.is_file():
        raise ConfigError(f"--against-official-picard {directory}: no {NETWORKS} there (expected a checkout of "
                          "mazurowski-lab/picard-anomalydetection)")
    for name in [m for m in sys.modules if m == "inpainterutils" or m.startswith("inpainterutils.")]:
        del sys.modules[name]  # an earlier import from another checkout must not stand in for this one's
    sys.path.insert(0, str(path.parent.parent))
    try:
        spec = importlib.util.spec_from_file_location("official_picard_networks", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as err:  # whatever the foreign file raises on import is a usage error
        raise ConfigError(f"{path}: cannot import the official generator ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''})") from None
    finally:
        sys.path.remove(str(path.parent.parent))
    if not isinstance(getattr(module, "Generator", None), type):
        raise ConfigError(f"{path}: defines no Generator class")
    return module


def official_generator(networks: ModuleType, ours: nn.Module, live: set[str], cnum: int, droprate: float,
                       source: Path) -> nn.Module:
    """The official Generator with `ours`' weights; its Dropout2d modules live exactly where ours are."""
    config = {"input_dim": 1, "ngf": cnum, "droprate": droprate or None, "dropout_type": "2D",
              "dropout_which": "CUSTOM"}
    try:
        generator = networks.Generator(config, False, None)
        generator.load_state_dict(ours.state_dict(), strict=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{source}: its Generator does not take the project's generator weights: {first[:200]}"
                          ) from None
    generator.eval()
    for name, module in generator.named_modules():
        if isinstance(module, (nn.Dropout, nn.Dropout2d)):  # the two types the official code builds
            module.train(name in live)
    return generator


@contextmanager
def no_debug_image() -> Iterator[None]:
    """The official CoarseGenerator.forward writes its mask to ./debug.png on every call (a leftover debug line):
    file I/O, not network cost, and a stray file in the working directory; a no-op while the official code runs."""
    try:
        import torchvision.utils as utils
    except ImportError:  # the official module imports torchvision itself; nothing to silence without it
        yield
        return
    saved = utils.save_image
    utils.save_image = lambda *args, **kwargs: None
    try:
        yield
    finally:
        utils.save_image = saved


def tissue_windows(sl: Slice, window: int, count: int) -> torch.Tensor:
    """`count` copies of the window centred on the breast's centroid (count x 1 x window x window, [0, 1])."""
    image, breast = sl.load()
    rows, cols = np.nonzero(breast)
    top = min(max(int(rows.mean()) - window // 2, 0), image.shape[0] - window)
    left = min(max(int(cols.mean()) - window // 2, 0), image.shape[1] - window)
    crop = torch.tensor(image[top:top + window, left:left + window], dtype=torch.float32)
    return crop[None, None].expand(count, 1, window, window).contiguous()


def _interleaved(calls: dict[str, Callable[[], Any]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call; one warm-up each, then the calls alternate so load drifts hit both alike."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            with stopwatch(device) as t:
                call()
            times[name].append(t[0])
    return {name: statistics.median(values) for name, values in times.items()}


def bench_against_official(directory: Path, profile: str, overrides: dict[str, Any], sl: Slice, windows: int,
                           repeats: int, device: torch.device, networks: ModuleType | None = None,
                           precisions: tuple[str, ...] = ("fp32", "bf16")) -> list[dict[str, Any]]:
    """Bench rows (method `picard-generator`, profiles '<profile> official' / '<profile> adbench' / '<profile> adbench
    channels_last') per precision;
    `networks`: the official module if already loaded from `directory` (the CLI checks it before reading data)."""
    networks = networks or load_official_networks(directory)
    method = create_method("picard", profile, overrides, device=device)
    backbone: DeepFillBackbone = method.backbone
    config, ours = backbone.config, backbone.generator
    official = official_generator(networks, ours, set(ours.live_dropout()), config.cnum, config.dropout,
                                  directory).to(device)
    _, masked = backbone.masked_input(tissue_windows(sl, config.window, windows).to(device))
    batch = masked.repeat_interleave(config.completions, dim=0)
    mask = backbone.hole_mask.expand(batch.shape[0], -1, -1, -1)  # the official code takes a per-sample mask
    nhwc = copy.deepcopy(ours).to(memory_format=torch.channels_last)  # what the channels_last scoring mode runs
    nhwc_batch = batch.contiguous(memory_format=torch.channels_last)
    calls = {"official": lambda: official(batch, mask), "adbench": lambda: ours(batch, mask),
             "adbench channels_last": lambda: nhwc(nhwc_batch, mask)}
    grid = WindowGrid(*sl.shape, config.window, config.stride)
    load = os.getloadavg()[0]
    rows = []
    with torch.inference_mode(), backbone.scoring_context(), no_debug_image():
        agreement = _agreement(calls, directory, official, ours)
        for precision in precisions:
            autocast = torch.autocast(device.type, dtype=PRECISIONS[precision]) if PRECISIONS[precision] else None
            with autocast or nullcontext():
                seconds = _interleaved(calls, repeats, device)
            for name, s in seconds.items():
                note = (f"generator forward only: {windows} window(s) x M={config.completions} completions, "
                        f"{config.window} px; {', '.join(calls)} interleaved, {repeats} repeats; "
                        f"load avg {load:.1f} at start; s_per_slice = x {grid.count} windows; ")
                note += (f"speedup {seconds['official'] / s:.2f}x over the official code" if name != "official" else
                         f"official code from {Path(directory).name}/{NETWORKS} (debug.png write off); "
                         f"all outputs agree to {agreement:.1e} (fp32)")
                rows.append({"method": "picard-generator", "profile": f"{profile_label(profile, overrides)} {name}",
                             "shape": f"{sl.shape[0]}x{sl.shape[1]}", "windows": windows,
                             "s_per_slice": s / windows * grid.count, "extrapolated": True,
                             "ms_per_patch": 1000 * s / windows,
                             "windows_per_s": windows / s, "repeats": repeats, "variant_count": None,
                             "device": device_name(device), "precision": precision, "batch_size": batch.shape[0],
                             "harness_revision": harness_revision(), "date": dt.date.today().isoformat(),
                             "forwards_per_window": config.completions, "timing": note})
    return rows


def _agreement(calls: dict[str, Callable[[], Any]], directory: Path, official: nn.Module, ours: nn.Module) -> float:
    """Max |difference| from the official code of both stages' outputs of one seeded fp32 forward each (equal
    dropout masks); a RunError if they compute different things."""
    outputs = {}
    for name, call in calls.items():
        with _seeded(0), _keyed_dropout(official, ours):
            outputs[name] = [stage.float() for stage in call()[:2]]
    reference = outputs.pop("official")
    difference = max((a - b).abs().max().item() for ours in outputs.values() for a, b in zip(reference, ours))
    if not difference <= AGREEMENT_ATOL:
        raise RunError(f"{directory}: the official generator's output differs from the project's by {difference:.3g} "
                       f"(max abs, same weights, input and dropout seed; expected <= {AGREEMENT_ATOL}): "
                       "not the PICARD generator this benchmark compares against")
    return difference


@contextmanager
def _keyed_dropout(official: nn.Module, ours: nn.Module) -> Iterator[None]:
    """The official code's live Dropout2d layers drawing the project's masks (`SpatialDropout`, `window_rng`) with the
    stream of our layer of the same name, restored after: from the same seed both generators then drop the same
    channels. A live layer that ours does not have is a generator this benchmark cannot compare against."""
    streams = {name: module.stream for name, module in ours.named_modules() if isinstance(module, SpatialDropout)}
    patched = []
    try:
        for name, module in official.named_modules():
            if isinstance(module, nn.Dropout2d) and module.training:
                if name not in streams:
                    raise RunError(f"the official generator has a live dropout layer {name!r} the project's lacks")
                twin = SpatialDropout(module.p)
                twin.live, twin.stream = True, streams[name]
                module.forward = twin.forward  # an instance attribute: shadows the class's forward until deleted
                patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Same RNG state for both forwards, so their Dropout2d masks coincide (the caller's RNG state restored)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
