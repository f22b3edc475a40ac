"""EfficientAD's recipe without the internet: the teacher from a local file, or distilled here from the pretrained
backbone as the EfficientAD paper distils its teacher from WideResNet-101 (on natural photos that scikit-image ships
plus training windows instead of ImageNet); the student's ImageNet penalty uses the same photos.

Around anomalib's training step (`EfficientAdModel` in training mode returns the student-teacher, autoencoder and
student-autoencoder losses) this does what its Lightning module does: the teacher's channel mean/std before
training, Adam with a x0.1 drop at 95% of the steps, and the 0.9 / 0.995 map quantiles after (on training windows:
the harness gives methods no normal validation slices).
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torch import nn

from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import ConfigError
from adbench_dbt.training import run_steps, seeded_weights

from .adapter import backbone_state, offline_timm
from .backbones import load_into, read_backbone_file
from .recipes import Trained, stage_dir

if TYPE_CHECKING:
    from .adapter import AnomalibMethod

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
GREYSCALE_PROBABILITY = 0.3  # EfficientAD's penalty images: RandomGrayscale(0.3), as in anomalib
QUANTILE_ELEMENTS = 1 << 24  # torch.quantile's input limit


@lru_cache(maxsize=1)
def natural_photos() -> tuple[torch.Tensor, ...]:
    """RGB photos bundled with scikit-image (3 x H x W in [0, 1]): the offline stand-in for ImageNet."""
    from skimage import data

    return tuple(torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255 for name in PHOTOS)


def photo_crops(count: int, size: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """count x 3 x size x size: random square crops (random scale) of the bundled photos, resized to `size`;
    a GREYSCALE_PROBABILITY share turned grey."""
    photos = natural_photos()
    crops = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        side = int(rng.integers(min(size, *photo.shape[1:]), min(photo.shape[1:]) + 1))
        top, left = int(rng.integers(photo.shape[1] - side + 1)), int(rng.integers(photo.shape[2] - side + 1))
        crop = photo[None, :, top:top + side, left:left + side]
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        if rng.random() < GREYSCALE_PROBABILITY:
            crop = (crop * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0).expand(3, -1, -1)
        crops.append(crop)
    if not crops:
        return torch.empty(0, 3, size, size, device=device)
    return torch.stack(crops).clamp(0, 1).to(device)


class TeacherTarget(nn.Module):
    """What the distilled teacher learns to output: PatchCore-style backbone features (each layer 3x3
    average-pooled, upsampled to the first layer's grid, concatenated), projected on their first
    `channels` principal components and standardised, at the teacher's output resolution."""

    def __init__(self, method: "AnomalibMethod") -> None:
        super().__init__()
        cfg = method.config
        with seeded_weights(cfg.seed), offline_timm():
            self.backbone = timm.create_model(cfg.backbone, features_only=True, pretrained=False)
        names = [info["module"] for info in self.backbone.feature_info.info]
        missing = [layer for layer in cfg.layers if layer not in names]
        if missing:
            raise ConfigError(f"layers: {missing} are not feature layers of {cfg.backbone} ({names})")
        self.indices = [names.index(layer) for layer in cfg.layers]
        state, source = backbone_state(cfg)
        if state is None:
            raise ConfigError("teacher_source=distilled needs pretrained backbone weights (backbone_source "
                              "file or packaged); distilling a random backbone teaches nothing")
        load_into(self.backbone, state, source)
        self.backbone.to(method.device).eval()
        self.mean, self.std = method.mean, method.std
        self.channels = cfg.teacher_channels
        self.register_buffer("projection", torch.empty(0))
        self.register_buffer("offset", torch.empty(0))
        self.register_buffer("scale", torch.empty(0))

    @torch.no_grad()
    def features(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        maps = self.backbone((images - self.mean) / self.std)
        maps = [F.avg_pool2d(maps[i], 3, 1, 1) for i in self.indices]
        first = maps[0].shape[-2:]
        joined = torch.cat([maps[0]] + [F.interpolate(m, size=first, mode="bilinear") for m in maps[1:]], 1)
        return F.interpolate(joined, size=size, mode="bilinear")

    @torch.no_grad()
    def fit(self, images: torch.Tensor, size: tuple[int, int]) -> None:
        """Principal directions and standardisation from a sample of images."""
        flat = self.features(images, size).permute(0, 2, 3, 1).reshape(-1, sum(
            self.backbone.feature_info.channels()[i] for i in self.indices))
        if flat.shape[1] < self.channels:
            raise ConfigError(f"teacher_channels {self.channels}: the backbone layers {list(self.indices)} give "
                              f"only {flat.shape[1]} features")
        centred = flat - flat.mean(0)
        _, vectors = torch.linalg.eigh(centred.T @ centred / len(flat))
        self.projection = vectors[:, -self.channels:].flip(1).contiguous()
        projected = flat @ self.projection
        self.offset, self.scale = projected.mean(0), projected.std(0).clamp_min(1e-6)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        flat = self.features(images, size).permute(0, 2, 3, 1) @ self.projection
        return ((flat - self.offset) / self.scale).permute(0, 3, 1, 2)


class EfficientAd(Trained):
    def before(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
               gen: torch.Generator) -> None:
        cfg, model = method.config, method.model
        if cfg.teacher_source == "file":
            if not cfg.teacher_weights:
                raise ConfigError("teacher_weights: teacher_source=file needs a local EfficientAD teacher "
                                  "(PDN state dict); or --set teacher_source=distilled")
            load_into(model.teacher, read_backbone_file(cfg.teacher_weights), cfg.teacher_weights)
        elif cfg.teacher_source == "distilled":
            self.distil_teacher(method, train, rng, gen)
        model.teacher.eval()
        self.teacher_statistics(method, train, rng)

    def distil_teacher(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
                       gen: torch.Generator) -> None:
        """The paper's teacher pretraining: the PDN regresses standardised backbone features (MSE, Adam) on
        half bundled photos, half training windows."""
        cfg, teacher = method.config, method.model.teacher
        target = TeacherTarget(method)
        size = self.teacher_grid(method)
        target.fit(self.distillation_images(method, train, cfg.batch_size, rng), size)
        optimizer = torch.optim.Adam(teacher.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        teacher.train()

        def loss(_: int) -> torch.Tensor:
            images = self.distillation_images(method, train, cfg.train_batch, rng)
            return F.mse_loss(teacher(images), target(images, size))

        run_steps(loss, optimizer, cfg.teacher_steps, f"{method.name} teacher", config=cfg,
                  work_dir=stage_dir(method, "teacher"), modules={"teacher": teacher}, rng=rng, gen=gen)
        teacher.eval()

    @staticmethod
    def teacher_grid(method: "AnomalibMethod") -> tuple[int, int]:
        with torch.no_grad():
            probe = torch.zeros(1, 3, method.input_side, method.input_side, device=method.device)
            return tuple(method.model.teacher(probe).shape[-2:])

    @staticmethod
    def distillation_images(method: "AnomalibMethod", train: Sequence[Slice], count: int,
                            rng: np.random.Generator) -> torch.Tensor:
        photos = photo_crops(count // 2, method.input_side, rng, method.device)
        return torch.cat([photos, method.training_windows(train, count - count // 2, rng)])

    @staticmethod
    @torch.no_grad()
    def teacher_statistics(method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator) -> None:
        """Channel mean/std of the teacher's outputs on training windows (anomalib's teacher_channel_mean_std)."""
        total = square = None
        count = 0
        for batch in method.window_batches(train, rng):
            out = method.model.teacher(batch).double()
            total = out.sum((0, 2, 3)) + (0 if total is None else total)
            square = (out ** 2).sum((0, 2, 3)) + (0 if square is None else square)
            count += out[:, 0].numel()
        mean = total / count
        std = (square / count - mean ** 2).clamp_min(0).sqrt()
        method.model.mean_std["mean"].data = mean.float()[None, :, None, None]
        method.model.mean_std["std"].data = std.float()[None, :, None, None]

    def objective(self, method: "AnomalibMethod") -> Callable[[torch.Tensor, np.random.Generator], torch.Tensor]:
        """anomalib's three losses; the penalty batch is bundled photos in place of ImageNet."""
        def step(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
            penalty = photo_crops(len(batch), method.input_side, rng, method.device)
            return sum(method.model(batch, penalty))

        return step

    @torch.no_grad()
    def after(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator) -> None:
        """anomalib's map_norm_quantiles: 0.9 and 0.995 quantiles of both raw maps over training windows."""
        model = method.model
        model.eval()
        maps_st, maps_ae = [], []
        for batch in method.window_batches(train, rng):
            student, distance = model.compute_student_teacher_distance(batch)
            map_st, map_ae = model.compute_maps(batch, student, distance, normalize=False)
            maps_st.append(map_st.flatten())
            maps_ae.append(map_ae.flatten())
        for key, maps in (("st", maps_st), ("ae", maps_ae)):
            values = torch.cat(maps)
            if len(values) > QUANTILE_ELEMENTS:
                values = values[torch.from_numpy(rng.choice(len(values), QUANTILE_ELEMENTS, replace=False))
                                .to(values.device)]
            model.quantiles[f"qa_{key}"].data = torch.quantile(values, 0.9)
            model.quantiles[f"qb_{key}"].data = torch.quantile(values, 0.995)
