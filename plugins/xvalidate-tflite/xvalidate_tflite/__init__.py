"""TensorFlow Lite for xvalidate, registered through the entry points `xvalidate.adapters` (tflite)
and `xvalidate.routes` (tflite: keras -> tflite). Importing this package imports no TensorFlow."""
