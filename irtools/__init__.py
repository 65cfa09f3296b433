"""irtools: symbolic FLOP and byte costs of model graphs (torch.export / ONNX).

``irtools.analyze``, ``analyze_module`` and ``analyze_ir`` are loaded on first use, so that
importing a submodule (``passes.costs``, ``irtools.ir``) never pulls in the whole pipeline.
"""

__version__ = "0.1.0"
__all__ = ["AnalysisResult", "analyze", "analyze_ir", "analyze_module"]


def __getattr__(name: str):
    if name in __all__:
        from irtools import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'irtools' has no attribute {name!r}")
