"""Runtime shims that keras-mxnet 2.2.4.3 needs on Python 3.11 with h5py 3; applied in the worker
of the keras-mxnet environment, never by editing its files. Imports numpy and the standard
library only (this module is shipped into that environment).

1. `keras.callbacks` does `from collections import Iterable`, which Python 3.10 removed:
   `alias_collections()` puts the name back (from collections.abc) before `import keras`.
2. Keras 2.2.4's h5 weight loader calls `.decode('utf8')` on the file's attributes (layer names,
   weight names, versions), which h5py 3 returns as str: `BytesAttributes` wraps an h5py group so
   that its attributes come back as bytes, as h5py 2 gave them.
3. Its BatchNormalization calls `mx.sym.BatchNorm` without `fix_gamma=False`, and MXNet's default
   (True) multiplies by 1 instead of gamma: with any trained gamma the saved model is wrong from
   the first BatchNorm on (xvalidate found it: "a per-channel scale and shift ... gamma/beta
   differ" at ResNet50's conv1_bn; the first forward even overwrites gamma with ones).
   `batchnorm_keeps_gamma()` makes `fix_gamma=False` the default while the model is built.
"""
from __future__ import annotations

import collections
import collections.abc
import contextlib
import functools
from typing import Any, Iterator

import numpy as np

ALIASES = ("Iterable",)


def alias_collections() -> list[str]:
    """Give `collections` the ABC names keras-mxnet imports from it; return the names added."""
    added = []
    for name in ALIASES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
            added.append(name)
    return added


def _as_bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf8")
    if isinstance(value, np.ndarray) and value.dtype == object:
        return np.array([v.encode("utf8") if isinstance(v, str) else v for v in value.ravel()],
                        dtype=object).reshape(value.shape)
    return value


class _Attributes:
    """An h5py AttributeManager whose str values read as bytes."""

    def __init__(self, attrs: Any):
        self._attrs = attrs

    def __contains__(self, name: str) -> bool:
        return name in self._attrs

    def __getitem__(self, name: str) -> Any:
        return _as_bytes(self._attrs[name])

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._attrs else default

    def keys(self):
        return self._attrs.keys()


class BytesAttributes:
    """An h5py group (a File is one) whose attributes, and its subgroups' attributes, read as bytes;
    datasets are returned as they are."""

    def __init__(self, group: Any):
        self._group = group
        self.attrs = _Attributes(group.attrs)

    def __getitem__(self, name: str) -> Any:
        import h5py

        item = self._group[name]
        return BytesAttributes(item) if isinstance(item, h5py.Group) else item

    def __contains__(self, name: str) -> bool:
        return name in self._group

    def __iter__(self):
        return iter(self._group)

    def keys(self):
        return self._group.keys()


@contextlib.contextmanager
def batchnorm_keeps_gamma() -> Iterator[None]:
    """Within the block, `mx.sym.BatchNorm` defaults to `fix_gamma=False`: keras-mxnet's BatchNorm
    then multiplies by its gamma (and MXNet's forward no longer overwrites gamma with ones)."""
    import mxnet as mx

    original = mx.sym.BatchNorm

    @functools.wraps(original)
    def batchnorm(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("fix_gamma", False)
        return original(*args, **kwargs)

    mx.sym.BatchNorm = batchnorm
    try:
        yield
    finally:
        mx.sym.BatchNorm = original
