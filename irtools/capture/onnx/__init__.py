"""The ONNX frontend: load and check a file (never its weights), infer symbolic shapes, build the IR.

Imports no torch."""
