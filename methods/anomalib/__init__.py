"""anomalib's models (PatchCore, PaDiM, STFPM, EfficientAD, DRAEM) behind the harness's method interface, with
offline pretrained backbones and a fast coreset; `models.MODELS` is the table, one row per registered method."""
from .adapter import AnomalibConfig, AnomalibMethod, ModelSpec, register_model
from .models import METHODS, MODELS

__all__ = ["AnomalibConfig", "AnomalibMethod", "METHODS", "MODELS", "ModelSpec", "register_model"]
