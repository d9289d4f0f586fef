"""What `compare`, `validate`, `compare_routes` and the CLI use when the caller names no adapter or
route: one place for these literals, which are part of the API's contract (`validate(model)` converts
from DEFAULT_SRC to DEFAULT_DST through DEFAULT_VIA). Nothing else depends on which frameworks they are."""
from __future__ import annotations

DEFAULT_SRC = "keras"
DEFAULT_DST = "mxnet"
DEFAULT_VIA = "mmdnn"
DEFAULT_ROUTES = ("mmdnn", "onnx")
