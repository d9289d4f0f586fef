"""Reading a `.xvr` file: the manifest at once, the arrays one layer's rows at a time.

Members are stored uncompressed, so each `.npy` member is a contiguous run of bytes in the file:
rows [a, b) of a chunk are one positioned read (os.preadv), and nothing else of the file is loaded.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError, OptionError, UnknownLayerError
from xvalidate.saved.format import FORMAT, MANIFEST, VERSION

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_REQUIRED = ("adapter", "layers", "inputs", "tensors", "chunks", "samples")


class SavedResult:
    """A saved capture of one model. Stands in for a worker in a comparison: `layers` and
    `inputs_info` answer from the manifest, `kernel` and `recurrent_weights` from the saved
    parameters, and `run(source, x)` replays the capture:
    `x` must be the next samples of the saved input, and their saved outputs come back."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputFileError(f"{self.path}: no such saved result")
        self._fd = os.open(self.path, os.O_RDONLY)
        self._next = 0  # the sample the next run() starts at
        try:
            self.manifest = self._read_manifest()
            try:
                self._parse(self.manifest)
                self._members = self._index()
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise self._error(f"{MANIFEST} is malformed ({type(exc).__name__}: {exc})") from None
        except BaseException:
            self.close()
            raise

    def _parse(self, m: dict) -> None:
        from xvalidate_adapters.base import InputInfo, LayerInfo

        self.adapter: str = str(m["adapter"])
        self.samples: int = int(m["samples"])
        self._layers = [LayerInfo.from_dict(d) for d in m["layers"]]
        self._inputs = [InputInfo.from_dict(entry["info"]) for entry in m["inputs"]]
        self._parameters = _parameters(m.get("parameters", {}))
        self._chunks = [(int(a), int(b)) for a, b in m["chunks"]]
        bounds = [0] + [b for _, b in self._chunks]
        if [a for a, _ in self._chunks] != bounds[:-1] or bounds[-1] != self.samples or not self._inputs:
            raise ValueError(f"its chunks {m['chunks']} do not cover its {self.samples} samples in order")

    # -- what a worker answers
    def layers(self, source: Any = None) -> list:
        """The LayerInfo list the adapter gave when the result was captured."""
        return list(self._layers)

    def inputs_info(self, source: Any = None) -> list:
        """The InputInfo of every input of the captured model."""
        return list(self._inputs)

    def supports_isolation(self, source: Any = None) -> bool:
        """A saved result cannot run a layer again on other values."""
        return False

    def kernel(self, source: Any, name: str) -> np.ndarray | None:
        """The adapter's `kernel` for tensor `name` as saved with it (None also for a file saved without
        parameters: the diagnosis then goes without the kernel checks)."""
        member = self._parameters.get(name, {}).get("kernel")
        return None if member is None else self._whole(member)

    def recurrent_weights(self, source: Any, name: str) -> tuple | None:
        """The adapter's `recurrent_weights` (W, R, B) for tensor `name` as saved with it, or None."""
        members = self._parameters.get(name, {}).get("recurrent")
        return None if members is None else tuple(None if m is None else self._whole(m) for m in members)

    def run(self, source: Any, x: np.ndarray | Mapping[str, np.ndarray], layers: Sequence[str] | None = None,
            feeds: Mapping | None = None) -> dict[str, np.ndarray]:
        """The saved outputs of `x`, which must be the next samples of the saved input (the first
        call starts at sample 0; after the last sample the next call starts again at 0)."""
        if feeds:
            raise OptionError(f"{self.path}: a saved result cannot run layers on other values (isolate); "
                              "give the live model on that side")
        given = dict(x) if isinstance(x, Mapping) else {self._inputs[0].name: x}
        n = len(next(iter(given.values())))
        start, stop = self._next, self._next + n
        for name, array in given.items():
            if stop > self.samples or not self._same_input(name, array, start):
                raise InputShapeError(f"{self.path}: asked for the outputs of samples other than those saved with it "
                                      f"(input {name!r}, samples {start}..{stop - 1} of {self.samples})")
        self._next = 0 if stop == self.samples else stop
        return self.read(start, stop, layers)

    # -- the arrays
    def inputs(self) -> dict[str, np.ndarray]:
        """{input name: the whole saved input batch}, in the captured model's layout."""
        return {entry["name"]: self._rows(entry["member"], 0, None) for entry in self.manifest["inputs"]}

    def read(self, start: int, stop: int, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """{tensor: its rows for samples [start, stop)} of every captured tensor (or of `layers`)."""
        names = self.manifest["tensors"] if layers is None else layers
        unknown = [name for name in names if name not in self.manifest["tensors"]]
        if unknown:
            raise UnknownLayerError(f"{self.path}: no saved tensor {unknown[0]!r}")
        return {name: self.rows(name, start, stop) for name in names}

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of one captured tensor, read from the chunks that hold them."""
        members = self.manifest["tensors"][name]["members"]
        parts = [self._rows(member, max(start, a) - a, min(stop, b) - a)
                 for member, (a, b) in zip(members, self._chunks) if a < stop and b > start]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def describe(self) -> dict:
        """Where and how the result was captured: for a report's meta."""
        keys = ("adapter", "model", "created", "environment", "versions")
        return {"path": str(self.path), **{k: self.manifest.get(k) for k in keys}, "samples": self.samples}

    def close(self) -> None:
        """Close the file (also on leaving a `with` block)."""
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "SavedResult":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # -- plumbing
    def _error(self, what: str) -> InputFileError:
        return InputFileError(f"{self.path}: {what}")

    def _read_manifest(self) -> dict:
        try:
            with zipfile.ZipFile(self.path) as archive:
                self._infos = {info.filename: info for info in archive.infolist()}
                if MANIFEST not in self._infos:
                    raise self._error(f"not an xvalidate saved result (no {MANIFEST} in it)")
                data = json.loads(archive.read(MANIFEST))
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise self._error(f"not an xvalidate saved result (not a readable zip archive: {exc})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._error(f"{MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise self._error(f"not an xvalidate saved result ({MANIFEST} does not say format {FORMAT!r})")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise self._error(f"format version {data.get('version')!r}; this xvalidate reads version {VERSION} "
                              "and older: upgrade xvalidate")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise self._error(f"{MANIFEST} lacks {', '.join(missing)}")
        return data

    def _index(self) -> dict[str, tuple[int, tuple, np.dtype]]:
        """member -> (offset of its first array byte, shape, dtype), checked against the file."""
        needed = [entry["member"] for entry in self.manifest["inputs"]]
        chunks = self.manifest["chunks"]
        for name, entry in self.manifest["tensors"].items():
            if len(entry["members"]) != len(chunks):
                raise self._error(f"{MANIFEST}: tensor {name!r} has {len(entry['members'])} chunks, "
                                  f"the batch {len(chunks)}")
            needed += entry["members"]
        for entry in self._parameters.values():
            needed += [m for m in (entry.get("kernel"), *entry.get("recurrent", ())) if m is not None]
        return {member: self._locate(member) for member in needed}

    def _locate(self, member: str) -> tuple[int, tuple, np.dtype]:
        info = self._infos.get(member)
        if info is None:
            raise self._error(f"member {member} is missing")
        if info.compress_type != zipfile.ZIP_STORED:
            raise self._error(f"member {member} is compressed; a saved result stores its arrays uncompressed")
        header = os.pread(self._fd, _LOCAL_HEADER.size, info.header_offset)
        if len(header) < _LOCAL_HEADER.size or not header.startswith(b"PK\x03\x04"):
            raise self._error(f"member {member} is damaged (no local header)")
        _, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        with open(self._fd, "rb", closefd=False) as f:
            f.seek(start)
            try:
                read_header = _HEADER_READERS.get(np.lib.format.read_magic(f))
                if read_header is None:
                    raise ValueError("an .npy format version this reader does not know")
                shape, fortran, dtype = read_header(f)
            except (ValueError, OSError) as exc:
                raise self._error(f"member {member} is not a readable .npy array ({exc})") from None
            offset = f.tell()
        if fortran or dtype.hasobject:
            raise self._error(f"member {member} is not a C-ordered numeric array")
        if offset - start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != info.file_size:
            raise self._error(f"member {member} is truncated or damaged (its size does not match its header)")
        return offset, tuple(shape), dtype

    def _same_input(self, name: str, array: np.ndarray, start: int) -> bool:
        member = next((e["member"] for e in self.manifest["inputs"] if e["name"] == name), None)
        return member is not None and np.array_equal(np.asarray(array), self._rows(member, start, start + len(array)))

    def _rows(self, member: str, start: int, stop: int | None) -> np.ndarray:
        offset, shape, dtype = self._members[member]
        stop = shape[0] if stop is None else stop
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        return self._read_into(np.empty((stop - start, *shape[1:]), dtype), member, offset + start * row)

    def _whole(self, member: str) -> np.ndarray:
        """The whole array of `member`, whatever its rank."""
        offset, shape, dtype = self._members[member]
        return self._read_into(np.empty(shape, dtype), member, offset)

    def _read_into(self, out: np.ndarray, member: str, offset: int) -> np.ndarray:
        """`out` filled with the bytes of `member` from file offset `offset` on."""
        view, done = memoryview(out.reshape(-1).view(np.uint8)), 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n <= 0:
                raise self._error(f"member {member} ends early")
            done += n
        return out


def _parameters(saved: Any) -> dict[str, dict]:
    """The manifest's `parameters` checked: tensor -> {"kernel": member, "recurrent": [member or None...]}."""
    if not isinstance(saved, dict):
        raise TypeError(f"parameters is a {type(saved).__name__}, not an object")
    for name, entry in saved.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("recurrent", []), list):
            raise ValueError(f"the parameters of {name!r} are not an object of member names")
        if not all(m is None or isinstance(m, str) for m in (entry.get("kernel"), *entry.get("recurrent", []))):
            raise ValueError(f"the parameters of {name!r} are not member names")
    return saved
