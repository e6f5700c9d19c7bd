"""Throughput benchmarks the project bench (``python -m experiments.bench``) calls.

- :func:`bench_generation`: arrivals per second of the slowest synthetic preset, including the
  model labels of a 4-model Zipf mix (goal: >= 10 million/s).
- :func:`bench_replay`: seconds to replay a 1-million-row generic CSV from a cold start
  (parse, clean, cut a window, rescale, label; goal: <= 2 s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from traces.arrivals import zipf_mix
from traces.presets import SYNTHETIC_PRESETS, get_trace
from traces.replay import CsvReplay, clear_cache

_BENCH_MODELS = ("resnet50", "bert-base", "gpt2", "vit-b16")


def bench_generation_by_preset(n: int = 2_000_000, repeats: int = 3,
                               presets: tuple[str, ...] = SYNTHETIC_PRESETS
                               ) -> dict[str, float]:
    """Arrivals per second of each synthetic preset (best of ``repeats`` runs of ``n``)."""
    out: dict[str, float] = {}
    for name in presets:
        src = get_trace(name)
        # A preset with explicit per-phase weights (mix-swing's three models) draws for a mix
        # of that many models; the others for all of _BENCH_MODELS.
        weights = getattr(src, "weights", None)
        k = len(weights[0]) if weights else len(_BENCH_MODELS)
        mix = zipf_mix(_BENCH_MODELS[:k], 1.0)
        best = float("inf")
        for r in range(repeats):
            rng = np.random.default_rng(r)
            t0 = time.perf_counter()
            src.sample(rng, mix, n, 1000.0)
            best = min(best, time.perf_counter() - t0)
        out[name] = n / best
    return out


def bench_generation(n: int = 2_000_000, repeats: int = 3) -> float:
    """Arrivals per second of the slowest synthetic preset (see the module docstring)."""
    return min(bench_generation_by_preset(n, repeats).values())


def write_bench_csv(path: str | os.PathLike[str], n_rows: int = 1_000_000,
                    seed: int = 0) -> Path:
    """Write a generic-CSV trace of ``n_rows`` requests (all optional columns) for benchmarks."""
    rng = np.random.default_rng(seed)
    s = np.dtypes.StringDType()
    us = np.rint(np.cumsum(rng.exponential(1e-3, n_rows)) * 1e6).astype(np.int64)
    time_s = (us // 10**6).astype(s) + "." + np.strings.zfill((us % 10**6).astype(s), 6)
    model = np.array(_BENCH_MODELS, dtype=s)[rng.integers(0, len(_BENCH_MODELS), n_rows)]
    size = rng.integers(1, 33, n_rows).astype(s)
    prio = rng.integers(0, 3, n_rows).astype(s)
    sla = np.array(["25", "50", "100", "250"], dtype=s)[rng.integers(0, 4, n_rows)]
    tenant = "tenant" + rng.integers(0, 64, n_rows).astype(s)
    row = time_s + "," + model + "," + size + "," + prio + "," + sla + "," + tenant
    body = "\n".join(row.tolist())
    p = Path(path)
    p.write_text("time_s,model,size,priority,sla_ms,tenant\n" + body + "\n")
    return p


def bench_replay(tmpdir: str | os.PathLike[str], n_rows: int = 1_000_000,
                 repeats: int = 1) -> float:
    """Seconds to replay an ``n_rows`` generic CSV cold: parse, clean, window, rescale, label.

    The file is written to ``tmpdir`` first (not timed); the best of ``repeats`` cold runs is
    returned.
    """
    path = write_bench_csv(Path(tmpdir) / f"bench_{n_rows}.csv", n_rows)
    mix = zipf_mix(_BENCH_MODELS, 1.0)
    best = float("inf")
    for r in range(repeats):
        clear_cache()
        t0 = time.perf_counter()
        a = CsvReplay(str(path)).sample(np.random.default_rng(r), mix, n_rows, 500.0)
        best = min(best, time.perf_counter() - t0)
        assert len(a) == n_rows
    clear_cache()
    return best
