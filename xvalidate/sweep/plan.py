"""What a sweep runs: its cells, one per (model, route, input set), each with a key that says
when a recorded result still holds (the same model content, route, destination, inputs and
tolerances)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from xvalidate.errors import InputFileError, OptionError, UnknownAdapterError
from xvalidate.hashing import file_sha256


@dataclass(frozen=True)
class InputSet:
    """The input of a cell: a file (`file`), else `batch` samples of seeded random data (`seed`)."""

    name: str
    file: str | None = None
    seed: int = 0
    batch: int = 1

    @property
    def inputs(self) -> str | None:
        """What validate() takes as `inputs`."""
        return self.file


@dataclass(frozen=True)
class Cell:
    """One validation of a sweep: `model` (a file, read by adapter `src`) converted to `dst` through
    route `via`, compared on `input_set`. `options` are further validate() keyword arguments
    (atol, rtol, tolerances, cache, trust_model...)."""

    model: str
    src: str
    dst: str
    via: str
    input_set: InputSet
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    digest: str = ""  # of the model's files and the input file: filled by plan()

    @property
    def route(self) -> str:
        """The route's label in the matrix: "via -> dst"."""
        return f"{self.via} -> {self.dst}"

    @property
    def key(self) -> str:
        """What identifies the cell's result: a rerun with the same key reuses it."""
        result_options = {k: v for k, v in self.options.items() if k in RESULT_OPTIONS}
        text = json.dumps([self.digest, self.src, self.dst, self.via, asdict(self.input_set), result_options],
                          sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def slug(self) -> str:
        """A folder name for the cell's reports: model, route, input set and the key's start."""
        stem = Path(self.model).name
        raw = f"{stem}_{self.via}-{self.dst}_{self.input_set.name}_{self.key[:8]}"
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in raw)


# validate() options that change a result (others, such as cache or timeout, only change how it is reached)
RESULT_OPTIONS = ("atol", "rtol", "tolerances", "preprocess", "route_options", "isolate")


def source_adapter(path: str | Path) -> str:
    """The adapter whose declared extensions (Adapter.extensions) end the file's name; the longest
    matching extension wins. No adapter, or two with the same extension, is an InputFileError."""
    from xvalidate.registry import adapter_names, get_adapter

    name = Path(path).name.lower()
    found: dict[str, list[str]] = {}
    for adapter in adapter_names():
        try:
            extensions = get_adapter(adapter).extensions
        except UnknownAdapterError:  # a plugin that cannot be imported claims nothing
            continue
        for ext in extensions:
            if name.endswith(ext.lower()):
                found.setdefault(ext.lower(), []).append(adapter)
    if not found:
        raise InputFileError(f"{path}: no adapter reads files with this extension; give --src")
    owners = found[max(found, key=len)]
    if len(owners) > 1:
        raise InputFileError(f"{path}: adapters {', '.join(owners)} all read this extension; give --src")
    return owners[0]


def parse_routes(text: str, dst: str) -> list[tuple[str, str]]:
    """"mmdnn,onnx,onnx:onnx" -> [(via, dst)]: a route alone goes to `dst`, VIA:DST to DST."""
    routes = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        via, _, to = item.partition(":")
        if not via.strip() or (_ and not to.strip()):
            raise OptionError(f"--routes: expected ROUTE or ROUTE:DST items separated by commas, got {item!r}")
        routes.append((via.strip(), to.strip() or dst))
    if not routes:
        raise OptionError("--routes: expected at least one route name")
    return list(dict.fromkeys(routes))


def input_sets(files: Sequence[str] = (), seeds: Sequence[int] = (), batch: int = 1) -> list[InputSet]:
    """One input set per file and per seed (random data, `batch` samples); seed 0 when neither is given."""
    if batch < 1:
        raise OptionError(f"--batch: expected a positive number of samples, got {batch}")
    sets = []
    for file in files:
        path = Path(file)
        if not path.exists():
            raise InputFileError(f"--input {file}: no such file")
        sets.append(InputSet(name=path.name, file=str(path.resolve())))
    if seeds or not sets:
        sets += [InputSet(name=f"seed{seed}" + (f"-batch{batch}" if batch != 1 else ""), seed=seed, batch=batch)
                 for seed in dict.fromkeys(seeds or (0,))]
    return sets


def plan(models: Sequence[str], routes: Sequence[tuple[str, str]], sets: Sequence[InputSet], *,
         src: str | None = None, options: dict[str, Any] | None = None) -> list[Cell]:
    """The cells of models x routes x input sets. Every model must exist and every route must
    convert its source adapter (`src`, else inferred from the extension) to the route's destination."""
    from xvalidate.api import checked_source
    from xvalidate.registry import get_adapter, get_route

    cells = []
    for model in models:
        adapter = src or source_adapter(model)
        path = checked_source(adapter, model)
        for via, dst in routes:
            get_adapter(dst)  # an unknown destination fails here, named
            try:
                get_route(via).check(adapter, dst)
            except OptionError as exc:
                raise OptionError(f"--routes: {exc} (model {model})") from None
            for input_set in sets:
                cells.append(Cell(path, adapter, dst, via, input_set, dict(options or {}),
                                  digest=content_digest(adapter, path, input_set)))
    return cells


def content_digest(adapter: str, path: str, input_set: InputSet) -> str:
    """SHA-256 over the model's files (Adapter.model_files) and the input file, if any."""
    from xvalidate.registry import get_adapter

    files = sorted(get_adapter(adapter).model_files(path))
    if input_set.file:
        files.append(input_set.file)
    digest = hashlib.sha256()
    for file in files:
        for part in sorted(Path(file).rglob("*")) if Path(file).is_dir() else [Path(file)]:
            if part.is_file():
                digest.update(f"{part.name}:{file_sha256(part)};".encode())
    return digest.hexdigest()
