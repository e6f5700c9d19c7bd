"""Embedding-row popularity: a bounded Zipf-like law, calibrated on Meta's reuse statistics.

Rows of one table are ranked by popularity (rank 0 is the hottest). A lookup draws its rank
from a bounded continuous power law over ``x = rank + 1 in [1, R + 1)``::

    F(x) = (x ** (1 - alpha) - 1) / ((R + 1) ** (1 - alpha) - 1)      (alpha != 1)
    F(x) = log(x) / log(R + 1)                                        (alpha == 1)

so ``P(rank = k) = F(k + 2) - F(k + 1)``, close to ``k ** -alpha`` and exact to sample by
inversion (:func:`sample_ranks`, vectorised, O(1) per lookup whatever ``R``: a 40 M-row table
costs what a 40-row one does).

Calibration. ``facebookresearch/dlrm_datasets`` publishes, per batch of lookups over all the
tables of a production-like model, the fraction of distinct rows hit exactly once and the mean
hits per distinct row (``/work/shared/traces/dlrm-embedding-locality``, MIT; see its
PROVENANCE.md). Both statistics depend on the exponent ``alpha`` and on the window, the number
of lookups ``n`` per table row ``R``; :func:`fit_zipf` solves both (two equations, two
unknowns) with the expected statistics of ``n`` draws (:func:`expected_reuse`). The fitted
exponent is what the simulator uses; the window only describes Meta's measurement. The result
is stored below (:data:`LOCALITY_TARGETS`, :data:`FITTED`) so the project runs without the data;
``tests/test_shard_skew.py`` re-fits from the files when they are present and checks that
sampled streams reproduce the statistics.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Rows of the reference table the calibration is solved on. The fitted ``alpha`` moves by
#: about -0.01 per 4x more rows (2021 targets: 0.97 at 2**18, 0.95 at 2**20, 0.94 at 2**22),
#: so the choice matters little.
REFERENCE_ROWS = 2**20


@dataclass(frozen=True)
class LocalityStats:
    """Reuse statistics of one batch of embedding lookups.

    Attributes:
        indices: Lookups in the batch.
        unique: Distinct rows among them.
        frac_once: Fraction of the distinct rows looked up exactly once.
        mean_hits: Lookups per distinct row (``indices / unique``).
        hist: Fractions of distinct rows with a hit count in ``(0,1], (1,2], (2,4], ...``
            (17 bins, the last open-ended), as the files give them.
    """

    indices: float
    unique: float
    frac_once: float
    mean_hits: float
    hist: tuple[float, ...] = ()


@dataclass(frozen=True)
class ZipfFit:
    """A fitted popularity law and what it reproduces.

    Attributes:
        alpha: Exponent of the bounded power law.
        window: Lookups per table row (``n / R``) of the measurement.
        target_frac_once: The measured fraction of rows hit once.
        target_mean_hits: The measured mean hits per row.
        model_frac_once: The law's expected fraction at the fitted window.
        model_mean_hits: The law's expected mean hits at the fitted window.
        source: Where the targets come from.
    """

    alpha: float
    window: float
    target_frac_once: float
    target_mean_hits: float
    model_frac_once: float
    model_mean_hits: float
    source: str = ""


# ---------------------------------------------------------------------------------------------
# Calibrated constants (provenance next to them)
# ---------------------------------------------------------------------------------------------

_SRC = ("facebookresearch/dlrm_datasets@6f46ba79 embedding_bag/{}/locality_stats.txt (MIT), "
        "copied to traces/dlrm-embedding-locality/locality_stats_{}.txt; mean over its {} "
        "batches")

#: Measured reuse per file: (fraction of distinct rows hit once, mean hits per row), the mean
#: over the file's batches (2021: 17 batches of 856 tables; 2022: 16 batches of 788 tables).
LOCALITY_TARGETS: dict[str, LocalityStats] = {
    "2021": LocalityStats(indices=4.9282e8, unique=6.5581e7, frac_once=0.42594,
                          mean_hits=7.55347),
    "2022": LocalityStats(indices=1.40545e9, unique=1.10260e8, frac_once=0.342,
                          mean_hits=12.74667),
}

#: Fitted by :func:`fit_zipf` on :data:`LOCALITY_TARGETS` with ``R = REFERENCE_ROWS``
#: (2026-11-29). ``"all"`` fits the mean of the two files' statistics and is the default.
FITTED: dict[str, ZipfFit] = {
    "2021": ZipfFit(0.94904, 5.04921, 0.42594, 7.55347, 0.42594, 7.55347,
                    _SRC.format("2021", "2021", 17)),
    "2022": ZipfFit(1.00081, 9.75057, 0.342, 12.74667, 0.342, 12.74667,
                    _SRC.format("2022", "2022", 16)),
    "all": ZipfFit(0.98240, 7.27945, 0.38397, 10.15007, 0.38397, 10.15007,
                   "the mean of the 2021 and 2022 targets (see '2021', '2022')"),
}

#: The exponent the simulator uses unless told otherwise.
DEFAULT_ALPHA = FITTED["all"].alpha


# ---------------------------------------------------------------------------------------------
# The law
# ---------------------------------------------------------------------------------------------


def law_norm(rows: np.ndarray | float, alpha: float) -> np.ndarray:
    """``(R + 1) ** (1 - alpha) - 1`` (or ``log(R + 1)`` for ``alpha == 1``)."""
    r1 = np.asarray(rows, dtype=np.float64) + 1.0
    if abs(alpha - 1.0) < 1e-9:
        return np.log(r1)
    return r1 ** (1.0 - alpha) - 1.0


def cdf(x: np.ndarray | float, rows: np.ndarray | float, alpha: float) -> np.ndarray:
    """``F(x)``: the mass of ranks ``< x - 1`` (``x`` in ``[1, R + 1]``)."""
    xx = np.asarray(x, dtype=np.float64)
    if abs(alpha - 1.0) < 1e-9:
        return np.log(xx) / law_norm(rows, alpha)
    return (xx ** (1.0 - alpha) - 1.0) / law_norm(rows, alpha)


def sample_ranks(rng: np.random.Generator, rows: np.ndarray, alpha: float,
                 norm: np.ndarray | None = None, single: bool = False) -> np.ndarray:
    """One popularity rank per entry of ``rows`` (the table size of each lookup).

    Args:
        rng: The generator to draw from.
        rows: Rows of the table each lookup goes to (any shape, >= 1).
        alpha: Exponent (> 0).
        norm: ``law_norm(rows, alpha)`` if the caller has it (saves a power per lookup).
        single: Compute in float32 (twice as fast; exact for ``rows <= 2**24``).

    Returns:
        int64 ranks in ``[0, rows)``, shaped like ``rows``.
    """
    dtype = np.float32 if single else np.float64
    r = np.asarray(rows, dtype=dtype)
    c: np.ndarray = (law_norm(r, alpha) if norm is None else np.asarray(norm)).astype(
        dtype, copy=False)
    u: np.ndarray = rng.random(r.shape, dtype=dtype)
    if abs(alpha - 1.0) < 1e-9:
        x = np.exp(u * c)
    else:
        x = (1.0 + u * c) ** dtype(1.0 / (1.0 - alpha))
    k = x.astype(np.int64) - 1
    np.clip(k, 0, r.astype(np.int64) - 1, out=k)
    return k


def rank_buckets(rows: int, dense: int = 1024, n_geo: int = 1500) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Ranks grouped for fast sums: ``(edges, counts)``; ranks ``edges[i]..edges[i+1]-1``.

    The first ``dense`` ranks get a bucket each, then geometric buckets (the law is smooth
    there, so the per-row mass is nearly constant within a bucket).
    """
    rows = int(rows)
    geo = np.geomspace(max(min(dense, rows), 1), rows, n_geo) if rows > dense else np.zeros(0)
    edges = np.unique(np.concatenate([np.arange(0, min(rows, dense) + 1),
                                      np.floor(geo).astype(np.int64), [rows]]))
    return edges, np.diff(edges).astype(np.float64)


def bucket_masses(rows: int, alpha: float, dense: int = 1024,
                  n_geo: int = 1500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(edges, counts, p)``: rank buckets and the mass of one row in each."""
    edges, counts = rank_buckets(rows, dense, n_geo)
    F = cdf(edges + 1.0, rows, alpha)
    return edges, counts, np.diff(F) / counts


def expected_reuse(alpha: float, window: float, rows: int = REFERENCE_ROWS
                   ) -> tuple[float, float]:
    """Expected ``(fraction of distinct rows hit once, mean hits per row)`` of ``n`` draws.

    ``n = window * rows`` draws from the law over ``rows`` rows; with ``q_k = (1 - p_k)^n``,
    ``E[distinct] = sum(1 - q_k)`` and ``E[once] = sum(n p_k (1 - p_k)^(n-1))``.
    """
    _, c, p = bucket_masses(rows, alpha)
    n = window * rows
    q = np.exp(n * np.log1p(-p))
    distinct = float((c * (1.0 - q)).sum())
    once = float((c * n * p * q / (1.0 - p)).sum())
    return once / distinct, n / distinct


def fit_zipf(frac_once: float, mean_hits: float, rows: int = REFERENCE_ROWS,
             source: str = "") -> ZipfFit:
    """The ``(alpha, window)`` whose expected reuse matches the two statistics.

    At a fixed mean, the fraction hit once grows with ``alpha``, and at a fixed ``alpha`` the
    mean grows with the window: nested bisections solve both.

    Raises:
        ValueError: statistics out of range (``mean_hits <= 1`` or ``frac_once`` not in (0, 1)).
    """
    if not (mean_hits > 1.0 and 0.0 < frac_once < 1.0):
        raise ValueError(f"fit_zipf: need mean_hits > 1 and 0 < frac_once < 1, got "
                         f"{mean_hits}, {frac_once}")

    def window_for(alpha: float) -> float:
        lo, hi = 1e-5, 1e5
        for _ in range(50):
            mid = math.sqrt(lo * hi)
            if expected_reuse(alpha, mid, rows)[1] < mean_hits:
                lo = mid
            else:
                hi = mid
        return math.sqrt(lo * hi)

    lo, hi = 0.2, 3.0
    for _ in range(32):
        mid = 0.5 * (lo + hi)
        if expected_reuse(mid, window_for(mid), rows)[0] > frac_once:
            hi = mid
        else:
            lo = mid
    alpha = 0.5 * (lo + hi)
    window = window_for(alpha)
    f1, m = expected_reuse(alpha, window, rows)
    return ZipfFit(alpha, window, frac_once, mean_hits, f1, m, source)


def measured_reuse(ids: np.ndarray) -> LocalityStats:
    """The statistics of :class:`LocalityStats` of a stream of row ids."""
    _, counts = np.unique(np.asarray(ids), return_counts=True)
    upper = 2 ** np.arange(17)  # (0,1], (1,2], (2,4], ..., (16384, 32768], then open
    bins = np.searchsorted(upper, counts, side="left")
    hist = np.bincount(np.minimum(bins, 16), minlength=17) / len(counts)
    return LocalityStats(float(len(ids)), float(len(counts)), float(np.mean(counts == 1)),
                         float(len(ids) / len(counts)), tuple(float(h) for h in hist))


# ---------------------------------------------------------------------------------------------
# Reading the published files
# ---------------------------------------------------------------------------------------------

_NUM = r"([0-9.eE+]+)"


def parse_locality_stats(text: str) -> list[LocalityStats]:
    """Every batch of a ``locality_stats.txt`` (dlrm_datasets format).

    Raises:
        ValueError: no batch found.
    """
    out = []
    for block in re.split(r"\n(?=\S+\.pt\n)", text.strip()):
        ind = re.search(r"Avg # of indices: " + _NUM, block)
        uni = re.search(r"Avg # of unique cols: " + _NUM, block)
        hist_part = block.split("Histogram of col sizes:")[-1].split("Ratio of index")[0]
        hist = [float(v) for v in re.findall(r"^\(.*?\]?: ([0-9.]+)$|^\(32768\+: ([0-9.]+)$",
                                             hist_part, flags=re.M) for v in v if v]
        if ind is None or uni is None or not hist:
            continue
        indices, unique = float(ind.group(1)), float(uni.group(1))
        out.append(LocalityStats(indices, unique, hist[0], indices / unique, tuple(hist)))
    if not out:
        raise ValueError("no locality statistics found")
    return out


def load_locality_targets(folder: str | Path) -> dict[str, LocalityStats]:
    """Mean statistics per file of ``folder`` (``locality_stats_<year>.txt``)."""
    out = {}
    for path in sorted(Path(folder).glob("locality_stats_*.txt")):
        stats = parse_locality_stats(path.read_text())
        year = path.stem.rsplit("_", 1)[-1]
        out[year] = LocalityStats(
            float(np.mean([s.indices for s in stats])), float(np.mean([s.unique for s in stats])),
            round(float(np.mean([s.frac_once for s in stats])), 5),
            round(float(np.mean([s.mean_hits for s in stats])), 5),
            tuple(float(v) for v in np.mean([s.hist for s in stats], axis=0)))
    return out
