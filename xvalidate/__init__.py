"""xvalidate: check a neural-network conversion layer by layer.

    import xvalidate
    report = xvalidate.validate("model.h5", src="keras", dst="mxnet", via="mmdnn")
    report = xvalidate.compare("model.h5", "port-symbol.json", src="keras", dst="mxnet")

Importing this package imports no deep-learning framework: each framework runs in
a worker process of its own (see xvalidate.worker).
"""
from __future__ import annotations

from typing import Any

from xvalidate.errors import XValidateError
from xvalidate.registry import get_adapter, register_adapter, register_route
from xvalidate import report as _report  # noqa: F401  registers the renderers with the core (which never imports report/)

__version__ = "0.1.0"

__all__ = [
    "XValidateError", "adapters", "route_names", "get_adapter", "register_adapter", "register_route",
    "run", "compare", "validate", "compare_routes", "transfer_weights", "__version__",
]

_LAZY = {
    "run": "xvalidate.api",
    "compare": "xvalidate.api",
    "validate": "xvalidate.api",
    "compare_routes": "xvalidate.api",
    "transfer_weights": "xvalidate.transfer",
    "Report": "xvalidate.core.report",
    "LayerResult": "xvalidate.core.report",
}


def adapters() -> list[str]:
    """Names of all registered adapters."""
    from xvalidate.registry import adapter_names
    return adapter_names()


def route_names() -> list[str]:
    """Names of all registered conversion routes (`xvalidate.routes` is the routes subpackage)."""
    from xvalidate.registry import route_names
    return route_names()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xvalidate' has no attribute {name!r}")
