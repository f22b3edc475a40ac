"""Method configurations: pydantic models whose named profiles are data (a `profiles.yaml` beside each method).

Profiles: `paper` = the publication's settings, `demo` = the phantom on a CPU in minutes, `smoke` = seconds for
tests. `--set key=value` overrides are parsed as YAML scalars and validated by the same model, so a typo or a
wrong type is an error that names the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adbench_dbt.errors import ConfigError

AssemblyMode = Literal["grid-bicubic", "centered", "centered-nearest", "averaged"]
Precision = Literal["fp32", "bf16", "fp16"]


def content_field(description: str) -> Any:
    """A config field naming a file or directory whose *contents* change results (pretrained weights, a critic, a
    palette): a run's identity hashes those contents, so replacing the file at the same path starts a new run."""
    return Field(None, description=description, json_schema_extra={"content_identity": True})


def referenced_paths(config: BaseModel) -> dict[str, Path]:
    """{field: path} of the `content_field`s that are set."""
    out = {}
    for name, info in type(config).model_fields.items():
        extra = info.json_schema_extra
        value = getattr(config, name)
        if isinstance(extra, dict) and extra.get("content_identity") and value:
            out[name] = Path(value)
    return out


class MethodConfig(BaseModel):
    """Fields every method has. Subclasses add theirs; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0


class WindowConfig(MethodConfig):
    """Fields of every sliding-window method (the shared engine reads them)."""

    window: int = Field(256, ge=8, description="window side P in pixels")
    stride: int = Field(32, ge=1, description="window stride s in pixels")
    batch_size: int = Field(32, ge=1, description="windows per forward pass (halved automatically on OOM)")
    assembly: AssemblyMode = "grid-bicubic"
    skip_background: bool = Field(False, description="skip windows without breast tissue (off in paper profiles)")
    # execution of scoring (adbench_dbt.execution); training and fitting always run as their own configs say
    precision: Precision = Field("fp32", description="scoring dtype: autocast of the networks; distances, "
                                 "covariances and final reductions stay fp32")
    channels_last: bool = Field(False, description="NHWC networks and window batches")
    compile: bool = Field(False, description="torch.compile the window function (eager fallback with a notice)")
    cuda_graphs: bool = Field(False, description="replay one captured CUDA graph per batch (CUDA only)")
    auto_batch: bool = Field(False, description="grow batch_size to the largest window batch that fits (CUDA)")


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """['lr=1e-4', 'fine_dropout=true'] -> {'lr': 0.0001, 'fine_dropout': True} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r}: expected key=value")
        out[key.strip()] = _scalar(value)
    return out


def _scalar(text: str) -> Any:
    """YAML scalar, except that '1e-4' (a string to YAML 1.1) is read as the float everyone means."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_profiles(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected a mapping of profile name -> settings")
    return data


def build_config(config_cls: type[MethodConfig], method: str, profiles: dict[str, dict[str, Any]],
                 profile: str, overrides: dict[str, Any] | None = None) -> MethodConfig:
    if profile not in profiles:
        raise ConfigError(f"method {method!r} has no profile {profile!r}; profiles: {sorted(profiles)}")
    values = {**profiles[profile], **(overrides or {})}
    try:
        return config_cls.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<config>'}: {e['msg']}"
                             for e in err.errors())
        raise ConfigError(f"method {method!r}, profile {profile!r}: {problems}") from None
