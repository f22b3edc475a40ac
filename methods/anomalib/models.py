"""The model table: one row per anomalib model, each registered as its own method. A new model is one row."""
from __future__ import annotations

from torch import nn

from .adapter import AnomalibConfig, ModelSpec, register_model
from .efficientad import EfficientAd
from .recipes import Gaussians, MemoryBank, SimulatedAnomalies, Trained

_IMAGE = "anomalib.models.image"


def _draem_width(model: nn.Module, config: AnomalibConfig) -> None:
    """DRAEM at another width (anomalib's: 128 reconstructive, 64 discriminative): the CPU demo's is narrower."""
    if config.width != 128:
        from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork, ReconstructiveSubNetwork

        model.reconstructive_subnetwork = ReconstructiveSubNetwork(base_width=config.width)
        model.discriminative_subnetwork = DiscriminativeSubNetwork(in_channels=6, out_channels=2,
                                                                   base_width=config.width // 2)

MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("patchcore", "Roth et al., Towards Total Recall in Industrial Anomaly Detection (PatchCore), CVPR 2022",
              f"{_IMAGE}.patchcore.torch_model:PatchcoreModel",
              lambda c: {"layers": list(c.layers), "backbone": c.backbone, "pre_trained": False,
                         "num_neighbors": c.num_neighbors},
              MemoryBank(), ("feature_extractor",), backbone_modules=("feature_extractor.feature_extractor",),
              frozen=("feature_extractor",)),
    ModelSpec("padim", "Defard et al., PaDiM: a Patch Distribution Modeling Framework, ICPR 2021",
              f"{_IMAGE}.padim.torch_model:PadimModel",
              lambda c: {"backbone": c.backbone, "layers": list(c.layers), "pre_trained": False,
                         "n_features": c.n_features},
              Gaussians(), ("feature_extractor",), backbone_modules=("feature_extractor.feature_extractor",),
              frozen=("feature_extractor",)),
    ModelSpec("stfpm", "Wang et al., Student-Teacher Feature Pyramid Matching for Anomaly Detection, BMVC 2021",
              f"{_IMAGE}.stfpm.torch_model:STFPMModel",
              lambda c: {"layers": list(c.layers), "backbone": c.backbone},
              Trained(), ("teacher_model", "student_model"), backbone_modules=("teacher_model.feature_extractor",),
              frozen=("teacher_model",), optimizer="sgd", trainable=("student_model",),
              loss=f"{_IMAGE}.stfpm.loss:STFPMLoss"),
    ModelSpec("efficientad", "Batzner et al., EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level "
              "Latencies, WACV 2024", f"{_IMAGE}.efficient_ad.torch_model:EfficientAdModel",
              lambda c: {"teacher_out_channels": c.teacher_channels, "model_size": c.model_size,
                         "padding": False, "pad_maps": True},
              EfficientAd(), ("teacher", "student", "ae"), frozen=("teacher",), normalise=False,
              trainable=("student", "ae"), lr_drops=(0.95,), teacher=True),
    ModelSpec("draem", "Zavrtanik et al., DRAEM: a Discriminatively Trained Reconstruction Embedding for Surface "
              "Anomaly Detection, ICCV 2021", f"{_IMAGE}.draem.torch_model:DraemModel",
              lambda c: {"sspcab": False},
              SimulatedAnomalies(), ("reconstructive_subnetwork", "discriminative_subnetwork"), normalise=False,
              lr_drops=(400 / 700, 600 / 700), loss=f"{_IMAGE}.draem.loss:DraemLoss", adapt=_draem_width),
)

METHODS = {spec.name: register_model(spec) for spec in MODELS}
