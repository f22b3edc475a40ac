"""Method registry: built-in methods register with `@register_method`; third-party packages add theirs through
the entry-point group `adbench_dbt.methods` (value: `package.module:MethodClass`) without touching this repo."""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any, Callable, overload

import torch

from adbench_dbt.errors import ConfigError
from adbench_dbt.method import Method

ENTRY_POINT_GROUP = "adbench_dbt.methods"
_REGISTRY: dict[str, type[Method]] = {}
_discovered = False


@overload
def register_method(cls: type[Method], *, replace: bool = False) -> type[Method]: ...


@overload
def register_method(cls: None = None, *, replace: bool = False) -> Callable[[type[Method]], type[Method]]: ...


def register_method(cls: type[Method] | None = None, *, replace: bool = False):
    """Class decorator: make `cls` available as `cls.name` to create_method and the CLI.

    A name that is already taken is an error naming both classes, so a plug-in never silently shadows a built-in;
    `@register_method(replace=True)` replaces on purpose. Re-importing the same class (same module and name) is
    not a clash.
    """
    if cls is None:
        return lambda klass: register_method(klass, replace=replace)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method expects a Method subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} must set a non-empty class attribute `name`")
    existing = _REGISTRY.get(name)
    if existing is not None and not replace and _qualified(existing) != _qualified(cls):
        raise ValueError(f"method name {name!r} is already registered by {_qualified(existing)}; "
                         f"{_qualified(cls)} cannot take it (pass replace=True to replace it on purpose)")
    _REGISTRY[name] = cls
    return cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                               f"failed to load: {err}") from err
        if obj not in _REGISTRY.values():
            register_method(obj)


def available_methods() -> dict[str, type[Method]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_method(name: str) -> type[Method]:
    methods = available_methods()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(methods)}")
    return methods[name]


def create_method(name: str, profile: str = "demo", overrides: dict[str, Any] | None = None,
                  device: str | torch.device = "cpu") -> Method:
    """timm-style factory: `create_method('picard', 'paper', {'stride': 64}, device='cuda')`."""
    return get_method(name).from_profile(profile, overrides, device=device)
