"""Patch SVDD (Yi & Yoon 2020) on DBT windows: hierarchical encoder, nearest-neighbour distance to a training bank.

Two scales, each scored by the distance to its nearest training embedding and coverage-averaged into a map:
- coarse: the engine's K x K windows (K = 256 in PICARD's setting) at `stride`;
- fine (`fine_geometry: official`, as the official inspection code): every K/2 patch on its own grid at a quarter
  of the stride (the official 64 px at stride 16 / 32 px at stride 4), embedded by the inner encoder, the bank
  holding every such patch of the training slices; (`quadrants`, a cheaper shortcut): the four quadrants of each
  window, which the coarse forward pass computes anyway, so the fine scale sits on the window grid.
The maps are combined as the official code does, without normalisation: sum and product (the reported one).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, ClassVar, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from adbench_dbt.config import AssemblyMode, WindowConfig
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import Heatmaps, WindowMethod
from adbench_dbt.methods.patchsvdd.nearest_neighbor import DEFAULT_MAX_ELEMENTS, NearestNeighborIndex
from adbench_dbt.windows import GridOutputs, assemble_outputs, run_on_grid
from adbench_dbt.registry import register_method
from adbench_dbt.sampling import CropStream, sample_tissue_crops
from adbench_dbt.training import TrainingConfig, TrainingMode, run_steps, seeded_generators, seeded_weights

from .networks import HierarchicalEncoder, PositionClassifier
from .pairs import jitter_pairs, position_pairs

log = logging.getLogger(__name__)
SCALES = ("coarse", "fine")  # K and K/2
FineGeometry = Literal["official", "quadrants"]
# K/2 patches per forward pass of the fine grid, per K window of `batch_size`: the same pixels, about the same memory
FINE_BATCH_FACTOR = 4


class PatchSVDDConfig(WindowConfig, TrainingConfig):
    assembly: AssemblyMode = "averaged"
    dim: int = Field(64, ge=1, description="embedding dimension D")
    svdd_weight: float = Field(1e-3, ge=0, description="lambda on the SVDD' terms")
    lr: float = Field(1e-4, gt=0)
    epochs: int = Field(300, ge=0)
    pairs_per_slice: int = Field(100, ge=1, description="training pairs drawn per training slice and epoch")
    batch_pairs: int = Field(64, ge=1, description="pairs per step (each: position + SVDD' pair at both scales)")
    bank_stride: int | None = Field(None, ge=1, description="stride of the training-window bank (None = stride)")
    nn_max_elements: int = Field(DEFAULT_MAX_ELEMENTS, ge=1, description="distances per nearest-neighbour chunk")
    fine_geometry: FineGeometry = Field(
        "official", description="official: every K/2 patch on a grid at stride // fine_stride_divisor (test and "
        "bank alike), all kept in the fine bank; quadrants: the four quadrants of each window (cheaper)")
    fine_stride_divisor: int = Field(4, ge=1, description="official fine grids: stride (and bank_stride) divided "
                                     "by this, at least 1 px (official code: 16 -> 4)")

    @field_validator("window")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value < 64 or value & (value - 1):
            raise ValueError(f"patchsvdd window must be a power of two >= 64 (hierarchical encoder), got {value}")
        return value


@register_method
class PatchSVDD(WindowMethod):
    name = "patchsvdd"
    paper = "Yi & Yoon, Patch SVDD, ACCV 2020; DBT adaptation of Konz et al., PICARD, MedIA 2023"
    variants = ("product", "sum", "coarse", "fine")
    fp32_only = ("its nearest-neighbour distances are smaller than the rounding of reduced-precision embeddings: on "
                 "the phantom demo bf16 ranks pixels with a per-slice Spearman down to 0.71 against fp32 and moves "
                 "the fine AUROC by -0.084, fp16 by -0.049; docs/precision-fidelity.md")
    Config: ClassVar[type[PatchSVDDConfig]] = PatchSVDDConfig

    def __init__(self, config: PatchSVDDConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        cfg = self.config
        with seeded_weights(cfg.seed):
            self.encoder = HierarchicalEncoder(cfg.window, cfg.dim).to(self.device).eval()
            self.classifiers = torch.nn.ModuleDict({s: PositionClassifier(cfg.dim) for s in SCALES}).to(self.device)
        self.input_mean = 0.0
        self.banks: dict[str, NearestNeighborIndex] = {}
        self.train_losses: list[float] = []
        self.fine_batch_size = FINE_BATCH_FACTOR * cfg.batch_size  # K/2 patches per pass, lowered on OOM

    # ---- training ----------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        cfg = self.config
        rng, gen = seeded_generators(cfg.seed, self.device)
        region = self._region_size(train)
        self.input_mean = self._estimate_mean(train, region, rng)
        params = list(self.encoder.parameters()) + list(self.classifiers.parameters())
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
        steps = cfg.epochs * math.ceil(len(train) * cfg.pairs_per_slice / cfg.batch_pairs)
        self.encoder.train()
        mode = TrainingMode(cfg, self.device)
        crops = CropStream.for_config(cfg, train, cfg.batch_pairs, region, self.device, key=(cfg.seed, 0))

        def loss(step: int) -> torch.Tensor:
            return self._loss(crops.take(step, rng)[0] - self.input_mean, gen, mode)

        with mode.applied([self.encoder, self.classifiers]), crops:
            self.train_losses = run_steps(loss, optimizer, steps, self.name, config=cfg, work_dir=self.work_dir,
                                          modules={"encoder": self.encoder, "classifiers": self.classifiers},
                                          rng=rng, gen=gen, mode=mode)
        self.encoder.eval()
        self._build_banks(train)

    def _loss(self, regions: torch.Tensor, gen: torch.Generator, mode: TrainingMode) -> torch.Tensor:
        """L = lambda (SVDD'(K) + SVDD'(K/2)) + SSL(K) + SSL(K/2); the K/2 terms use the inner encoder. Losses
        and distances in fp32 whatever the autocast dtype of the encoders."""
        total = regions.new_zeros((), dtype=torch.float32)
        encoders = {"coarse": self.encoder, "fine": self.encoder.inner}
        for scale, size in zip(SCALES, (self.config.window, self.config.window // 2)):
            p1, p2, labels = position_pairs(regions, size, gen)
            h1, h2 = encoders[scale](mode.batch(torch.cat([p1, p2]))).chunk(2)
            total = total + F.cross_entropy(self.classifiers[scale](h1, h2).float(), labels)
            s1, s2 = jitter_pairs(regions, size, gen)
            e1, e2 = encoders[scale](mode.batch(torch.cat([s1, s2]))).float().chunk(2)
            total = total + self.config.svdd_weight * (e1 - e2).norm(dim=1).mean()
        return total

    def _region_size(self, train: Sequence[Slice]) -> int:
        """Square regions the pairs are cut from: room for a neighbour at distance < K, capped by the slices."""
        if not train:
            raise ValueError("patchsvdd: no training slices")
        smallest = min(min(sl.shape) for sl in train)
        if smallest < self.config.window:
            raise ValueError(f"patchsvdd: training slices must be at least {self.config.window} px on each side, "
                             f"smallest is {smallest}")
        return min(2 * self.config.window, smallest)

    def _estimate_mean(self, train: Sequence[Slice], region: int, rng: np.random.Generator) -> float:
        """Mean intensity of tissue crops, subtracted from every patch (the original subtracts a training mean)."""
        return float(sample_tissue_crops(train, 64, region, rng)[0].mean())

    def prepare_untrained(self, train: Sequence[Slice]) -> None:
        self.input_mean = self._estimate_mean(train, self._region_size(train), np.random.default_rng(self.config.seed))
        self.encoder.eval()
        self._build_banks(train)

    # ---- memory bank -------------------------------------------------------------------------------------
    def _embed(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """K windows -> their embeddings and, from the same pass, the inner embeddings of their 2 x 2 quadrants."""
        top, quadrants = self.encoder.forward_with_quadrants(windows - self.input_mean)
        return {"coarse": top, "fine": quadrants}

    def _embed_fine(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """K/2 patches of the official fine grid -> inner-encoder embeddings (the official `infer(x, enc.enc)`)."""
        return {"fine": self.encoder.inner(patches - self.input_mean)}

    def fine_stride(self, stride: int) -> int:
        """Stride of the official fine grid that goes with a window grid at `stride` (16 -> 4 in the original)."""
        return max(1, stride // self.config.fine_stride_divisor)

    def _fine_grid(self, scorer: Callable[[torch.Tensor], dict[str, torch.Tensor]], image: np.ndarray,
                   breast: np.ndarray, stride: int, tissue_only: bool, limit: int | None = None) -> GridOutputs:
        """`scorer` over every K/2 patch at fine_stride(stride): the engine's grid, batched and OOM-safe."""
        out = run_on_grid(scorer, image, breast, self.config.window // 2, self.fine_stride(stride),
                          self.fine_batch_size, self.device, tissue_only, limit)
        self.fine_batch_size = out.batch_size
        return out

    def _build_banks(self, train: Sequence[Slice]) -> None:
        """Embeddings of every training window on the bank grid (whole slices, background included, as the original
        pools all patches) and of every fine patch: the dense K/2 grid, or each distinct window quadrant."""
        cfg = self.config
        stride = cfg.bank_stride or cfg.stride
        parts: dict[str, list[torch.Tensor]] = {s: [] for s in SCALES}
        for sl in train:
            image, breast = sl.load()
            out = run_on_grid(self._embed, image, breast, cfg.window, stride, cfg.batch_size, self.device,
                              tissue_only=False)
            parts["coarse"].append(out.outputs["coarse"])
            if cfg.fine_geometry == "quadrants":
                parts["fine"].append(_distinct_quadrants(out))
            else:
                parts["fine"].append(self._fine_grid(self._embed_fine, image, breast, stride, False).outputs["fine"])
        self.banks = {s: NearestNeighborIndex(torch.cat(parts[s]), cfg.nn_max_elements) for s in SCALES}
        log.info("patchsvdd bank: %d coarse, %d fine embeddings", len(self.banks["coarse"]), len(self.banks["fine"]))

    # ---- scoring -----------------------------------------------------------------------------------------
    def _check_banks(self) -> None:
        if not self.banks:
            raise RuntimeError("patchsvdd: call fit() (or prepare_untrained / load) before scoring")

    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Coarse distance of each window; with `quadrants` also its 2 x 2 quadrant distances. The official fine
        scale is not a per-window quantity: score_map scores it on its own grid (score_fine_patches)."""
        self._check_banks()
        embedded = self._embed(windows)
        scores = {"coarse": self.banks["coarse"].query(embedded["coarse"])[0]}
        if self.config.fine_geometry == "quadrants":
            fine = self.banks["fine"].query(embedded["fine"].reshape(-1, self.config.dim))[0].view(-1, 2, 2)
            if self.config.assembly != "averaged":  # one score per window: the mean over its quadrants
                fine = fine.mean((1, 2))
            scores["fine"] = fine
        return scores

    def score_fine_patches(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """N x 1 x K/2 x K/2 patches -> {'fine': distance of each to its nearest fine-bank embedding}."""
        self._check_banks()
        return {"fine": self.banks["fine"].query(self._embed_fine(patches)["fine"])[0]}

    def score_map(self, sl: Slice) -> Heatmaps:
        """Both scales' coverage-averaged maps and, as the official inspection, their plain sum and product."""
        image, breast = sl.load()
        maps = self.score_grid(image, breast)  # K windows (last_window_count); the official fine grid is extra work
        if self.config.fine_geometry == "official":
            out = self._fine_grid(self.execute(self.score_fine_patches), image, breast, self.config.stride,
                                  self.config.skip_background)
            maps["fine"] = (assemble_outputs(out, out.outputs["fine"], self.config.assembly) if out.outputs
                            else np.zeros(image.shape, np.float32))
        maps["sum"] = maps["coarse"] + maps["fine"]
        maps["product"] = maps["coarse"] * maps["fine"]
        return {v: maps[v] for v in self.variants}

    def warmup(self, sl: Slice) -> None:
        super().warmup(sl)
        if self.config.fine_geometry == "official":
            self._fine_grid(self.execute(self.score_fine_patches), sl.image, np.ones(sl.shape, bool), self.config.stride,
                            tissue_only=False, limit=self.fine_batch_size)

    # ---- persistence -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        state |= {f"classifiers.{k}": v for k, v in self.classifiers.state_dict().items()}
        state |= {f"bank.{s}": index.bank for s, index in self.banks.items()}
        state["input_mean"] = self.input_mean
        if self.banks:
            state["fine_geometry"] = self.config.fine_geometry  # what the fine bank holds
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        known = ("encoder.", "classifiers.", "bank.", "input_mean", "fine_geometry")
        unknown = sorted(k for k in state if not k.startswith(known))
        if unknown:
            raise ValueError(f"patchsvdd: unexpected state keys {unknown}")
        self.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
        self.classifiers.load_state_dict({k[12:]: v for k, v in state.items() if k.startswith("classifiers.")})
        self.encoder.eval()
        self.input_mean = float(state.get("input_mean", 0.0))
        banks = {k[5:]: v for k, v in state.items() if k.startswith("bank.")}
        if banks and set(banks) != set(SCALES):
            raise ValueError(f"patchsvdd: state has banks {sorted(banks)}, expected {list(SCALES)}")
        saved = state.get("fine_geometry", "quadrants")  # states without the key predate it: quadrant banks
        if banks and saved != self.config.fine_geometry:
            raise ValueError(f"patchsvdd: the saved fine bank holds fine_geometry={saved!r} patches, the config asks "
                             f"for {self.config.fine_geometry!r}; rebuild the banks or set fine_geometry={saved}")
        self.banks = {s: NearestNeighborIndex(b.to(self.device), self.config.nn_max_elements)
                      for s, b in banks.items()}


def _distinct_quadrants(out: GridOutputs) -> torch.Tensor:
    """Quadrant embeddings of overlapping windows repeat (same pixels); keep one per quadrant position."""
    quadrants = out.outputs["fine"]  # N x 2 x 2 x D
    half = out.grid.window // 2
    step = torch.arange(2, device=quadrants.device) * half
    stride = out.grid.stride
    tops = (out.rows * stride)[:, None, None] + step[None, :, None]
    lefts = (out.cols * stride)[:, None, None] + step[None, None, :]
    key = (tops * out.grid.width + lefts).expand(-1, 2, 2).reshape(-1)
    unique, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((len(unique),), len(key), device=key.device).scatter_reduce(
        0, inverse, torch.arange(len(key), device=key.device), reduce="amin")
    return quadrants.reshape(-1, quadrants.shape[-1])[first]
