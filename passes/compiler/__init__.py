"""Adapters that plug irtools into compiler pipelines: the FX pass, the ``torch.compile``
backend, the Inductor hook and comparison, and ONNX-to-ONNX annotation. The only passes that
may call capture and the pipeline."""
