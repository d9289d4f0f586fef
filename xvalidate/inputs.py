"""The input batch a comparison runs on, in the source model's layout.

`inputs` may be None (seeded random data that fits each input: token ids in the
range the model states, e.g. [0, input_dim) for an Embedding, 0/1 for masks, normal
floats elsewhere), a numpy array, a `.npy` file, a dict {input name: array} or a
`.npz` file of named arrays (models with several inputs), an image file, a
directory of images or a list of image files. Integer inputs stay integers. Images are resized to the model's input size and preprocessed by one of
PREPROCESSING (default "unit"):
  none    raw 0..255 RGB values
  unit    RGB / 255, in 0..1
  tf      RGB / 127.5 - 1, in -1..1 (MobileNet, Inception, Xception, EfficientNet use their own scaling)
  caffe   BGR minus the ImageNet channel means (keras ResNet50 and VGG16 preprocess_input)
  torch   RGB / 255, minus the ImageNet mean, divided by its standard deviation
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError, OptionError

PREPROCESSING = ("none", "unit", "tf", "caffe", "torch")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
_STD_RGB = np.array([58.393, 57.12, 57.375], np.float32)


def load_input_batch(inputs: Any, infos: Sequence, batch: int = 1, seed: int = 0,
                     preprocess: str = "unit") -> tuple[dict[str, np.ndarray], dict]:
    """{input name: batch} for a model whose inputs are `infos` (InputInfo list), and a description
    of where the data came from. One array, a .npy file or images go to a single-input model; a
    dict or a .npz file is paired with the inputs by name, then by position."""
    if len(infos) == 1 and not isinstance(inputs, Mapping) and not _is_npz(inputs):
        info = infos[0]
        x, desc = load_inputs(inputs, info.shape, info.layout, batch=batch, seed=seed, preprocess=preprocess,
                              dtype=info.dtype, value_range=info.value_range)
        return {info.name: x}, desc
    names = ", ".join(info.name for info in infos)
    if inputs is None:
        rng = np.random.default_rng(seed)
        arrays = {info.name: _random(info.shape, info.dtype, info.value_range, _batch(batch), rng) for info in infos}
        return arrays, {"source": "random", "seed": seed, "inputs": _describe_arrays(arrays, infos)}
    if _is_npz(inputs):
        given, what = _load_npz(Path(inputs)), str(inputs)
    elif isinstance(inputs, Mapping):
        given, what = dict(inputs), "dict"
    else:
        raise InputShapeError(f"inputs: the model has {len(infos)} inputs ({names}); give a dict "
                              "{input name: array} or a .npz file of named arrays")
    from xvalidate_adapters.common import pair_by_name

    paired = pair_by_name([info.name for info in infos], given, f"inputs ({what})")
    arrays = {}
    for info in infos:
        arrays[info.name], _ = load_inputs(np.asarray(paired[info.name]), info.shape, info.layout, dtype=info.dtype,
                                           value_range=info.value_range, label=f"{what}, input {info.name!r}")
    if len({len(a) for a in arrays.values()}) > 1:
        sizes = ", ".join(f"{k}: {len(a)}" for k, a in arrays.items())
        raise InputShapeError(f"inputs ({what}): the inputs hold different numbers of samples ({sizes})")
    return arrays, {"source": what, "inputs": _describe_arrays(arrays, infos)}


def load_inputs(inputs: Any, shape: Sequence[int | None], layout: str, batch: int = 1, seed: int = 0,
                preprocess: str = "unit", dtype: str = "float32", value_range: Sequence[int] | None = None,
                label: str | None = None) -> tuple[np.ndarray, dict]:
    """The input batch of one input (source layout) and a description of where it came from.

    `shape` is the model's input shape with the batch dimension first (None or any value);
    `value_range` the [low, high) its values must lie in (token ids), None for any value."""
    want = tuple(shape[1:])
    batch = _batch(batch)
    if inputs is None:
        x = _random(shape, dtype, value_range, batch, np.random.default_rng(seed))
        return x, {"source": "random", "seed": seed, "shape": list(x.shape), "dtype": str(x.dtype),
                   **({"range": list(value_range)} if value_range is not None else {})}
    if _is_npz(inputs):
        arrays = _load_npz(Path(inputs))
        if len(arrays) != 1:
            raise InputShapeError(f"{inputs}: holds {len(arrays)} arrays ({', '.join(arrays)}) for a model with "
                                  "one input")
        x, what = next(iter(arrays.values())), str(inputs)
    elif isinstance(inputs, np.ndarray):
        x, what = inputs, "array"
    elif isinstance(inputs, (str, Path)) and Path(inputs).suffix.lower() == ".npy":
        x, what = _load_npy(Path(inputs)), str(inputs)
    elif isinstance(inputs, (str, Path, list, tuple)):
        files = _image_files(inputs)
        x, what = _load_images(files, want, layout, preprocess), ", ".join(map(str, files[:3])) + (" ..." if len(files) > 3 else "")
    else:
        raise InputShapeError(f"inputs: expected a numpy array, a .npy or .npz file or image files, "
                              f"got {type(inputs).__name__}")
    what = label or what
    x = np.asarray(x)
    if x.ndim == len(want):
        x = x[None]
    if x.ndim != len(want) + 1 or any(w is not None and w != d for w, d in zip(want, x.shape[1:])):
        raise InputShapeError(f"inputs ({what}): shape {x.shape} does not fit the model's input {_fmt(shape)}")
    if x.shape[0] == 0:
        raise InputShapeError(f"inputs ({what}): the batch is empty")
    if x.dtype.kind not in "biuf":
        raise InputShapeError(f"inputs ({what}): expected numbers, got dtype {x.dtype}")
    x = _cast(x, dtype, value_range, what)
    return x, {"source": what, "shape": list(x.shape), "dtype": str(x.dtype),
               **({"preprocess": preprocess} if what not in ("array",) and not str(what).endswith(".npy") else {})}


def _batch(batch: Any) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise OptionError(f"batch: expected a positive number of samples, got {batch!r}")
    return batch


def _random(shape: Sequence[int | None], dtype: str, value_range: Sequence[int] | None, batch: int,
            rng: np.random.Generator) -> np.ndarray:
    """Seeded data of one input: integers in `value_range` (or 0/1 for an integer or boolean input
    of unknown range), else standard normal floats."""
    want = tuple(shape[1:])
    if any(d is None for d in want):
        raise InputShapeError(f"the model's input shape {_fmt(shape)} has unknown dimensions: give inputs "
                              f"(an array or .npy file) or an input shape")
    kind = np.dtype(dtype).kind
    if value_range is None and kind not in "iub":
        return rng.standard_normal((batch,) + want).astype(dtype)
    low, high = value_range if value_range is not None else (0, 2)
    return rng.integers(int(low), int(high), (batch,) + want).astype(dtype)


def _cast(x: np.ndarray, dtype: str, value_range: Sequence[int] | None, what: str) -> np.ndarray:
    """`x` in the input's dtype. Integer and boolean inputs take only whole numbers, and values in
    `value_range` when it is known: anything else would be silently truncated or out of a table."""
    if np.dtype(dtype).kind in "iub":
        if np.dtype(x.dtype).kind == "f" and not np.all(np.isfinite(x) & (x == np.round(x))):
            raise InputShapeError(f"inputs ({what}): the model takes {dtype} values (token ids, a mask), "
                                  f"got non-integer {x.dtype} numbers")
        if value_range is not None and x.size and (x.min() < value_range[0] or x.max() >= value_range[1]):
            raise InputShapeError(f"inputs ({what}): values must lie in [{value_range[0]}, {value_range[1]}) "
                                  f"(e.g. token ids below an Embedding's input_dim), got {x.min()}..{x.max()}")
    out = x.astype(dtype, copy=False)
    check_finite(out, what, original=x)
    return out


def check_finite(x: np.ndarray, what: str, original: np.ndarray | None = None) -> None:
    """Refuse NaN and Inf in an input: every comparison on them would be NaN, or pass by accident.
    Counts them, and says when only the cast of `original` (float64) to the model's dtype overflowed."""
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    nans, infs = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    overflow = ""
    if original is not None and original.dtype != x.dtype and np.isfinite(original).all():
        overflow = f" (finite as {original.dtype}, too large for {x.dtype})"
    raise InputShapeError(f"inputs ({what}): {nans} NaN and {infs} infinite values of {x.size}{overflow}, "
                          f"the first at index {first}; give finite inputs")


def _describe_arrays(arrays: Mapping[str, np.ndarray], infos: Sequence) -> dict:
    ranges = {info.name: info.value_range for info in infos}
    return {name: {"shape": list(a.shape), "dtype": str(a.dtype),
                   **({"range": list(ranges[name])} if ranges.get(name) is not None else {})}
            for name, a in arrays.items()}


def _is_npz(inputs: Any) -> bool:
    return isinstance(inputs, (str, Path)) and Path(inputs).suffix.lower() == ".npz"


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputFileError(f"{path}: no such input file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (ValueError, OSError) as exc:
        raise InputFileError(f"{path}: not a readable .npz file ({exc})") from None
    if not arrays:
        raise InputFileError(f"{path}: holds no arrays")
    return arrays


def _fmt(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputFileError(f"{path}: no such input file")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputFileError(f"{path}: not a readable .npy array ({exc})") from None


def _image_files(inputs) -> list[Path]:
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif not item.exists():
            raise InputFileError(f"{item}: no such input file")
        elif item.suffix.lower() in IMAGE_SUFFIXES:
            files.append(item)
        else:
            raise InputFileError(f"{item}: unknown input type; expected .npy or an image ({', '.join(IMAGE_SUFFIXES)})")
    if not files:
        raise InputFileError(f"{inputs}: no image files found")
    return files


def _load_images(files: list[Path], want: tuple, layout: str, preprocess: str) -> np.ndarray:
    if preprocess not in PREPROCESSING:
        raise OptionError(f"preprocess: unknown {preprocess!r}; expected one of {', '.join(PREPROCESSING)}")
    if len(want) != 3:
        raise InputShapeError(f"{files[0]}: images need a model with an image input, not shape {want}")
    channels_first = layout == "NCHW"
    c, h, w = (want[0], want[1], want[2]) if channels_first else (want[2], want[0], want[1])
    from PIL import Image, UnidentifiedImageError

    batch = []
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert("L" if c == 1 else "RGB")
                if h is not None and w is not None:
                    img = img.resize((w, h), Image.BILINEAR)
                arr = np.asarray(img, np.float32).reshape(img.size[1], img.size[0], c)
        except (UnidentifiedImageError, OSError) as exc:
            raise InputFileError(f"{path}: not a readable image ({exc})") from None
        batch.append(_preprocess(arr, preprocess))
    x = np.stack(batch)
    return x.transpose(0, 3, 1, 2) if channels_first else x


def _preprocess(rgb: np.ndarray, how: str) -> np.ndarray:
    if how == "unit":
        return rgb / 255.0
    if how == "tf":
        return rgb / 127.5 - 1.0
    if how == "caffe" and rgb.shape[-1] == 3:
        return rgb[..., ::-1] - _MEAN_RGB[::-1]
    if how == "torch" and rgb.shape[-1] == 3:
        return (rgb - _MEAN_RGB) / _STD_RGB
    return rgb


def one_or_dict(arrays: Mapping[str, np.ndarray]) -> np.ndarray | Mapping[str, np.ndarray]:
    """What a worker's run() takes: the array of a single-input model, else {input name: array}."""
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


def pair_inputs(src_infos: Sequence, dst_infos: Sequence, where: str) -> list[tuple]:
    """(source input, destination input) pairs: by name first (a ':0' suffix ignored), the rest
    by position. Models with different numbers of inputs raise InputShapeError."""
    if len(src_infos) != len(dst_infos):
        raise InputShapeError(f"{where}: the destination has {len(dst_infos)} inputs "
                              f"({', '.join(i.name for i in dst_infos)}) but the source has {len(src_infos)} "
                              f"({', '.join(i.name for i in src_infos)})")
    from xvalidate_adapters.common import pair_by_name

    by_dst = pair_by_name([d.name for d in dst_infos], {s.name: s for s in src_infos}, where)
    return [(by_dst[d.name], d) for d in dst_infos]
