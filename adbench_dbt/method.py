"""The one interface every method implements (scikit-learn style: configure, fit, score, save/load).

A method is a class with a `Config` (pydantic), `fit(train, val)` on normal slices, and `score_map(slice)`
returning one float32 H x W heatmap per score variant from a single pass. Sliding-window methods subclass
`WindowMethod` and implement only `score_windows`; the shared engine (`adbench_dbt.windows`) does the rest.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from adbench_dbt.config import MethodConfig, WindowConfig, build_config, load_profiles
from adbench_dbt.data.slices import Slice
from adbench_dbt.errors import CheckpointError, ConfigError
from adbench_dbt.execution import WindowExecutor, WindowFn, check_execution, print_notice, to_channels_last
from adbench_dbt.io import atomic_directory, load_state_file
from adbench_dbt.windows import score_slice, warmup_windows

Heatmaps = dict[str, np.ndarray]


class Method(ABC):
    """Base class. Subclasses set `name`, `paper`, `variants`, `Config` and implement fit/score_map.

    Everything the harness may call on a method is declared here, with a default where it is optional:
    `fit`, `score_map` (required); `warmup`, `prepare_untrained`, `state_dict`/`load_state_dict`,
    `from_checkpoint` (foreign checkpoint formats), `checkpoint_files` (what identifies a checkpoint),
    `supports_distributed_fit`, `precision` and `batch_size_used` (recorded with every result).
    """

    name: ClassVar[str]
    paper: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = ("score",)
    notes: ClassVar[str] = ""  # shown by `adbench methods` (e.g. variants that need an extra checkpoint)
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # True when fit() runs on every torchrun rank and synchronises itself (DDP); False: rank 0 fits alone.
    supports_distributed_fit: ClassVar[bool] = False
    # Raised when a code change alters what the method computes from the same config, data and weights: it is part
    # of a run's identity, so a run directory written by the older code is never resumed or reused.
    scores_version: ClassVar[int] = 1

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

    @property
    def precision(self) -> str:
        """The dtype scoring runs in, as recorded on leaderboards; methods that autocast report their dtype."""
        return "fp32"

    @property
    def batch_size_used(self) -> int | None:
        """Windows per forward pass in the last scoring (None for methods that do not batch windows)."""
        return None

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
    def load(cls, directory: str | Path, device: str | torch.device = "cpu",
             config: MethodConfig | None = None) -> "Method":
        """A model saved by `save`. With `config`, the saved weights are loaded into a model built from it (e.g.
        another stride); a config that builds different networks is a CheckpointError naming the file."""
        directory = Path(directory)
        meta = read_saved_meta(directory)
        if meta["method"] != cls.name:
            raise CheckpointError(f"{directory / 'config.json'}: saved method is {meta['method']!r}, "
                                  f"not {cls.name!r}")
        if config is None:
            try:
                config = cls.Config.model_validate(meta["config"])
            except Exception as err:  # pydantic's ValidationError: fields of another harness version
                raise CheckpointError(f"{directory / 'config.json'}: saved config does not validate for "
                                      f"{cls.name!r}: {str(err).splitlines()[0]}") from None
        method = cls(config, device=device)
        method.load_weights_file(directory / "state.pt")
        return method

    def load_weights_file(self, path: Path) -> None:
        """load_state_dict from a torch file; a refused, unreadable or mismatched file is a CheckpointError."""
        load_state_file(path, self.load_state_dict, self.device, f"method {self.name!r} with this config")

    @classmethod
    def from_checkpoint(cls, path: Path, config: MethodConfig, device: str | torch.device = "cpu") -> "Method":
        """A model from a checkpoint in a foreign format (e.g. a paper's released weights). None by default."""
        raise CheckpointError(f"{path}: no config.json (not a saved adbench model), and method {cls.name!r} "
                              "reads no other checkpoint format")

    @classmethod
    def checkpoint_files(cls, path: Path, config: MethodConfig) -> list[Path]:
        """The files whose bytes identify what `restore(path, config)` loads (hashed into the run's identity)."""
        if (path / "config.json").is_file():
            return [path / "config.json", path / "state.pt"]
        return content_files(path)

    @classmethod
    def restore(cls, path: str | Path, config: MethodConfig, device: str | torch.device = "cpu") -> "Method":
        """The one way a checkpoint becomes a model: a `save` directory, else the method's foreign format."""
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"{path}: checkpoint not found")
        if (path / "config.json").is_file():
            return cls.load(path, device=device, config=config)
        return cls.from_checkpoint(path, config, device)


def read_saved_meta(directory: Path) -> dict[str, Any]:
    """config.json of a saved model, checked: {'method': name, 'config': {...}}."""
    meta_path = directory / "config.json"
    if not meta_path.is_file():
        raise CheckpointError(f"{directory}: not a saved adbench model (config.json missing)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: unreadable ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("method"), str) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{meta_path}: expected {{\"method\": name, \"config\": {{...}}}}")
    return meta


def content_files(path: Path) -> list[Path]:
    """The file itself, or every file below a directory (sorted: the hash must not depend on listing order)."""
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def files_sha256(files: Sequence[Path], root: Path) -> str:
    """sha256 over (relative name, bytes) of `files`: the content identity of a checkpoint."""
    digest = hashlib.sha256()
    for path in files:
        try:
            name = path.relative_to(root).as_posix() if path != root else path.name
            digest.update(name.encode() + b"\0")
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError as err:
            raise CheckpointError(f"{path}: cannot read checkpoint ({err.strerror or err})") from None
    return digest.hexdigest()


class WindowMethod(Method):
    """A method that scores P x P windows; the shared engine cuts, batches, skips and assembles them.

    Scoring runs every window function through `execute`, which applies the config's execution mode (precision,
    channels_last, compile, CUDA graphs); fitting calls the functions directly, in fp32.
    """

    Config: ClassVar[type[WindowConfig]] = WindowConfig
    # Why scoring must stay fp32 (measured), for methods whose scores reduced precision destroys; "" = it need not.
    fp32_only: ClassVar[str] = ""

    def __init__(self, config: WindowConfig | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__(config, device)
        self.check_execution(self.config, self.device)
        self.effective_batch_size = self.config.batch_size  # lowered on out-of-memory, grown by auto_batch
        self._batch_probed = False
        self._executors: dict[str, WindowExecutor] = {}

    @abstractmethod
    def score_windows(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """windows: N x 1 x P x P float32 in [0, 1] on self.device -> {variant: N scores} (or N x h x w maps)."""

    @classmethod
    def check_execution(cls, config: WindowConfig, device: torch.device) -> None:
        """Refuse an execution mode this method or device cannot honour, before any work (one line)."""
        check_execution(device, config.precision, config.cuda_graphs)
        if cls.fp32_only and config.precision != "fp32":
            raise ConfigError(f"precision {config.precision}: {cls.name} scores in fp32 only ({cls.fp32_only})")

    @property
    def precision(self) -> str:
        return self.config.precision

    @property
    def batch_size_used(self) -> int | None:
        return self.effective_batch_size

    def networks(self) -> list[torch.nn.Module]:
        """The networks scoring runs (converted to channels_last when asked): every nn.Module attribute by
        default; methods that keep networks elsewhere (a completion backbone) override this."""
        return [value for value in vars(self).values() if isinstance(value, torch.nn.Module)]

    def execute(self, fn: WindowFn, key: str | None = None) -> WindowExecutor:
        """`fn` under the config's execution mode; one executor per function (a compiled graph is built once)."""
        key = key or getattr(fn, "__name__", repr(fn))
        if key not in self._executors:
            cfg = self.config
            if cfg.channels_last and not self._executors:
                to_channels_last(self.networks())
            self._executors[key] = WindowExecutor(fn, self.device, cfg.precision, cfg.channels_last, cfg.compile,
                                                  cfg.cuda_graphs, notice=print_notice)
        return self._executors[key]

    def score_map(self, sl: Slice) -> Heatmaps:
        image, breast = sl.load()
        return self.score_grid(image, breast)

    def score_grid(self, image: np.ndarray, breast: np.ndarray) -> Heatmaps:
        """The engine over `score_windows`: heatmaps of one slice; records the window count and the batch."""
        result = score_slice(self.execute(self.score_windows), image, breast, self.config,
                             self.effective_batch_size, self.device, self.variants,
                             auto_batch=self.config.auto_batch and not self._batch_probed)
        self._batch_probed = True
        self.effective_batch_size = result.batch_size
        self.last_window_count = result.windows
        return result.maps

    def warmup(self, sl: Slice) -> None:
        warmup_windows(self.execute(self.score_windows), sl.image, self.config, self.effective_batch_size,
                       self.device)
