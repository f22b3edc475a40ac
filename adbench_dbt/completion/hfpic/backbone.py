"""HFPIC as a completion backbone: window -> 32 x 32 palette tokens -> sampled hole tokens -> guided upsampler.

All N windows x M completions go through each transformer forward and the upsampler together. Completions are
returned in [-1, 1] (like PICARD's), so MCD distances share PICARD's scale and a PICARD critic can encode them.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from adbench_dbt.completion.backbone import CompletionBackbone, Completions
from adbench_dbt.completion.hfpic.palette import dequantise, quantise, read_ict_palette, to_grey
from adbench_dbt.completion.hfpic.sampling import sample_parallel, sample_raster
from adbench_dbt.completion.hfpic.transformer import TokenTransformer
from adbench_dbt.completion.hfpic.upsampler import GuidedUpsampler, PatchCritic
from adbench_dbt.config import WindowConfig, content_field
from adbench_dbt.data.slices import Slice
from adbench_dbt.hardware import count_flops
from adbench_dbt.training import TrainingConfig, seeded_weights

NETWORKS = ("transformer", "upsampler", "patch_critic")


class HfpicConfig(WindowConfig, TrainingConfig):
    """Geometry, both stages' networks, sampling and training of HFPIC (defaults = ICT / PICARD's settings)."""

    hole: int = Field(128, ge=4, description="side of the centred hole")
    completions: int = Field(10, ge=1, description="M completions per window")
    token_grid: int = Field(32, ge=4, description="side of the token image (bilinear down from the window)")
    palette_size: int = Field(512, ge=2, description="K palette entries (grey K-means of training windows)")
    palette_file: str | None = content_field("ICT's kmeans_centers.npy (K x 3 in [-1, 1]) instead of the grey "
                                             "K-means palette (needed for official weights)")
    channels: Literal[1, 3] = Field(1, description="upsampler colour channels: 1 grey-native, 3 = ICT's RGB nets")
    upsampler_cnum: int = Field(64, ge=4, description="stage-2 generator and critic width (official: 64)")
    n_layer: int = Field(35, ge=1)
    n_embd: int = Field(1024, ge=8)
    n_head: int = Field(8, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1, description="transformer dropout while training (0 when sampling)")
    sampling: Literal["raster", "parallel"] = Field("raster", description="raster: ICT's one forward per hole "
                                                    "token; parallel: MaskGIT-style in parallel_steps forwards")
    parallel_steps: int = Field(8, ge=1, description="forwards of the parallel sampler")
    top_k: int = Field(40, ge=1)
    temperature: float = Field(1.0, gt=0)
    # training, both stages (AdamW + warm-up/cosine for stage 1; Adam (0, 0.9) GAN for stage 2)
    palette_windows: int = Field(256, ge=1, description="training windows whose 32 x 32 pixels fit the palette")
    min_tissue_fraction: float = Field(0.05, ge=0, le=1)
    centred_hole_prob: float = Field(0.5, ge=0, le=1, description="share of training masks that add the centred "
                                                                 "hole to the free-form strokes")
    stage1_steps: int = Field(100_000, ge=0)
    stage1_batch: int = Field(6, ge=1)
    lr: float = Field(3e-4, gt=0)
    warmup_steps: int = Field(1000, ge=0)
    stage2_steps: int = Field(100_000, ge=0)
    stage2_batch: int = Field(32, ge=1)
    upsampler_lr: float = Field(1e-4, gt=0)
    critic_lr_ratio: float = Field(0.1, gt=0)
    adversarial_weight: float = Field(0.1, ge=0)
    perceptual_weight: float = Field(0.1, ge=0)
    style_weight: float = Field(250.0, ge=0)
    perceptual_weights: str | None = content_field("local VGG19 weights file for the perceptual/style terms; "
                                                   "without one both terms are off")

    @model_validator(mode="after")
    def _check(self) -> "HfpicConfig":
        if self.hole >= self.window or (self.window - self.hole) % 2:
            raise ValueError(f"hole ({self.hole}) must be smaller than the window ({self.window}) and centrable "
                             "(window - hole even)")
        if self.window % 4:
            raise ValueError(f"window ({self.window}) must be a multiple of 4 (two stride-2 upsampler stages)")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self


class HfpicBackbone(CompletionBackbone):
    """Stage 1 (token transformer + palette) and stage 2 (guided upsampler + its PatchGAN critic)."""

    value_range = (-1.0, 1.0)

    def __init__(self, config: HfpicConfig, device: torch.device | str = "cpu") -> None:
        super().__init__(config.window, config.hole, config.completions, device)
        self.config = config
        g = config.token_grid
        if config.palette_file is not None:
            palette = read_ict_palette(config.palette_file)
        else:  # replaced by the K-means palette in fit; evenly spaced greys until then (random-weight benchmarks)
            palette = torch.linspace(0, 1, config.palette_size)[:, None]
        with seeded_weights(config.seed):
            self.transformer = TokenTransformer(len(palette), g * g, config.n_layer, config.n_embd, config.n_head,
                                                config.dropout)
            self.upsampler = GuidedUpsampler(config.channels, cnum=config.upsampler_cnum)
            self.patch_critic = PatchCritic(config.channels, config.upsampler_cnum)
        for net in self.networks().values():
            net.to(self.device).eval()
        self.palette = palette.to(self.device)
        # the centred hole on the token grid (nearest resize, as ICT resizes its mask)
        self.token_holes = F.interpolate(self.hole_mask, size=(g, g), mode="nearest").flatten(1) > 0.5
        self.last_forwards = 0  # transformer forwards of the last `complete` call (cost per batch of windows)

    def networks(self) -> dict[str, torch.nn.Module]:
        return {name: getattr(self, name) for name in NETWORKS}

    # ---- the pieces both training and completion use -----------------------------------------------------
    def tokens(self, windows: torch.Tensor) -> torch.Tensor:
        """B x 1 x P x P in [0, 1] -> B x g*g palette indices of the bilinear (antialiased, like PIL) 32 x 32."""
        g = self.config.token_grid
        small = F.interpolate(windows, size=(g, g), mode="bilinear", antialias=True, align_corners=False)
        return quantise(small.clamp(0, 1), self.palette)

    def prior(self, tokens: torch.Tensor) -> torch.Tensor:
        """B x g*g tokens -> B x C x P x P guide: palette colours, bicubic up to the window, in [0, 1]."""
        colours = dequantise(tokens, self.palette, self.config.token_grid)
        colours = to_grey(colours) if self.config.channels == 1 else colours.expand(-1, 3, -1, -1)
        up = F.interpolate(colours, size=(self.window, self.window), mode="bicubic", align_corners=False)
        return up.clamp(0, 1)

    def upsample(self, windows: torch.Tensor, holes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Stage 2 on grey windows: B x 1 x P x P output in [0, 1] (RGB nets: input replicated, output as luma)."""
        images = windows.expand(-1, self.config.channels, -1, -1)
        return to_grey(self.upsampler(images, holes, self.prior(tokens)))

    def sample(self, tokens: torch.Tensor, holes: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The configured sampler over B token images at once: (filled tokens, transformer forwards run)."""
        cfg = self.config
        if cfg.sampling == "raster":
            return sample_raster(self.transformer, tokens, holes, cfg.top_k, cfg.temperature)
        return sample_parallel(self.transformer, tokens, holes, cfg.parallel_steps, cfg.top_k, cfg.temperature)

    def sampling_forwards(self) -> int:
        """Transformer forwards per `complete` call (each over all windows x M sequences): the hole tokens in
        raster mode, `parallel_steps` in parallel mode (fewer only if there are fewer holes)."""
        holes = int(self.token_holes.sum())
        return holes if self.config.sampling == "raster" else min(self.config.parallel_steps, holes)

    def cost_probe(self, windows: torch.Tensor, repeats: int = 1) -> dict[str, Any]:
        """Per-window cost from measured components, for sampling too slow to run whole on a CPU (paper raster:
        256 forwards of a 443M-parameter transformer per window): median seconds of one transformer forward over
        the N x M sequences and of the rest of a completion (tokens, upsampler, merge), combined as
        forwards x forward + rest. `estimated` marks the extrapolation."""
        n, m = windows.shape[0], self.completions
        tokens = self.tokens(windows).repeat_interleave(m, dim=0)
        holes = self.token_holes.expand(n * m, -1)
        repeated = windows.repeat_interleave(m, dim=0)

        def timed(work: Callable[[], Any]) -> float:
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                work()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                times.append(time.perf_counter() - started)
            return statistics.median(times)

        with torch.inference_mode():
            self.transformer(tokens[:1], holes[:1])  # warm-up (one sequence: a full one costs minutes on a CPU)
            forward = timed(lambda: self.transformer(tokens, holes))
            rest = timed(lambda: self.upsample(repeated, self.hole_mask, self.tokens(windows).repeat_interleave(m, 0)))
            flop_forward = count_flops(lambda: self.transformer(tokens, holes))
            flop_rest = count_flops(lambda: self.upsample(repeated, self.hole_mask,
                                                          self.tokens(windows).repeat_interleave(m, 0)))
        forwards = self.sampling_forwards()
        return {"s_per_window": (forwards * forward + rest) / n, "estimated": True, "forwards_per_window": forwards / n,
                "flop_per_window": (forwards * flop_forward + flop_rest) / n,
                "sequences_per_forward": n * m, "s_per_forward": forward, "s_rest": rest}

    # ---- CompletionBackbone ------------------------------------------------------------------------------
    def complete(self, windows: torch.Tensor) -> Completions:
        n, m = windows.shape[0], self.completions
        tokens = self.tokens(windows).repeat_interleave(m, dim=0)
        holes = self.token_holes.expand(n * m, -1)
        with self.completion_keys():  # each completion of a window its own samples, whatever the batch
            tokens, self.last_forwards = self.sample(tokens, holes)
        repeated = windows.repeat_interleave(m, dim=0)
        out = self.upsample(repeated, self.hole_mask, tokens)
        done = out * self.hole_mask + repeated * (1 - self.hole_mask)  # PICARD's code does not merge; same hole
        return Completions(windows * 2 - 1, (done * 2 - 1).unflatten(0, (n, m)), self.box)

    def fit(self, train: Sequence[Slice], work_dir: Path | None, name: str) -> None:
        from adbench_dbt.completion.hfpic.trainer import HfpicTrainer

        HfpicTrainer(self).train(train, work_dir, name)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "palette": self.palette.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {*NETWORKS, "palette"}
        if set(state) != expected:
            raise ValueError(f"state keys {sorted(state)}, expected {sorted(expected)}")
        palette = state["palette"]
        if tuple(palette.shape) != tuple(self.palette.shape):
            raise ValueError(f"saved palette has shape {tuple(palette.shape)}, the config builds "
                             f"{tuple(self.palette.shape)}")
        super().load_state_dict({k: state[k] for k in NETWORKS})
        self.palette = palette.to(self.device, torch.float32)

    def load_foreign(self, directory: Path) -> None:
        """Official ICT weights (see `official.py`)."""
        from adbench_dbt.completion.hfpic.official import load_official_ict

        load_official_ict(self, Path(directory))

    @classmethod
    def foreign_files(cls, path: Path, config: HfpicConfig) -> list[Path] | None:
        from adbench_dbt.completion.hfpic.official import find_ict_files

        if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
            return list(find_ict_files(Path(path)))
        return None
