import subprocess
import sys

FRAMEWORKS = ("tensorflow", "keras", "mxnet", "onnxruntime", "onnx", "tf2onnx", "mmdnn")


def test_import_loads_no_framework_and_is_fast():
    code = (
        "import sys, time; t = time.perf_counter(); import xvalidate; dt = time.perf_counter() - t;"
        "import xvalidate.api, xvalidate.cli, xvalidate.core.diff, xvalidate.routes.mmdnn, xvalidate.routes.onnx;"
        "xvalidate.adapters(); [xvalidate.get_adapter(n) for n in ('keras', 'mxnet', 'onnx')];"
        f"print(dt); print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert float(out[0]) < 0.5
    assert out[1] == "", f"frameworks imported: {out[1]}"


def test_builtin_adapters_and_routes_are_listed():
    import xvalidate

    assert {"keras", "mxnet", "onnx"} <= set(xvalidate.adapters())
    assert {"mmdnn", "onnx"} <= set(xvalidate.route_names())


def test_unknown_adapter_is_a_clear_error():
    import pytest

    import xvalidate
    from xvalidate.errors import UnknownAdapterError

    with pytest.raises(UnknownAdapterError, match="unknown adapter 'caffe'; expected one of: keras"):
        xvalidate.get_adapter("caffe")
