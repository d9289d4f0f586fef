"""Adapter "torch": an nn.Module in memory, a TorchScript `.pt`, or a torch.export `.pt2`. Layout NCHW.

An in-memory module is handed to the worker as a `.pth` written by `save` (the whole module, pickled
by torch.save: its class must be importable by the worker, so not defined in __main__). Such a
pickle runs code when loaded, so the worker loads one only when the calling process wrote it (in its
own temporary model directory) or when the model is trusted (--trust-model).

A torch module does not record its input shape: `save` keeps the example's, or the module's
attribute `input_shape` (without the batch, e.g. `net.input_shape = (3, 80, 120)`).
TorchScript modules run as a whole: only their output is captured (forward hooks do not reach
inside a ScriptModule)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError, UntrustedModelError
from xvalidate_adapters.base import Adapter, InputInfo, LayerInfo
from xvalidate_adapters.common import input_arrays, layout_for_rank, pick_layers

FUNCTION_KINDS = {
    "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax", "silu": "swish",
    "add": "add", "mul": "mul", "cat": "concat", "flatten": "flatten", "view": "reshape", "reshape": "reshape",
    "max_pool2d": "maxpool", "avg_pool2d": "avgpool", "adaptive_avg_pool2d": "gpool", "dropout": "dropout",
    "pad": "pad", "linear": "dense", "conv2d": "conv", "batch_norm": "bn", "hardtanh": "relu6",
}


@dataclass
class TorchModel:
    """A loaded model: the callable, its input shape (batch first, None where unknown), and how it runs."""

    module: Any
    input_shape: tuple
    scripted: bool = False
    source: str = ""
    classes: dict = field(default_factory=dict)  # module path -> class name, where `module` does not keep them


class TorchAdapter(Adapter):
    name = "torch"
    layout = "NCHW"
    extensions = (".pt", ".pt2", ".pth")
    packages = ("torch",)
    trust_model = False

    def owns(self, obj: Any) -> bool:
        return any(cls.__module__ == "torch.nn.modules.module" and cls.__name__ == "Module"
                   for cls in type(obj).__mro__)

    def save(self, model: Any, directory: str, example: np.ndarray | None = None) -> str:
        import torch

        cls = type(model)
        if cls.__module__ == "__main__":
            raise InputFileError(f"torch module {cls.__name__} is defined in __main__, which the torch worker "
                                 f"cannot import; define it in a module, or save it with torch.export as a .pt2")
        shape = _declared_shape(model, example)
        path = Path(directory) / "module.pth"
        torch.save({"xvalidate": 1, "module": model, "input_shape": shape}, path)  # load() puts it in eval mode
        return str(path)

    def load(self, source: Any) -> TorchModel:
        import torch

        path = str(source)
        try:
            if path.endswith(".pt2"):
                program = torch.export.load(path)
                shape = tuple(program.example_inputs[0][0].shape) if program.example_inputs else ()
                return TorchModel(torch.export.unflatten(program), (None, *shape[1:]) if shape else (),
                                  source=path, classes=_program_classes(program))
            if path.endswith(".pth"):
                if not (self.trust_model or _written_by_caller(path)):
                    raise UntrustedModelError(f"{path}: a pickled torch module runs code when loaded; "
                                              f"load it only if you trust it (--trust-model)")
                saved = torch.load(path, weights_only=False)
                return TorchModel(saved["module"].eval(), tuple(saved["input_shape"] or ()), source=path)
            module = torch.jit.load(path)
        except (UntrustedModelError, InputFileError):
            raise
        except Exception as exc:
            raise InputFileError(f"{path}: not a torch model torch can load ({type(exc).__name__}: "
                                 f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''})") from None
        shape = getattr(module, "input_shape", None)
        return TorchModel(module.eval(), (None, *shape) if shape else (), scripted=True, source=path)

    # ---------------------------------------------------------------- inputs and layers
    def input_info(self, model: TorchModel) -> InputInfo:
        shape = model.input_shape or (None, None, None, None)
        return InputInfo("x", tuple(shape), "float32", layout_for_rank(len(shape), channels_first=True))

    def layers(self, model: TorchModel) -> list[LayerInfo]:
        if model.scripted:
            return [LayerInfo("output", "ScriptModule", None, "none", ["other"], [])]
        records, _ = self._capture(model, self._probe(model), keep=lambda name: True)
        return [_layer_info(r, model.classes) for r in records]

    def run(self, model: TorchModel, x: np.ndarray | Mapping[str, np.ndarray],
            layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        import torch

        info = self.input_info(model)
        arr = input_arrays(x, [info], f"torch model {model.source}")[info.name]
        tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if model.scripted:
            with torch.no_grad():
                out = model.module(tensor)
            pick_layers(["output"], layers, f"torch model {model.source}")
            return {"output": out.detach().numpy()}
        wanted = None if layers is None else set(layers)
        records, _ = self._capture(model, tensor, keep=lambda name: wanted is None or name in wanted)
        names = pick_layers([r.name for r in records], layers, f"torch model {model.source}")
        by_name = {r.name: r for r in records}
        return {name: by_name[name].output.numpy() for name in names}

    def _capture(self, model: TorchModel, tensor: Any, keep) -> tuple:
        from xvalidate_torch.capture import capture

        return capture(model.module, [tensor], keep)

    def _probe(self, model: TorchModel) -> Any:
        """An input of batch 1 for listing the layers (their names come from one traced call)."""
        import torch

        shape = model.input_shape
        if not shape or any(d is None for d in shape[1:]):
            raise InputShapeError(f"torch model {model.source}: its input shape is unknown; set the module's "
                                  f"attribute input_shape (without the batch, e.g. (3, 224, 224)) before saving")
        return torch.zeros((1, *shape[1:]), dtype=torch.float32)

    def kernel(self, model: TorchModel, name: str) -> np.ndarray | None:
        if model.scripted:
            return None
        module = dict(model.module.named_modules()).get(name.split("@")[0])
        weight = getattr(module, "weight", None)
        if weight is None or type(module).__name__ not in ("Conv1d", "Conv2d"):
            return None
        return weight.detach().numpy().copy()


def _declared_shape(model: Any, example: np.ndarray | None) -> list | None:
    if example is not None:
        return [None, *np.asarray(example).shape[1:]]
    shape = getattr(model, "input_shape", None)
    return [None, *shape] if shape is not None else None


def _written_by_caller(path: str) -> bool:
    """Whether `path` lies in a temporary model directory of the process that started this worker."""
    root = Path(tempfile.gettempdir()).resolve()
    prefix = f"xvalidate-{os.getppid()}-model-"
    parents = Path(path).resolve().parents
    return any(p.parent == root and p.name.startswith(prefix) for p in parents)


def _program_classes(program: Any) -> dict[str, str]:
    """{module path: class name} of a torch.export program (its unflattened modules are all InterpreterModule)."""
    classes = {}
    for node in program.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            classes.setdefault(path, str(cls).rsplit(".", 1)[-1].strip("'>"))
    return classes


def _layer_info(record: Any, classes: Mapping[str, str]) -> LayerInfo:
    from xvalidate_torch.kinds import module_attrs, module_kinds

    shape = tuple(record.output.shape) if record.output is not None else None
    rank = len(shape) if shape else 0
    op = record.op
    if record.module is not None:
        op = classes.get(record.name.split("@")[0], op)
        kinds, attrs = module_kinds(record.module, op), module_attrs(record.module)
    else:
        kinds, attrs = [FUNCTION_KINDS.get(record.op.strip("_").replace("iadd", "add"), "other")], {}
    return LayerInfo(record.name, op, None if shape is None else (None, *shape[1:]),
                     layout_for_rank(rank, channels_first=True), kinds,
                     [i for i in record.inputs if not i.startswith("input:")], attrs)
