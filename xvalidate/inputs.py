"""The input batch a comparison runs on, in the source model's layout.

`inputs` may be None (seeded random data of the model's input shape), a numpy
array, a `.npy` file, an image file, a directory of images or a list of image
files. Images are resized to the model's input size and preprocessed by one of
PREPROCESSING (default "unit"):
  none    raw 0..255 RGB values
  unit    RGB / 255, in 0..1
  tf      RGB / 127.5 - 1, in -1..1 (MobileNet, Inception, Xception, EfficientNet use their own scaling)
  caffe   BGR minus the ImageNet channel means (keras ResNet50 and VGG16 preprocess_input)
  torch   RGB / 255, minus the ImageNet mean, divided by its standard deviation
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from xvalidate.errors import InputFileError, InputShapeError, OptionError

PREPROCESSING = ("none", "unit", "tf", "caffe", "torch")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
_STD_RGB = np.array([58.393, 57.12, 57.375], np.float32)


def load_inputs(inputs: Any, shape: Sequence[int | None], layout: str, batch: int = 1, seed: int = 0,
                preprocess: str = "unit", dtype: str = "float32") -> tuple[np.ndarray, dict]:
    """The input batch (source layout) and a description of where it came from.

    `shape` is the model's input shape with the batch dimension first (None or any value)."""
    want = tuple(shape[1:])
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise OptionError(f"batch: expected a positive number of samples, got {batch!r}")
    if inputs is None:
        if any(d is None for d in want):
            raise InputShapeError(f"the model's input shape {_fmt(shape)} has unknown dimensions: give inputs "
                                  f"(an array or .npy file) or an input shape")
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((batch,) + want).astype(dtype)
        return x, {"source": "random", "seed": seed, "shape": list(x.shape), "dtype": str(x.dtype)}
    if isinstance(inputs, np.ndarray):
        x, what = inputs, "array"
    elif isinstance(inputs, (str, Path)) and Path(inputs).suffix.lower() == ".npy":
        x, what = _load_npy(Path(inputs)), str(inputs)
    elif isinstance(inputs, (str, Path, list, tuple)):
        files = _image_files(inputs)
        x, what = _load_images(files, want, layout, preprocess), ", ".join(map(str, files[:3])) + (" ..." if len(files) > 3 else "")
    else:
        raise InputShapeError(f"inputs: expected a numpy array, a .npy file or image files, got {type(inputs).__name__}")
    x = np.asarray(x)
    if x.ndim == len(want):
        x = x[None]
    if x.ndim != len(want) + 1 or any(w is not None and w != d for w, d in zip(want, x.shape[1:])):
        raise InputShapeError(f"inputs ({what}): shape {x.shape} does not fit the model's input {_fmt(shape)}")
    if x.shape[0] == 0:
        raise InputShapeError(f"inputs ({what}): the batch is empty")
    if not np.issubdtype(x.dtype, np.number):
        raise InputShapeError(f"inputs ({what}): expected numbers, got dtype {x.dtype}")
    x = x.astype(dtype, copy=False)
    return x, {"source": what, "shape": list(x.shape), "dtype": str(x.dtype),
               **({"preprocess": preprocess} if what not in ("array",) and not str(what).endswith(".npy") else {})}


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
