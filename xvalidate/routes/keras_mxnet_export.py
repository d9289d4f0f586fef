"""The keras-mxnet route's first step, in the tf.keras worker: the model's architecture as a
functional config (`config.json`) and its weights as an h5 file Keras 2.2.4 can read
(`weights.h5`, tf.keras's `save_weights` in the h5 format). TensorFlow is imported inside."""
from __future__ import annotations

import time
from pathlib import Path

from xvalidate.registry import get_adapter


def export_keras(model_path: str, out_dir: str) -> dict:
    """Write `<out_dir>/config.json` and `<out_dir>/weights.h5`; return their paths, the input
    layers' names and the seconds taken."""
    from tensorflow import keras

    start = time.perf_counter()
    model = get_adapter("keras").load(model_path)
    if isinstance(model, keras.Sequential):  # Keras 2.2.4 reads tf.keras's functional configs best
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config, weights = out / "config.json", out / "weights.h5"
    config.write_text(model.to_json())  # {"class_name": "Functional", "config": ...}
    model.save_weights(str(weights), save_format="h5")
    return {"config": str(config), "weights": str(weights), "seconds": time.perf_counter() - start}
