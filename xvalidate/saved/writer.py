"""Writing a `.xvr` file one chunk of the batch at a time.

The file is built under a temporary name next to its target and renamed into place only when
complete: a reader never sees half a file, and an error (or Ctrl-C) removes the temporary.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from xvalidate.errors import OptionError, XValidateError
from xvalidate.report.files import new_file_mode, temporary_beside
from xvalidate.saved.format import FORMAT, MANIFEST, VERSION, input_member, layer_member, parameter_member

_ZIP64_AT = 1 << 30  # members this large are written with ZIP64 sizes (zipfile's limit is 2 GiB)


class ResultWriter:
    """Members of one saved result, written as they come; `finish(manifest)` puts the file in place.

        with ResultWriter("run.xvr") as writer:
            writer.add_inputs({"x": x}, {"x": input_info.to_dict()})
            for outputs in chunks: writer.add_chunk(outputs)
            writer.add_parameters("conv1", kernel, None)
            writer.finish({...})
    """

    def __init__(self, path: str | os.PathLike):
        self.target = Path(path)
        self._fd, self._tmp = temporary_beside(self.target)
        self._file = os.fdopen(self._fd, "w+b")
        self._zip = zipfile.ZipFile(self._file, "w", zipfile.ZIP_STORED, allowZip64=True)
        self.inputs: list[dict] = []
        self.layers: dict[str, dict] = {}  # tensor -> {"members", "shape" (one sample), "dtype"}
        self._index: dict[str, int] = {}
        self.chunks: list[list[int]] = []
        self.samples = 0
        self.nbytes = 0
        self.parameters: dict[str, dict] = {}  # tensor -> {"kernel": member, "recurrent": [member or None...]}
        self._stored: dict[tuple, str] = {}  # (dtype, shape, digest) of a parameter array -> its member
        self.parameter_bytes = 0

    def add_inputs(self, arrays: Mapping[str, np.ndarray], infos: Mapping[str, dict]) -> None:
        """The whole input batch, {input name: array} in the model's order, and each input's
        InputInfo (as a dict: name, shape, dtype, layout...)."""
        for i, (name, array) in enumerate(arrays.items()):
            self.nbytes += self._write(input_member(i), array)
            self.inputs.append({"name": name, "member": input_member(i), "shape": list(array.shape),
                                "dtype": str(array.dtype), "info": dict(infos[name])})

    def add_chunk(self, outputs: Mapping[str, np.ndarray]) -> None:
        """The outputs of the next samples of the batch, {tensor: array}; every chunk has the same tensors."""
        sizes = {len(a) for a in outputs.values() if np.ndim(a)}
        if not sizes:
            raise XValidateError(f"{self.target}: the model gave no layer outputs to save")
        if len(sizes) != 1:
            raise XValidateError(f"{self.target}: the outputs of a chunk hold different numbers of samples "
                                 f"({', '.join(map(str, sorted(sizes)))})")
        size = sizes.pop()
        chunk = len(self.chunks)
        if chunk and set(outputs) != set(self.layers):
            raise XValidateError(f"{self.target}: chunk {chunk} captured other tensors than the first chunk")
        for name, array in outputs.items():
            if name not in self.layers:
                self._index[name] = len(self._index)
                self.layers[name] = {"members": [], "shape": list(array.shape[1:]), "dtype": str(array.dtype)}
            entry = self.layers[name]
            if list(array.shape[1:]) != entry["shape"] or str(array.dtype) != entry["dtype"]:
                raise XValidateError(f"{self.target}: tensor {name!r} changed shape or dtype between chunks")
            member = layer_member(self._index[name], chunk)
            self.nbytes += self._write(member, array)
            entry["members"].append(member)
        self.chunks.append([self.samples, self.samples + size])
        self.samples += size

    def add_parameters(self, tensor: str, kernel: np.ndarray | None, recurrent: Sequence | None) -> None:
        """What Adapter.kernel and Adapter.recurrent_weights answer for captured tensor `tensor` (None:
        nothing); an array given for several tensors (a Conv and the BatchNorm after it) is stored once."""
        entry: dict[str, Any] = {}
        if kernel is not None:
            entry["kernel"] = self._parameter(kernel)
        if recurrent is not None:
            entry["recurrent"] = [None if array is None else self._parameter(array) for array in recurrent]
        if entry:
            self.parameters[tensor] = entry

    @property
    def parameter_arrays(self) -> int:
        """How many distinct parameter arrays were stored."""
        return len(self._stored)

    def finish(self, manifest: Mapping[str, Any]) -> str:
        """Write the manifest (`manifest`: adapter, layers, environment...; plus the format, inputs,
        chunks and tensors written) and put the file at its path, replacing what was there."""
        data = {"format": FORMAT, "version": VERSION, **manifest, "samples": self.samples, "chunks": self.chunks,
                "inputs": self.inputs, "tensors": self.layers, "parameters": self.parameters}
        info = zipfile.ZipInfo(MANIFEST, time.localtime()[:6])
        self._zip.writestr(info, json.dumps(data, indent=1, default=_plain))
        self._zip.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        os.fchmod(self._file.fileno(), new_file_mode())
        try:
            os.replace(self._tmp, self.target)
        except OSError as exc:
            raise OptionError(f"{self.target}: cannot write ({exc.strerror or exc})") from None
        self._tmp = None
        self._file.close()
        return str(self.target)

    def abort(self) -> None:
        """Drop everything written so far."""
        try:
            self._zip.close()
        except (OSError, ValueError, zipfile.BadZipFile):
            pass
        self._file.close()
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if not self._file.closed:
            self.abort()

    def _parameter(self, array: np.ndarray) -> str:
        """The member holding `array`: written now, or the one an equal array went to before."""
        array = np.ascontiguousarray(array)
        key = (array.dtype.str, array.shape, hashlib.sha256(array.view(np.uint8).reshape(-1)).hexdigest())
        if key not in self._stored:
            self._stored[key] = parameter_member(len(self._stored))
            self.parameter_bytes += self._write(self._stored[key], array)
        return self._stored[key]

    def _write(self, member: str, array: np.ndarray) -> int:
        """Store `array` as member `member`; returns its bytes."""
        array = np.ascontiguousarray(array)
        if array.dtype.hasobject:
            raise XValidateError(f"{self.target}: {member} would hold Python objects; only numeric arrays are saved")
        info = zipfile.ZipInfo(member, time.localtime()[:6])
        info.compress_type = zipfile.ZIP_STORED
        try:
            with self._zip.open(info, "w", force_zip64=array.nbytes >= _ZIP64_AT) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)
        except OSError as exc:
            raise OptionError(f"{self.target}: cannot write ({exc.strerror or exc})") from None
        return array.nbytes


def _plain(value: Any) -> Any:
    """JSON for what adapters put in LayerInfo attrs: numpy scalars and arrays, bytes, anything else as text."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)
