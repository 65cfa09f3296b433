"""Frontends: a model in, a bare IR out (``irtools.ir.IRGraph``, no costs).

``irtools.capture.torch`` (torch.export, FX graphs) and ``irtools.capture.onnx`` (ONNX files:
loading, layout, symbolic shape inference). They import the IR and nothing from ``passes``.
Import the frontend you need; this package imports neither, so the ONNX path never loads torch.
"""
