"""Method registry: built-in methods register with `@register_method`; third-party packages add theirs through
the entry-point group `adbench_dbt.methods` (value: `package.module:MethodClass`) without touching this repo."""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any

import torch

from adbench_dbt.method import Method

ENTRY_POINT_GROUP = "adbench_dbt.methods"
_REGISTRY: dict[str, type[Method]] = {}
_discovered = False


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make `cls` available as `cls.name` to create_method and the CLI."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method expects a Method subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} must set a non-empty class attribute `name`")
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"method name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    """Import every built-in method package, then every entry point (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import adbench_dbt.methods as builtin

    for info in pkgutil.iter_modules(builtin.__path__):
        if info.ispkg:
            importlib.import_module(f"{builtin.__name__}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as err:  # a broken plug-in must not hide the built-ins; say which one failed
            raise RuntimeError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                               f"failed to load: {err}") from err
        if obj not in _REGISTRY.values():
            register_method(obj)


def available_methods() -> dict[str, type[Method]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    if name not in methods:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(methods)}")
    return methods[name]


def create_method(name: str, profile: str = "demo", overrides: dict[str, Any] | None = None,
                  device: str | torch.device = "cpu") -> Method:
    """timm-style factory: `create_method('picard', 'paper', {'stride': 64}, device='cuda')`."""
    return get_method(name).from_profile(profile, overrides, device=device)
