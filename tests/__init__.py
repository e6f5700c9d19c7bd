"""The test suite (a regular package: an installed package named ``tests``, e.g. ciw's, must
not shadow it)."""
