"""Adapters and routes by name: the built-ins plus the entry-point groups
`xvalidate.adapters` and `xvalidate.routes`, loaded lazily, plus those registered at run time.

What is registered at run time reaches the worker processes: every registration is kept as a
"module:Class" string in the environment variable XVALIDATE_REGISTERED, which workers inherit and
read when they import this module, and is sent to the workers already running."""
from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from xvalidate.errors import OptionError, UnknownAdapterError

BUILTIN_ADAPTERS = {
    "keras": "xvalidate_adapters.keras:KerasAdapter",
    "mxnet": "xvalidate_adapters.mxnet:MXNetAdapter",
    "onnx": "xvalidate_adapters.onnx:OnnxAdapter",
}
BUILTIN_ROUTES = {
    "mmdnn": "xvalidate.routes.mmdnn:MMdnnRoute",
    "onnx": "xvalidate.routes.onnx:OnnxRoute",
    "keras-mxnet": "xvalidate.routes.keras_mxnet:KerasMXNetRoute",
}
ENV_VAR = "XVALIDATE_REGISTERED"
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


def reachable() -> list[tuple[str, str, str]]:
    """Every (src, dst, via) that a registered route converts, a hub route's compositions included."""
    return sorted({(src, dst, name) for name in route_names() for src, dst in get_route(name).reachable_pairs()})


def register_adapter(name: str, target: str | type) -> None:
    """Register an adapter under `name`: "module:Class" (or the class itself, when a worker can import
    it by that name). The worker processes import the same target."""
    _register("adapters", name, target)


def register_route(name: str, target: str | type) -> None:
    """Register a route under `name`: "module:Class" (or the class itself). A route class defined
    inside a function is usable in this process only."""
    _register("routes", name, target)


def _register(kind: str, name: str, target: str | type) -> None:
    spec = _import_name(kind, target)
    _registered[kind][name] = target if spec is None else spec
    _instances.pop((kind, name), None)
    if spec is not None:
        _publish()
        _tell_live_workers(kind, name, spec)


def _import_name(kind: str, target: Any) -> str | None:
    """`target` as "module:Class", the form a worker can import, or None for a route class that only
    this process can reach. A class in __main__ is refused: no other process can import it."""
    what = kind[:-1]
    if isinstance(target, str):
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise OptionError(f"register_{what}: expected \"module:Class\", got {target!r}")
        return target
    module, qualname = getattr(target, "__module__", None), getattr(target, "__qualname__", repr(target))
    if module == "__main__":
        raise OptionError(f"register_{what}: {qualname} is defined in __main__, which worker processes cannot "
                          f"import; put it in a module and register it by \"module:Class\"")
    if module is None or "<locals>" in qualname:
        if kind == "adapters":
            raise OptionError(f"register_adapter: {qualname} cannot be imported by worker processes; define it "
                              f"at the top of a module and register it by \"module:Class\"")
        return None
    return f"{module}:{qualname}"


def _publish() -> None:
    """Keep every importable registration in the environment that worker processes inherit."""
    specs = {kind: {n: t for n, t in targets.items() if isinstance(t, str)} for kind, targets in _registered.items()}
    os.environ[ENV_VAR] = json.dumps(specs)


def _tell_live_workers(kind: str, name: str, spec: str) -> None:
    """Register in the workers already started (they read the environment only when they start)."""
    worker = sys.modules.get("xvalidate.worker")
    if worker is None:
        return
    for live in list(worker._workers.values()):  # noqa: SLF001 (the package's own worker table)
        if live.alive() and not live.stopped:
            live.call("xvalidate.registry:_register_here", kind, name, spec)


def _register_here(kind: str, name: str, spec: str) -> None:
    """In a worker: what the parent registered after this worker started."""
    _registered[kind][name] = spec
    _instances.pop((kind, name), None)


def _read_environment() -> None:
    try:
        inherited = json.loads(os.environ.get(ENV_VAR, "{}"))
    except json.JSONDecodeError:
        return
    for kind in _registered:
        _registered[kind].update({n: t for n, t in inherited.get(kind, {}).items() if isinstance(t, str)})


_read_environment()


def _load(target: Any) -> Any:
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return functools.reduce(getattr, attr.split("."), importlib.import_module(module))
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
        try:
            cls = _load(targets[name])
        except (ImportError, AttributeError) as exc:
            what = "adapter" if kind == "adapters" else "route"
            raise UnknownAdapterError(f"{what} {name!r}: cannot import {targets[name]!r} ({exc})") from None
        _instances[key] = cls() if isinstance(cls, type) else cls
    return _instances[key]


def route_options() -> dict[str, tuple[str, str]]:
    """{option: (type, help)} of every option a registered route declares (the first declaration wins)."""
    found: dict[str, tuple[str, str]] = {}
    for name in route_names():
        try:
            declared = getattr(get_route(name), "options", {}) or {}
        except UnknownAdapterError:  # a route that cannot be imported offers no option
            continue
        for option, spec in declared.items():
            found.setdefault(option, tuple(spec))
    return found


def get_adapter(name: str) -> Any:
    """The adapter object registered as `name` (imports its module, not its framework)."""
    return _get("adapters", name)


def get_route(name: str) -> Any:
    """The route object registered as `name`."""
    return _get("routes", name)
