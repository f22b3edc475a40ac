"""CutPaste 3-way (Li et al. 2021) as adapted to DBT by PICARD: windows from tissue, Gaussian density on embeddings."""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from adbench_dbt.config import WindowConfig, content_field
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import Heatmaps, WindowMethod
from adbench_dbt.methods.cutpaste.gaussian_density import GaussianDensity
from adbench_dbt.registry import register_method
from adbench_dbt.sampling import CropStream
from adbench_dbt.training import TrainingConfig, TrainingMode, run_steps, seeded_generators, seeded_weights
from adbench_dbt.windows import GridOutputs, assemble_outputs, run_on_grid

from .augment import color_jitter, cutpaste, cutpaste_scar
from .networks import CutPasteNet


class CutPasteConfig(WindowConfig, TrainingConfig):
    steps: int = Field(65536, ge=0, description="parameter updates (256 epochs x 256 steps)")
    batch_originals: int = Field(32, ge=1, description="crops per step; each also gets CutPaste and Scar (x3)")
    lr: float = Field(0.03, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(3e-5, ge=0)
    head_layers: tuple[int, ...] = Field((512,) * 8 + (128,), description="projection head widths")
    embedding: Literal["backbone", "head"] = "backbone"
    density: Literal["global", "per_location"] = "global"
    density_windows_per_slice: int | None = Field(
        None, ge=1, description="random tissue windows per training slice for the density (None = all)")
    pretrained_path: str | None = content_field("local ResNet-18 state dict to start from (never downloaded)")


@register_method
class CutPaste(WindowMethod):
    name = "cutpaste"
    paper = "Li et al., CutPaste, CVPR 2021; DBT adaptation of Konz et al., PICARD, MedIA 2023"
    variants = ("score",)
    Config: ClassVar[type[CutPasteConfig]] = CutPasteConfig

    def __init__(self, config: CutPasteConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        with seeded_weights(self.config.seed):
            self.net = CutPasteNet(self.config.head_layers).to(self.device).eval()
        self.density: GaussianDensity | None = None
        self.density_grid = (1, 1)  # (rows, cols) of per-location densities
        self.train_losses: list[float] = []

    # ---- training ----------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Train the 3-way classifier (resuming from `work_dir`'s checkpoint if any), then fit the density."""
        cfg = self.config
        rng, gen = seeded_generators(cfg.seed, self.device)
        if cfg.pretrained_path:
            self.net.load_pretrained_encoder(cfg.pretrained_path)
        optimizer = torch.optim.SGD(self.net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.steps, 1))
        labels = torch.arange(3, device=self.device).repeat_interleave(cfg.batch_originals)
        mode = TrainingMode(cfg, self.device)
        crops = CropStream.for_config(cfg, train, cfg.batch_originals, cfg.window, self.device, key=(cfg.seed, 0))
        self.net.train()
        with mode.applied([self.net]), crops:
            self.train_losses = run_steps(
                lambda step: F.cross_entropy(self.net(mode.batch(self._training_batch(crops, step, rng, gen)))[2]
                                             .float(), labels),
                optimizer, cfg.steps, self.name, config=cfg, work_dir=self.work_dir, modules={"net": self.net},
                rng=rng, gen=gen, scheduler=schedule, mode=mode)
        self.net.eval()
        self._fit_density(train, rng)

    def _training_batch(self, crops: CropStream, step: int, rng: np.random.Generator,
                        gen: torch.Generator) -> torch.Tensor:
        """3B x 1 x P x P: jittered tissue crops, their CutPaste and their Scar versions (labels 0, 1, 2)."""
        images, breast = crops.take(step, rng)
        images = color_jitter(images, gen)
        pasted = cutpaste(images, breast, gen)[0]
        scarred = cutpaste_scar(images, breast, gen)[0]
        return torch.cat([images, pasted, scarred])[:, None]

    def prepare_untrained(self, train: Sequence[Slice]) -> None:
        self.net.eval()
        self._fit_density(train, np.random.default_rng(self.config.seed))

    # ---- density -----------------------------------------------------------------------------------------
    def _embed(self, windows: torch.Tensor) -> torch.Tensor:
        features, projected, _ = self.net(windows)
        return F.normalize(features if self.config.embedding == "backbone" else projected, dim=1)

    def _fit_density(self, train: Sequence[Slice], rng: np.random.Generator) -> None:
        """One Gaussian over the tissue windows of the training slices (or one per grid location)."""
        cfg = self.config
        if cfg.density == "per_location":
            self.density_grid = (max((h - cfg.window) // cfg.stride + 1 for h, _ in (s.shape for s in train)),
                                 max((w - cfg.window) // cfg.stride + 1 for _, w in (s.shape for s in train)))
        else:
            self.density_grid = (1, 1)
        density = GaussianDensity(self.net.embedding_dims[cfg.embedding], self.density_grid[0] * self.density_grid[1],
                                  device=self.device)
        density.reset()
        for sl in train:
            image, breast = sl.load()
            out = self._run(image, breast, tissue_only=True, limit=cfg.density_windows_per_slice, rng=rng)
            if out.outputs:
                density.update(out.outputs["embedding"], self._locations(out))
        self.density = density.finalize()

    def _run(self, image: np.ndarray, breast: np.ndarray, tissue_only: bool, limit: int | None = None,
             rng: np.random.Generator | None = None, scoring: bool = False) -> GridOutputs:
        """Embeddings of the slice's windows; when scoring, under the config's execution mode."""
        cfg = self.config
        fn = self.execute(self._embedding) if scoring else self._embedding
        return run_on_grid(fn, image, breast, cfg.window, cfg.stride, cfg.batch_size, self.device, tissue_only,
                           limit, rng)

    def _embedding(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embedding": self._embed(windows)}

    def _locations(self, out: GridOutputs) -> torch.Tensor | None:
        """Per-location density index of each window; windows beyond the training grid use the nearest cell."""
        if self.config.density == "global":
            return None
        rows, cols = self.density_grid
        return out.rows.clamp(max=rows - 1) * cols + out.cols.clamp(max=cols - 1)

    # ---- scoring -----------------------------------------------------------------------------------------
    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.density is None:
            raise RuntimeError("cutpaste: call fit() (or prepare_untrained / load) before scoring")
        return {"score": self.density.score(self._embed(windows))}

    def score_map(self, sl: Slice) -> Heatmaps:
        if self.config.density == "global":
            return super().score_map(sl)
        # per-location scoring needs each window's grid position, which the engine's scorer does not see
        if self.density is None:
            raise RuntimeError("cutpaste: call fit() (or prepare_untrained / load) before scoring")
        image, breast = sl.load()
        out = self._run(image, breast, tissue_only=self.config.skip_background, scoring=True)
        self.last_window_count = len(out.indices)
        if not out.outputs:
            return {"score": np.zeros(image.shape, np.float32)}
        scores = self.density.score(out.outputs["embedding"], self._locations(out))
        return {"score": assemble_outputs(out, scores, self.config.assembly)}

    # ---- persistence -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        if self.density is not None:
            state |= {f"density.{k}": v for k, v in self.density.state_dict().items()}
            state["density.grid"] = torch.tensor(self.density_grid)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        net = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        density = {k[8:]: v for k, v in state.items() if k.startswith("density.")}
        unknown = sorted(k for k in state if not k.startswith(("net.", "density.")))
        if unknown:
            raise ValueError(f"cutpaste: unexpected state keys {unknown}")
        self.net.load_state_dict(net)
        self.net.eval()
        if density:
            self.density_grid = tuple(int(v) for v in density.pop("grid"))
            self.density = GaussianDensity(self.net.embedding_dims[self.config.embedding],
                                           self.density_grid[0] * self.density_grid[1], device=self.device)
            self.density.load_state_dict(density)
