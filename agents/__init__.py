"""Policies (heuristic baselines and learned agents), the evaluation harness, ONNX export."""
