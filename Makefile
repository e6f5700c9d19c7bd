# The same commands locally and in CI.
.PHONY: install lint test test-all train bench

install:
	python -m pip install torch==2.13.0
	python -m pip install -e ".[test]"

lint:
	ruff check .
	mypy
	lint-imports

test:
	python -m pytest -q

test-all:  # includes the slow training tests
	python -m pytest -q -m "expensive or not expensive"

train:
	python -m experiments.train

bench:
	python -m experiments.bench
