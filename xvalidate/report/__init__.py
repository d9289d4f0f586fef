"""Renderers of finished results: text, JSON, HTML. Importing this package registers them with the
core (xvalidate.core.report.register_output), which never imports it; each renderer's module is
imported on first use."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from xvalidate.core.report import register_output

_RENDERERS = {
    "summary": "xvalidate.report.text:summary_text",
    "dict": "xvalidate.report.json:report_to_dict",
    "json": "xvalidate.report.json:write_json",
    "html": "xvalidate.report.html:write_html",
    "comparison-json": "xvalidate.report.routes:write_comparison_json",
    "comparison-html": "xvalidate.report.routes:write_comparison_html",
}


def _lazy(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")

    def render(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    return render


for _kind, _target in _RENDERERS.items():
    register_output(_kind, _lazy(_target))
