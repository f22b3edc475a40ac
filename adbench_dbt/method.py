"""The one interface every method implements (scikit-learn style: configure, fit, score, save/load).

A method is a class with a `Config` (pydantic), `fit(train, val)` on normal slices, and `score_map(slice)`
returning one float32 H x W heatmap per score variant from a single pass. Sliding-window methods subclass
`WindowMethod` and implement only `score_windows`; the shared engine (`adbench_dbt.windows`) does the rest.
"""
from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from adbench_dbt.config import MethodConfig, WindowConfig, build_config, load_profiles
from adbench_dbt.data.slices import Slice
from adbench_dbt.io import atomic_directory

Heatmaps = dict[str, np.ndarray]


class Method(ABC):
    """Base class. Subclasses set `name`, `paper`, `variants`, `Config` and implement fit/score_map."""

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = ("score",)
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, config: MethodConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} expects a {self.Config.__name__}, got {type(config).__name__}")
        self.device = torch.device(device)
        self.last_window_count = 0  # windows scored by the last score_map call (0 for non-window methods)
        # Where fit() may keep resumable training state (the runner sets <run>/train); None: keep none.
        self.work_dir: Path | None = None

    # ---- profiles ------------------------------------------------------------------------------------------
    @classmethod
    def profiles(cls) -> dict[str, dict[str, Any]]:
        """Named profiles from `profiles.yaml` beside the module that defines the class."""
        return load_profiles(Path(inspect.getfile(cls)).with_name("profiles.yaml"))

    @classmethod
    def from_profile(cls, profile: str = "demo", overrides: dict[str, Any] | None = None,
                     device: str | torch.device = "cpu") -> "Method":
        return cls(build_config(cls.Config, cls.name, cls.profiles(), profile, overrides), device=device)

    # ---- the interface ---------------------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Sequence[Slice], val: Sequence[Slice] | None = None) -> None:
        """Learn from normal slices only."""

    @abstractmethod
    def score_map(self, sl: Slice) -> Heatmaps:
        """{variant: float32 H x W heatmap at the slice's native resolution}; higher = more anomalous."""

    def prepare_untrained(self, train: Sequence[Slice]) -> None:
        """Make scoring possible without training (random weights), for speed benchmarks only.

        Methods whose scoring needs fitted statistics (a density, a memory bank) compute them here from `train`
        with the untrained networks; methods that only need network weights need nothing.
        """

    def warmup(self, sl: Slice) -> None:
        """Run a small amount of scoring work so that timings exclude one-off start-up costs."""

    # ---- persistence -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything fit() learned, as tensors/numbers/strings (loadable with weights_only=True)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{self.name}: unexpected state keys {sorted(state)}")

    def save(self, directory: str | Path) -> Path:
        """Write config.json + state.pt atomically: the directory appears complete or not at all."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            (tmp / "config.json").write_text(json.dumps(
                {"method": self.name, "config": self.config.model_dump(mode="json")}, indent=2))
            torch.save(self.state_dict(), tmp / "state.pt")
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "Method":
        directory = Path(directory)
        meta_path = directory / "config.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{directory}: not a saved {cls.name} model (config.json missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("method") != cls.name:
            raise ValueError(f"{meta_path}: saved method is {meta.get('method')!r}, not {cls.name!r}")
        method = cls(cls.Config.model_validate(meta["config"]), device=device)
        state = torch.load(directory / "state.pt", map_location=method.device, weights_only=True)
        method.load_state_dict(state)
        return method


class WindowMethod(Method):
    """A method that scores P x P windows; the shared engine cuts, batches, skips and assembles them."""

    Config: ClassVar[type[WindowConfig]] = WindowConfig

    def __init__(self, config: WindowConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        self.effective_batch_size = self.config.batch_size  # lowered by the engine after an out-of-memory error

    @abstractmethod
    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """windows: N x 1 x P x P float32 in [0, 1] on self.device -> {variant: N scores} (or N x h x w maps)."""

    def score_map(self, sl: Slice) -> Heatmaps:
        from adbench_dbt.windows import score_slice

        image, breast = sl.load()
        maps = score_slice(self, image, breast)
        self.last_window_count = maps.pop("__windows__")
        return maps

    def warmup(self, sl: Slice) -> None:
        from adbench_dbt.windows import warmup_windows

        warmup_windows(self, sl.image)
