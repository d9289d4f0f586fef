"""Adapters and routes by name: the built-ins plus the entry-point groups
`xvalidate.adapters` and `xvalidate.routes`, loaded lazily."""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from xvalidate.errors import UnknownAdapterError

BUILTIN_ADAPTERS = {
    "keras": "xvalidate_adapters.keras:KerasAdapter",
    "mxnet": "xvalidate_adapters.mxnet:MXNetAdapter",
    "onnx": "xvalidate_adapters.onnx:OnnxAdapter",
}
BUILTIN_ROUTES = {
    "mmdnn": "xvalidate.routes.mmdnn:MMdnnRoute",
    "onnx": "xvalidate.routes.onnx:OnnxRoute",
}
_registered: dict[str, dict[str, Any]] = {"adapters": {}, "routes": {}}
_instances: dict[tuple[str, str], Any] = {}


def _targets(kind: str) -> dict[str, Any]:
    builtin = BUILTIN_ADAPTERS if kind == "adapters" else BUILTIN_ROUTES
    found: dict[str, Any] = dict(builtin)
    for ep in entry_points(group=f"xvalidate.{kind}"):
        found.setdefault(ep.name, ep)
    found.update(_registered[kind])
    return found


def adapter_names() -> list[str]:
    """Names of all registered adapters (built-in, entry points, registered at run time)."""
    return sorted(_targets("adapters"))


def route_names() -> list[str]:
    """Names of all registered conversion routes."""
    return sorted(_targets("routes"))


def register_adapter(name: str, target: str | type) -> None:
    """Register an adapter class (or "module:Class") under `name` for this process."""
    _registered["adapters"][name] = target
    _instances.pop(("adapters", name), None)


def register_route(name: str, target: str | type) -> None:
    """Register a route class (or "module:Class") under `name` for this process."""
    _registered["routes"][name] = target
    _instances.pop(("routes", name), None)


def _load(target: Any) -> Any:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    if hasattr(target, "load") and hasattr(target, "group"):  # an EntryPoint
        return target.load()
    return target


def _get(kind: str, name: str) -> Any:
    key = (kind, name)
    if key not in _instances:
        targets = _targets(kind)
        if name not in targets:
            what = "adapter" if kind == "adapters" else "route"
            raise UnknownAdapterError(f"unknown {what} {name!r}; expected one of: {', '.join(sorted(targets))}")
        cls = _load(targets[name])
        _instances[key] = cls() if isinstance(cls, type) else cls
    return _instances[key]


def get_adapter(name: str) -> Any:
    """The adapter object registered as `name` (imports its module, not its framework)."""
    return _get("adapters", name)


def get_route(name: str) -> Any:
    """The route object registered as `name`."""
    return _get("routes", name)
