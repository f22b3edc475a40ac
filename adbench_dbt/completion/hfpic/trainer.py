"""Training HFPIC: grey palette, then stage 1 (transformer) and stage 2 (guided upsampler + PatchGAN), one fit.

One progress bar and one train-log.jsonl count stage-1 steps then stage-2 steps; `<work_dir>/checkpoint.pt`
(every `checkpoint_every` steps and at the end) holds both stages' networks, optimisers, the stage-1 schedule,
the step, the numpy and torch RNG streams and the log's sums, so a killed fit resumes to the weights of an
uninterrupted one (bitwise on CPU). The palette is a function of the seed and the data, recomputed on resume.

Stage 1 (ICT): AdamW lr 3e-4, betas (0.9, 0.95), wd 0, grad-clip 1.0, linear warm-up then cosine, floored at
0.1x; cross-entropy on the hole tokens (averaged over holes, ICT's `dynamic_weight`). Training masks: free-form
brush strokes on the token grid, plus the centred hole for `centred_hole_prob` of them; random flips.
Stage 2 (ICT): prior = ground truth bilinear-down to 32, quantised to the palette, bicubic up; L1 / mean(mask),
0.1 non-saturating adversarial (critic: 0.5 (BCE real + BCE fake), lr x0.1), Adam (0, 0.9); perceptual 0.1 and
style 250 on VGG19 features only with a local `perceptual_weights` file (nothing can be downloaded here).
Both stages run in the shared `TrainingMode` (forwards under its autocast; palette quantisation, losses, Gram
matrices in fp32) and draw crops from one `CropStream` per stage (loader_workers).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from adbench_dbt.completion.hfpic.palette import fit_grey_palette
from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import CheckpointError
from adbench_dbt.io import load_weights
from adbench_dbt.sampling import CropStream, sample_tissue_crops
from adbench_dbt.training import (CHECKPOINT_FILE, TrainingMode, TrainingProgress, announce_resume, check_resumable,
                                  resume_settings, rng_state, save_checkpoint, set_rng_state)

if TYPE_CHECKING:
    from adbench_dbt.completion.hfpic.backbone import HfpicBackbone, HfpicConfig

# VGG19 `features` indices: relu1_1 .. relu5_1 (perceptual) and relu2_2, relu3_4, relu4_4, relu5_2 (style)
PERCEPTUAL_LAYERS, STYLE_LAYERS = (1, 6, 11, 20, 29), (8, 17, 26, 31)


def ict_lr_factor(step: int, warmup: int, total: int) -> float:
    """ICT's schedule: linear warm-up, then cosine decay floored at 0.1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))


def free_form_holes(count: int, grid: int, rng: np.random.Generator, strokes: int = 4,
                    length: int = 8) -> torch.Tensor:
    """count x grid*grid random brush-stroke masks (True = hole): random walks painted with a random radius."""
    start = rng.uniform(0, grid, (count, strokes, 1, 2))
    points = start + np.cumsum(rng.normal(0, grid / 16, (count, strokes, length, 2)), axis=2)
    radius = rng.uniform(0.5, grid / 10, (count, strokes, 1))
    active = rng.random((count, strokes)) < 0.75
    yy, xx = np.mgrid[:grid, :grid]
    cells = np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.float64)  # grid^2 x 2
    dist2 = ((points[..., None, :] - cells) ** 2).sum(-1)  # count x strokes x length x grid^2
    painted = (dist2 <= radius[..., None] ** 2).any(axis=2) & active[..., None]
    return torch.from_numpy(painted.any(axis=1))


class VGGFeatures(nn.Module):
    """VGG19 conv features from a local weights file (torchvision `vgg19` keys, `features.*` or bare indices)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from torchvision.models import vgg19

        self.features = vgg19(weights=None).features[:max(STYLE_LAYERS) + 1]
        state = load_weights(path)
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: expected a VGG19 state dict")
        state = {k[len("features."):] if k.startswith("features.") else k: v for k, v in state.items()}
        wanted = self.features.state_dict().keys()
        missing = sorted(wanted - state.keys())
        if missing:
            raise CheckpointError(f"{path}: not VGG19 weights (missing {missing[:3]}); expected torchvision's vgg19 "
                                  "state dict")
        try:
            self.features.load_state_dict({k: state[k] for k in wanted})
        except RuntimeError as err:
            raise CheckpointError(f"{path}: VGG19 weights of the wrong shapes ({str(err).splitlines()[0]})") from None
        self.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """[0, 1] images (1 or 3 channels) -> {layer index: activation} for the perceptual and style layers."""
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in PERCEPTUAL_LAYERS or index in STYLE_LAYERS:
                out[index] = x
        return out


def _gram(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    f = x.flatten(2)
    return f @ f.transpose(1, 2) / (c * h * w)


class HfpicTrainer:
    """Both stages of one HFPIC backbone, as one resumable run of stage1_steps + stage2_steps steps."""

    def __init__(self, backbone: "HfpicBackbone") -> None:
        self.backbone, cfg = backbone, backbone.config
        self.config = cfg
        self.opt1 = torch.optim.AdamW(backbone.transformer.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                                      weight_decay=0.0)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.opt1, lambda s: ict_lr_factor(s, cfg.warmup_steps, cfg.stage1_steps))
        self.opt_g = torch.optim.Adam(backbone.upsampler.parameters(), lr=cfg.upsampler_lr, betas=(0.0, 0.9))
        self.opt_d = torch.optim.Adam(backbone.patch_critic.parameters(), lr=cfg.upsampler_lr * cfg.critic_lr_ratio,
                                      betas=(0.0, 0.9))
        self.vgg = VGGFeatures(cfg.perceptual_weights).to(backbone.device) if cfg.perceptual_weights else None
        self.rng = np.random.default_rng([cfg.seed, 0])
        self.step_count = 0
        self.mode = TrainingMode(cfg, backbone.device)
        self.crops: tuple[CropStream, CropStream] | None = None  # (stage 1, stage 2) streams of the running fit

    @property
    def total(self) -> int:
        return self.config.stage1_steps + self.config.stage2_steps

    # ---- data -------------------------------------------------------------------------------------------
    def _crop_streams(self, slices: Sequence[Slice], config: HfpicConfig) -> tuple[CropStream, CropStream]:
        """Stage 1 and stage 2 crops (their batch sizes differ); with device_crops both cut from one upload."""
        device, window, fraction = self.backbone.device, config.window, config.min_tissue_fraction
        first = CropStream.for_config(config, slices, config.stage1_batch, window, device, key=(config.seed, 0, 0),
                                      min_tissue_fraction=fraction)
        return first, CropStream.for_config(config, slices, config.stage2_batch, window, device,
                                            key=(config.seed, 0, 1), min_tissue_fraction=fraction,
                                            on_device=first.on_device)

    def _batch(self, slices: Sequence[Slice], count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """count x 1 x P x P flipped tissue crops and their count x g*g token-grid training holes."""
        cfg, b = self.config, self.backbone
        crops = (self.crops or self._crop_streams(slices, cfg.model_copy(update={"loader_workers": 0})))[
            int(self.step_count >= cfg.stage1_steps)]
        images = crops.take(self.step_count, self.rng)[0]
        flips = torch.from_numpy(self.rng.random((count, 2)) < 0.5).to(b.device)
        images = torch.where(flips[:, :1, None], images.flip(-1), images)
        images = torch.where(flips[:, 1:, None], images.flip(-2), images)
        holes = free_form_holes(count, cfg.token_grid, self.rng)
        centred = torch.from_numpy(self.rng.random(count) < cfg.centred_hole_prob)[:, None]
        holes = (holes | (centred & b.token_holes.cpu()) | ~holes.any(dim=1, keepdim=True) & b.token_holes.cpu())
        return self.mode.batch(images[:, None]), holes.to(b.device)

    def fit_palette(self, slices: Sequence[Slice]) -> None:
        """K-means of the 32 x 32 pixel values of `palette_windows` normal training windows (own seeded stream)."""
        cfg, b = self.config, self.backbone
        images, _ = sample_tissue_crops(slices, cfg.palette_windows, cfg.window, np.random.default_rng([cfg.seed, 1]),
                                        cfg.min_tissue_fraction)
        small = F.interpolate(torch.from_numpy(images)[:, None], size=(cfg.token_grid,) * 2, mode="bilinear",
                              antialias=True, align_corners=False)
        b.palette = fit_grey_palette(small.clamp(0, 1), cfg.palette_size).to(b.device)

    # ---- steps ------------------------------------------------------------------------------------------
    def step(self, slices: Sequence[Slice]) -> dict[str, torch.Tensor]:
        """One training step of the stage this step belongs to."""
        return self.stage1_step(slices) if self.step_count < self.config.stage1_steps else self.stage2_step(slices)

    def stage1_step(self, slices: Sequence[Slice]) -> dict[str, torch.Tensor]:
        b = self.backbone
        images, holes = self._batch(slices, self.config.stage1_batch)
        tokens = b.tokens(images)
        with self.mode.autocast():
            logits = b.transformer(tokens, holes)
        loss = F.cross_entropy(logits[holes].float(), tokens[holes])
        self.opt1.zero_grad(set_to_none=True)
        self.mode.step(loss, self.opt1, clip=(b.transformer.parameters(), 1.0))
        self.schedule.step()
        return {"token_ce": loss.detach()}

    def stage2_step(self, slices: Sequence[Slice]) -> dict[str, torch.Tensor]:
        cfg, b = self.config, self.backbone
        images, token_holes = self._batch(slices, cfg.stage2_batch)
        g = cfg.token_grid
        holes = F.interpolate(token_holes.float().view(-1, 1, g, g), size=(cfg.window,) * 2, mode="nearest")
        with torch.no_grad():
            prior_tokens = b.tokens(images)  # the ground truth quantised to the palette (K = 1 nearest)
        truth = self.mode.batch(images.expand(-1, cfg.channels, -1, -1))
        prior = self.mode.batch(b.prior(prior_tokens))
        critic, autocast = b.patch_critic, self.mode.autocast
        with autocast():
            out = b.upsampler(truth, holes, prior)
            real, fake = critic(truth), critic(out.detach())
        out, real, fake = out.float(), real.float(), fake.float()  # BCE is fp32-only under autocast
        loss_d = 0.5 * (F.binary_cross_entropy(real, torch.ones_like(real))
                        + F.binary_cross_entropy(fake, torch.zeros_like(fake)))
        self.opt_d.zero_grad(set_to_none=True)
        self.mode.step(loss_d, self.opt_d)
        critic.requires_grad_(False)
        try:
            with autocast():
                judged = critic(out)
            judged = judged.float()
            adversarial = F.binary_cross_entropy(judged, torch.ones_like(judged))
            l1 = F.l1_loss(out, truth) / holes.mean()
            loss_g = cfg.adversarial_weight * adversarial + l1
            losses = {"l1": l1.detach(), "adv_g": adversarial.detach(), "critic": loss_d.detach()}
            if self.vgg is not None:
                perceptual, style = self._vgg_losses(out, truth, holes)
                loss_g = loss_g + cfg.perceptual_weight * perceptual + cfg.style_weight * style
                losses |= {"perceptual": perceptual.detach(), "style": style.detach()}
            self.opt_g.zero_grad(set_to_none=True)
            self.mode.step(loss_g, self.opt_g)
        finally:
            critic.requires_grad_(True)
        return losses

    def _vgg_losses(self, out: torch.Tensor, truth: torch.Tensor,
                    holes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ICT's perceptual (L1 of relu1_1..relu5_1) and style (L1 of Gram matrices on the hole) losses."""
        assert self.vgg is not None
        with self.mode.autocast():
            fo, ft = self.vgg(out), self.vgg(truth)
            so, st = self.vgg(out * holes), self.vgg(truth * holes)
        perceptual = sum(F.l1_loss(fo[i].float(), ft[i].float()) for i in PERCEPTUAL_LAYERS)
        style = sum(F.l1_loss(_gram(so[i].float()), _gram(st[i].float())) for i in STYLE_LAYERS)
        return perceptual, style

    # ---- checkpoints --------------------------------------------------------------------------------------
    def _modules(self) -> dict[str, nn.Module]:
        return self.backbone.networks()

    def _optimizers(self) -> dict[str, Any]:
        return {"transformer": self.opt1, "upsampler": self.opt_g, "critic": self.opt_d, "schedule": self.schedule}

    def save(self, path: Path, progress: TrainingProgress) -> None:
        save_checkpoint(path, {
            "step": self.step_count, "total": self.total, "config": resume_settings(self.config),
            "modules": {k: m.state_dict() for k, m in self._modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
            "rng": rng_state(self.rng), "progress": progress.state_dict(), "mode": self.mode.state_dict()})

    def resume(self, path: Path) -> dict[str, Any]:
        state = load_weights(path, map_location="cpu")
        expected = {"step", "total", "config", "modules", "optimizers", "rng", "progress"}
        if not isinstance(state, dict) or not expected <= set(state):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"{path}: not an HFPIC training checkpoint (keys {found})")
        check_resumable(state["config"], self.config, path)
        for name, module in self._modules().items():
            try:
                module.load_state_dict(state["modules"][name])
            except (KeyError, RuntimeError) as err:
                raise CheckpointError(f"{path}: {name} does not match the network ({str(err)[:160]})") from None
        for name, opt in self._optimizers().items():
            opt.load_state_dict(state["optimizers"][name])
        set_rng_state(state["rng"], self.rng)
        self.mode.load_state_dict(state.get("mode"))
        self.step_count = int(state["step"])
        return state["progress"]

    def train(self, slices: Sequence[Slice], work_dir: Path | None, name: str) -> None:
        cfg, b = self.config, self.backbone
        if cfg.palette_file is None:
            self.fit_palette(slices)
        path = Path(work_dir) / CHECKPOINT_FILE if work_dir is not None else None
        progress_state = None
        if path is not None and path.exists():
            progress_state = self.resume(path)
            announce_resume(name, self.step_count, self.total, path)
        else:
            torch.manual_seed(cfg.seed)  # dropout and sampling draws: one seed drives a whole fit
        b.transformer.train()
        b.upsampler.train()
        b.patch_critic.train()
        self.crops = self._crop_streams(slices, cfg)
        try:
            with self.mode.applied(b.networks().values()), self.crops[0], self.crops[1], TrainingProgress(
                    name, self.total, cfg, work_dir, progress_state, mode=self.mode) as progress:
                while self.step_count < self.total:
                    losses = self.step(slices)
                    self.step_count += 1
                    progress.update(losses)
                    if path is not None and (self.step_count % cfg.checkpoint_every == 0
                                             or self.step_count == self.total):
                        self.save(path, progress)
        finally:
            self.crops = None
            for net in b.networks().values():
                net.eval()
