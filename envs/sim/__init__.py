"""The discrete-event serving simulator under the environments (no gymnasium, no torch)."""
