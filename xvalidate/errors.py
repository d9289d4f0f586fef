"""Errors raised by xvalidate. Every message is one line naming the file, layer or option at fault."""
from __future__ import annotations


class XValidateError(Exception):
    """Base class: bad input or a failure the user can act on (CLI exit code 2)."""


class InputFileError(XValidateError):
    """A model or input file is missing, has an unknown extension or cannot be read."""


class InputShapeError(XValidateError):
    """An input array does not have the shape or dtype the model expects."""


class UnknownLayerError(XValidateError):
    """A layer name that the model does not have."""


class UnknownAdapterError(XValidateError):
    """No adapter or route is registered under that name."""


class OptionError(XValidateError):
    """An option has a value that cannot be used."""


class WorkerError(XValidateError):
    """A framework worker process died, timed out or raised."""


class UnsupportedLayerError(XValidateError):
    """A conversion route cannot convert a layer of the model."""


class ConversionError(XValidateError):
    """A conversion route failed for another reason."""


class UntrustedModelError(XValidateError):
    """A model file would run code it carries while loading, and the user has not said to trust it."""


class WorkerTimeoutError(WorkerError):
    """A framework worker did not answer within its time limit."""
