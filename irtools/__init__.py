"""irtools: symbolic FLOP and byte costs of model graphs (torch.export / ONNX)."""

from irtools.analysis import AnalysisResult, analyze, analyze_ir, analyze_module

__all__ = ["AnalysisResult", "analyze", "analyze_ir", "analyze_module"]
__version__ = "0.1.0"
