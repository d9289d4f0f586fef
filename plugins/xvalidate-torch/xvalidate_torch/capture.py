"""Every module call and every function applied between modules, captured in ONE forward pass.

Forward hooks name each module call by its path (`layer1.0.conv1`); a module called again gets
`name@1`, `name@2`... Functions called in a `forward` outside any leaf module (`torch.relu(x)`,
`x + y`, `torch.flatten`) are seen through a TorchFunctionMode and named `<scope>.<function>` (or
`<function>` at the top), with the same @N rule, so that the graph has no gaps: each record knows
which records produced its inputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

from xvalidate_torch.kinds import CONTAINERS

# Functions whose results are not computations worth a layer: attribute reads, shape queries, copies.
_SKIP = {"__get__", "size", "dim", "numel", "detach", "clone", "to", "cpu", "contiguous", "__getitem__",
         "__setitem__", "__len__", "__format__", "__repr__", "numpy", "item", "tolist", "is_floating_point"}


@dataclass
class Record:
    """One captured call: its name, the module (or None for a function), its op, output and inputs."""

    name: str
    op: str
    module: Any
    output: Any
    inputs: list[str] = field(default_factory=list)


class _Recorder(TorchFunctionMode):
    def __init__(self, keep: Callable[[str], bool]):
        super().__init__()
        self.keep = keep
        self.records: list[Record] = []
        self.produced: dict[int, str] = {}  # id(tensor) -> record name
        self.counts: dict[str, int] = {}
        self.stack: list[tuple[str, bool]] = []  # (module path, is a leaf)
        self._alive: list[Any] = []  # every tensor named, so that no id is reused during the pass

    def unique(self, name: str) -> str:
        n = self.counts.get(name, 0)
        self.counts[name] = n + 1
        return name if n == 0 else f"{name}@{n}"

    def sources(self, values: Any) -> list[str]:
        found: list[str] = []
        for value in values:
            if isinstance(value, (list, tuple)):
                found += self.sources(value)
            elif torch.is_tensor(value) and id(value) in self.produced:
                found.append(self.produced[id(value)])
        return list(dict.fromkeys(found))

    def add(self, name: str, op: str, module: Any, output: Any, inputs: list[str]) -> None:
        self.produced[id(output)] = name
        kept = output.detach() if self.keep(name) else None
        self.records.append(Record(name, op, module, kept, inputs))
        self._alive.append(output)  # ids stay unique while the pass runs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        fname = getattr(func, "__name__", "").split(".")[0]  # aten's "relu.default" (a torch.export program)
        if fname in _SKIP or not torch.is_tensor(out) or (self.stack and self.stack[-1][1]):
            return out  # inside a leaf module: the module's hook records the result
        scope = self.stack[-1][0] if self.stack else ""
        base = fname.strip("_").replace("iadd", "add").replace("radd", "add")
        name = self.unique(f"{scope}.{base}" if scope else base)
        self.add(name, fname, None, out, self.sources(list(args) + list(kwargs.values())))
        return out


def capture(module: Any, inputs: list[Any], keep: Callable[[str], bool] = lambda name: True) -> tuple[list[Record], Any]:
    """Run `module(*inputs)` once and return (records in call order, the module's output)."""
    recorder = _Recorder(keep)
    recorder._alive += list(inputs)
    for i, x in enumerate(inputs):
        recorder.produced[id(x)] = f"input:{i}"
    handles = []
    for path, sub in module.named_modules():
        if not path or type(sub).__name__ in CONTAINERS:
            continue
        leaf = not any(True for _ in sub.children())
        handles.append(sub.register_forward_pre_hook(
            lambda mod, args, path=path, leaf=leaf: recorder.stack.append((path, leaf))))
        handles.append(sub.register_forward_hook(_post_hook(recorder, path)))
    try:
        with torch.no_grad(), recorder:
            output = module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return recorder.records, output


def _post_hook(recorder: _Recorder, path: str):
    def hook(mod: Any, args: tuple, out: Any) -> None:
        recorder.stack.pop()
        # not a tensor, or one that already has a name (a composite returning its last call's output)
        if torch.is_tensor(out) and id(out) not in recorder.produced:
            recorder.add(recorder.unique(path), type(mod).__name__, mod, out, recorder.sources(args))
    return hook
