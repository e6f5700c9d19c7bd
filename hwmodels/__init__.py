"""Calibrated hardware models (pure numpy): devices, workloads, latency, partitions."""
