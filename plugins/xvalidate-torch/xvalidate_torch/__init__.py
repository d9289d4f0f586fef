"""PyTorch for xvalidate, registered through the entry points `xvalidate.adapters` (torch) and
`xvalidate.routes` (torch-onnx, the exporter half that via='onnx' composes with an importer).
Importing this package imports no torch."""
