"""Frontends that turn a model into the irtools IR (``irtools.ir.IRGraph``)."""

from irtools.capture.torch_export import CaptureError, capture_module

__all__ = ["CaptureError", "capture_module"]
