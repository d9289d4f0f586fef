"""The names the aligner pairs destination tensors by. Each destination name is offered as the
destination adapter's `pairing_name` of it, then as each route's `pairing_name` of that: the route
that made the model, or, compared without a route, every route that writes models of that adapter.
Framework knowledge stays in the adapters and routes; this module only composes their rules."""
from __future__ import annotations

import re
from typing import Callable

__all__ = ["pairing_names", "strip_suffixes"]


def strip_suffixes(name: str, suffixes: re.Pattern, times: int = 3) -> str:
    """`name` without the suffixes `suffixes` matches at its end, stripped up to `times` times in a row."""
    for _ in range(times):
        stripped = suffixes.sub("", name)
        if stripped == name:
            break
        name = stripped
    return name


def pairing_names(dst: str, via: str | None = None) -> Callable[[str], list[str]]:
    """name -> the names a destination tensor of adapter `dst` is paired by, in order: its adapter's
    rule alone, then with each route's rule (route `via`, or every registered route writing `dst`)."""
    from xvalidate.errors import UnknownAdapterError
    from xvalidate.registry import get_adapter, get_route, route_names

    adapter = get_adapter(dst)
    routes = []
    for name in ([via] if via else route_names()):
        try:
            route = get_route(name)
        except UnknownAdapterError:  # a route that cannot be imported has no rule to offer
            continue
        if via or any(d == dst for _, d in getattr(route, "pairs", ())):
            routes.append(route)

    def names(name: str) -> list[str]:
        own = adapter.pairing_name(name)
        out = [own]
        for route in routes:
            spelled = route.pairing_name(own) if hasattr(route, "pairing_name") else own
            if spelled not in out:
                out.append(spelled)
        return out
    return names
