"""Probes run inside the keras-mxnet environment's worker (shipped there by the tests): what
keras-mxnet does with and without the route's shims."""
import os
import subprocess
import sys
import tempfile


def import_keras() -> tuple[int, str]:
    """Import keras, without the shims, in a fresh Python of the environment; (exit code, last line
    of its stderr)."""
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, KERAS_HOME=home, KERAS_BACKEND="mxnet")
        done = subprocess.run([sys.executable, "-c", "import keras"], capture_output=True, text=True, env=env)
    lines = done.stderr.strip().splitlines()
    return done.returncode, lines[-1] if lines else ""


def layer_names(h5_path: str, wrapped: bool) -> list[str] | str:
    """Keras 2.2.4's reading of the layer names in a tf.keras h5 weights file: the names, or the
    error it raises."""
    import h5py

    from xvalidate.routes.keras_mxnet_shims import BytesAttributes, alias_collections

    alias_collections()
    from keras.engine.saving import load_attributes_from_hdf5_group

    with h5py.File(h5_path, "r") as f:
        try:
            return load_attributes_from_hdf5_group(BytesAttributes(f) if wrapped else f, "layer_names")
        except Exception as exc:  # noqa: BLE001 (the error is the answer)
            return f"{type(exc).__name__}: {exc}"
