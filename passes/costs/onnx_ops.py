"""Cost rules of ONNX ops (filled by the ONNX frontend's issue); same kinds as ATen rules."""
