"""Hydra apps: train, evaluate, export, calibrate, bench."""
