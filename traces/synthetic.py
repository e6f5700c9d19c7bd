"""Synthetic arrival processes, vectorised and driven by the generator passed in.

Every class is a frozen dataclass implementing :class:`~traces.arrivals.TraceSource`:
``sample(rng, mix, n, rate_qps)`` returns ``n`` arrivals whose long-run mean rate is
``rate_qps * rate_scale``.

Non-homogeneous processes (MMPP, diurnal, flash crowd, piecewise schedules) use *time
rescaling*: arrivals of a unit-rate process ``E_1 < E_2 < ...`` (Poisson, or a Gamma renewal
process with CV ``cv`` for burstier traffic) are mapped through the inverse of the cumulative
intensity, ``t_i = Lambda^-1(E_i)``. The intensity is piecewise constant, so ``Lambda`` is
piecewise linear and the inversion is one ``np.interp`` - O(n) with no per-arrival Python.

Times in the non-homogeneous processes are in seconds (``time_unit="s"``) or in units of the
episode's expected duration ``n / rate`` (``time_unit="episode"``), so that e.g. one compressed
"day" or one flash crowd happens per episode whatever load the environment asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from traces.arrivals import Arrivals, WorkloadMix

TimeUnit = Literal["s", "episode"]
RenewalDist = Literal["gamma", "weibull", "lognormal"]


def _rate(rate_qps: float, rate_scale: float) -> float:
    rate = float(rate_qps) * float(rate_scale)
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"trace: arrival rate must be > 0 and finite, got {rate}")
    return rate


def _check_n(n: int) -> int:
    if n < 0:
        raise ValueError(f"trace: number of requests must be >= 0, got {n}")
    return int(n)


@lru_cache(maxsize=256)
def weibull_shape_for_cv(cv: float) -> float:
    """Weibull shape ``k`` whose coefficient of variation is ``cv``.

    Solves ``Gamma(1 + 2/k) / Gamma(1 + 1/k)^2 - 1 = cv^2`` by bisection on ``log k`` (the
    left side falls monotonically in ``k``).
    """
    if not cv > 0:
        raise ValueError(f"weibull: cv must be > 0, got {cv}")
    target = math.log1p(cv * cv)

    def f(logk: float) -> float:
        k = math.exp(logk)
        return math.lgamma(1 + 2 / k) - 2 * math.lgamma(1 + 1 / k) - target

    lo, hi = math.log(0.02), math.log(500.0)
    if f(lo) < 0 or f(hi) > 0:
        raise ValueError(f"weibull: cv {cv} outside the supported range (shape 0.02..500)")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def renewal_gaps(rng: np.random.Generator, n: int, mean: float, cv: float,
                 dist: RenewalDist = "gamma") -> np.ndarray:
    """``n`` i.i.d. inter-arrival gaps with the given mean and coefficient of variation.

    Args:
        rng: Generator.
        n: Number of gaps.
        mean: Mean gap (seconds, or 1 for a unit-rate process).
        cv: Coefficient of variation (0 = deterministic, 1 = exponential for Gamma).
        dist: Family: ``gamma`` (shape 1/cv^2), ``weibull`` (shape solved from cv) or
            ``lognormal``.
    """
    if cv < 0 or not math.isfinite(cv):
        raise ValueError(f"renewal: cv must be >= 0 and finite, got {cv}")
    if cv == 0:
        return np.full(n, float(mean))
    if dist == "gamma":
        if cv == 1.0:
            g = rng.standard_exponential(n)
            g *= mean
            return g
        shape = 1.0 / (cv * cv)
        g = rng.standard_gamma(shape, n)
        g *= mean / shape
        return g
    if dist == "weibull":
        k = weibull_shape_for_cv(cv)
        g = rng.weibull(k, n)
        g *= mean / math.gamma(1 + 1 / k)
        return g
    if dist == "lognormal":
        s2 = math.log1p(cv * cv)
        return rng.lognormal(math.log(mean) - 0.5 * s2, math.sqrt(s2), n)
    raise ValueError(f"renewal: unknown distribution '{dist}'; known: gamma, weibull, lognormal")


#: Arrivals per block where a sampler works through a trace block by block.
_BLOCK = 1 << 16


def _unit_arrivals(rng: np.random.Generator, n: int, cv: float) -> np.ndarray:
    """Arrival epochs of a unit-rate renewal process (Poisson when ``cv == 1``)."""
    g = renewal_gaps(rng, n, 1.0, cv, "gamma")
    return np.cumsum(g, out=g)


def invert_intensity(e: np.ndarray, edges: np.ndarray, lam: np.ndarray,
                     tail_rate: float) -> np.ndarray:
    """Map unit-rate epochs ``e`` through the inverse cumulative intensity.

    The intensity is ``lam[k]`` on ``[edges[k], edges[k+1])`` and ``tail_rate`` after
    ``edges[-1]``.

    Args:
        e: Non-decreasing epochs of a unit-rate process.
        edges: Segment edges (``len(lam) + 1``), increasing, starting at the origin.
        lam: Rates (>= 0) on the segments.
        tail_rate: Rate after the last edge (> 0 unless no epoch falls beyond it).
    """
    cum = np.concatenate(([0.0], np.cumsum(lam * np.diff(edges))))
    t = np.interp(e, cum, edges)
    beyond = e > cum[-1]
    if beyond.any():
        if not tail_rate > 0:
            raise ValueError("trace: the rate schedule ends at zero rate before all arrivals")
        t[beyond] = edges[-1] + (e[beyond] - cum[-1]) / tail_rate
    return t


def invert_periodic(e: np.ndarray, edges: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Like :func:`invert_intensity` for an intensity repeating with period ``edges[-1]``."""
    cum = np.concatenate(([0.0], np.cumsum(lam * np.diff(edges))))
    per_cycle = cum[-1]
    if not per_cycle > 0:
        raise ValueError("trace: the rate schedule has zero rate over a whole cycle")
    cycles = np.floor(e / per_cycle)
    rest = e - cycles * per_cycle
    return cycles * edges[-1] + np.interp(rest, cum, edges)


def _label(times: np.ndarray, mix: WorkloadMix, rng: np.random.Generator) -> Arrivals:
    return Arrivals.from_mix(times, mix, rng)


@dataclass(frozen=True)
class Renewal:
    """Renewal arrivals: i.i.d. inter-arrival times with a set mean rate and CV.

    ``cv > 1`` gives bursty traffic (a Gamma renewal process with CV 3 has clusters of
    near-simultaneous requests separated by long gaps), ``cv < 1`` smoother than Poisson,
    ``cv = 0`` a constant rate.

    Args:
        cv: Coefficient of variation of the inter-arrival times.
        dist: Inter-arrival family, ``gamma`` or ``weibull`` (or ``lognormal``).
        rate_scale: Multiplies the target rate the environment asks for.
    """

    cv: float = 2.0
    dist: RenewalDist = "gamma"
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.cv < 0 or not math.isfinite(self.cv):
            raise ValueError(f"Renewal: cv must be >= 0 and finite, got {self.cv}")
        if self.dist not in ("gamma", "weibull", "lognormal"):
            raise ValueError(f"Renewal: unknown dist '{self.dist}'; known: gamma, weibull, "
                             "lognormal")

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals with mean rate ``rate_qps * rate_scale`` and gap CV ``cv``."""
        rate = _rate(rate_qps, self.rate_scale)
        gaps = renewal_gaps(rng, _check_n(n), 1.0 / rate, self.cv, self.dist)
        return _label(np.cumsum(gaps, out=gaps), mix, rng)


Split = Literal["all", "train", "test"]


def split_range(span_s: float, split: Split, test_fraction: float) -> tuple[float, float]:
    """The ``[a, b)`` of a schedule's timeline ``[0, span_s)`` that ``split`` may use: the
    first ``1 - test_fraction`` is ``train``, the rest ``test``; ``all`` is the whole span."""
    cut = (1.0 - test_fraction) * span_s
    return {"all": (0.0, span_s), "train": (0.0, cut), "test": (cut, span_s)}[split]


def window_start(rng: np.random.Generator, span_s: float, split: Split, test_fraction: float,
                 length_s: float, name: str) -> float:
    """A window's start drawn uniformly so that ``[start, start + length_s)`` lies inside
    ``split`` of ``[0, span_s)`` (one ``rng.random()`` draw): the windows of ``train`` and of
    ``test`` never overlap in the schedule's time.

    Raises:
        ValueError: the split is shorter than the window.
    """
    a, b = split_range(span_s, split, test_fraction)
    if b - length_s < a:
        raise ValueError(f"{name}: the {split} split ([{a:g}, {b:g}) s of span_s {span_s:g}) is "
                         f"shorter than an episode ({length_s:.4g} s); lengthen span_s or "
                         "shorten the episode")
    return a + float(rng.random()) * (b - length_s - a)


def _check_window(name: str, start: float | None, span_s: float | None, split: str,
                  test_fraction: float, start_key: str) -> None:
    if split not in ("all", "train", "test"):
        raise ValueError(f"{name}: split must be all|train|test, got '{split}'")
    if not 0 < test_fraction < 1:
        raise ValueError(f"{name}: test_fraction must be in (0, 1), got {test_fraction}")
    if span_s is not None and not (span_s > 0 and math.isfinite(span_s)):
        raise ValueError(f"{name}: span_s must be a finite number > 0, got {span_s}")
    if split != "all" and start is not None:
        raise ValueError(f"{name}: split '{split}' draws where episodes start; set "
                         f"{start_key}: null")


def _unit_seconds(time_unit: TimeUnit, n: int, rate: float) -> float:
    if time_unit == "s":
        return 1.0
    if time_unit == "episode":
        return max(n, 1) / rate
    raise ValueError(f"trace: time_unit must be 's' or 'episode', got '{time_unit}'")


@dataclass(frozen=True)
class MMPP2:
    """Two-state Markov-modulated Poisson process: calm periods and bursts.

    The state alternates between *low* and *high* with exponential sojourns; arrivals are
    Poisson at ``lambda_low`` or ``lambda_high = rate_ratio * lambda_low``. Rates are set so
    the long-run mean is the target rate:
    ``high_fraction * lambda_high + (1 - high_fraction) * lambda_low = rate``.

    Args:
        rate_ratio: ``lambda_high / lambda_low`` (> 1 for bursts).
        high_fraction: Long-run fraction of time in the high state, in (0, 1).
        mean_high: Mean sojourn in the high state (in ``time_unit``); the mean low sojourn is
            ``mean_high * (1 - high_fraction) / high_fraction``.
        time_unit: ``s`` or ``episode`` (fractions of the expected episode length).
        start: Initial state: ``stationary`` (high with probability ``high_fraction``),
            ``low`` or ``high``.
        rate_scale: Multiplies the target rate.
    """

    rate_ratio: float = 10.0
    high_fraction: float = 0.1
    mean_high: float = 0.02
    time_unit: TimeUnit = "episode"
    start: Literal["stationary", "low", "high"] = "stationary"
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.rate_ratio >= 1:
            raise ValueError(f"MMPP2: rate_ratio must be >= 1, got {self.rate_ratio}")
        if not 0 < self.high_fraction < 1:
            raise ValueError(f"MMPP2: high_fraction must be in (0, 1), got {self.high_fraction}")
        if not self.mean_high > 0:
            raise ValueError(f"MMPP2: mean_high must be > 0, got {self.mean_high}")
        if self.start not in ("stationary", "low", "high"):
            raise ValueError(f"MMPP2: start must be stationary|low|high, got '{self.start}'")

    def rates(self, rate: float) -> tuple[float, float]:
        """``(lambda_low, lambda_high)`` for a mean rate ``rate``."""
        f = self.high_fraction
        low = rate / (f * self.rate_ratio + (1 - f))
        return low, low * self.rate_ratio

    def sojourns(self, unit_s: float) -> tuple[float, float]:
        """Mean ``(low, high)`` sojourns in seconds."""
        hi = self.mean_high * unit_s
        return hi * (1 - self.high_fraction) / self.high_fraction, hi

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals of the MMPP with long-run mean rate ``rate_qps * rate_scale``."""
        rate = _rate(rate_qps, self.rate_scale)
        n = _check_n(n)
        lam_lo, lam_hi = self.rates(rate)
        m_lo, m_hi = self.sojourns(_unit_seconds(self.time_unit, n, rate))
        e = _unit_arrivals(rng, n, 1.0)
        need = float(e[-1]) if n else 0.0
        if self.start == "stationary":
            high_first = bool(rng.random() < self.high_fraction)
        else:
            high_first = self.start == "high"
        per_cycle = lam_lo * m_lo + lam_hi * m_hi
        durations: list[np.ndarray] = []
        total = 0.0
        while True:
            cycles = int(1.2 * need / per_cycle) + 16
            d = rng.standard_exponential((cycles, 2))
            d *= (m_hi, m_lo) if high_first else (m_lo, m_hi)
            durations.append(d.ravel())
            total += float(d[:, 0].sum() * (lam_hi if high_first else lam_lo)
                           + d[:, 1].sum() * (lam_lo if high_first else lam_hi))
            if total >= need:
                break
        dur = np.concatenate(durations)
        lam = np.tile((lam_hi, lam_lo) if high_first else (lam_lo, lam_hi), len(dur) // 2)
        edges = np.concatenate(([0.0], np.cumsum(dur)))
        times = invert_intensity(e, edges, lam, tail_rate=rate)
        return _label(times, mix, rng)


def _sine_cell_means(n_cells: int, amplitude: float, phase: float) -> np.ndarray:
    """Exact means of ``1 + a sin(2 pi (x + phase))`` over ``n_cells`` equal cells of [0, 1)."""
    x = np.linspace(0.0, 1.0, n_cells + 1) + phase
    # integral of sin(2 pi x) dx = -cos(2 pi x) / (2 pi)
    integ = -np.cos(2 * np.pi * x) / (2 * np.pi)
    return 1.0 + amplitude * np.diff(integ) * n_cells


@dataclass(frozen=True)
class Diurnal:
    """Sinusoidally modulated arrivals: ``lambda(t) = rate * (1 + a sin(2 pi (t/P + phase)))``.

    The intensity is averaged exactly over ``grid`` cells per period, so the mean over whole
    periods is exactly the target rate. The underlying unit-rate process is Poisson for
    ``cv = 1`` or a Gamma renewal process with CV ``cv`` (bursty traffic with a daily shape).

    Args:
        amplitude: Relative amplitude ``a`` in [0, 1] (peak/mean = 1 + a).
        period: Period ``P`` in ``time_unit`` (default: one period per expected episode).
        phase: Phase in periods, in [0, 1); None draws a uniform phase per episode.
        cv: CV of the unit-rate process in operational time.
        time_unit: ``s`` or ``episode``.
        grid: Piecewise-constant cells per period.
        rate_scale: Multiplies the target rate.
    """

    amplitude: float = 0.6
    period: float = 1.0
    phase: float | None = None
    cv: float = 1.0
    time_unit: TimeUnit = "episode"
    grid: int = 512
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.amplitude <= 1:
            raise ValueError(f"Diurnal: amplitude must be in [0, 1], got {self.amplitude}")
        if not self.period > 0:
            raise ValueError(f"Diurnal: period must be > 0, got {self.period}")
        if self.grid < 4:
            raise ValueError(f"Diurnal: grid must be >= 4, got {self.grid}")

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals whose rate follows the sinusoid around ``rate_qps * rate_scale``."""
        rate = _rate(rate_qps, self.rate_scale)
        n = _check_n(n)
        period_s = self.period * _unit_seconds(self.time_unit, n, rate)
        phase = float(rng.random()) if self.phase is None else float(self.phase)
        e = _unit_arrivals(rng, n, self.cv)
        lam = rate * _sine_cell_means(self.grid, self.amplitude, phase)
        edges = np.linspace(0.0, period_s, self.grid + 1)
        return _label(invert_periodic(e, edges, lam), mix, rng)


@dataclass(frozen=True)
class FlashCrowd:
    """A flash crowd: a steady base rate, a sudden surge to ``magnitude`` times it, a decay.

    Shape: linear ramp from base to peak over ``ramp``, ``hold`` at the peak, then exponential
    decay back to base with time constant ``decay`` (cut after 8 time constants). The base rate
    is set so that the expected number of arrivals over the expected episode ``n / rate`` is
    ``n`` - the episode's mean rate is the target rate, with the surge included.

    Args:
        magnitude: Peak rate / base rate (>= 1).
        start: Start of the surge (in ``time_unit``); None draws it uniformly so that the
            whole surge lies inside the expected episode.
        ramp: Ramp-up duration (in ``time_unit``).
        hold: Time at the peak (in ``time_unit``).
        decay: Decay time constant (in ``time_unit``).
        cv: CV of the unit-rate process in operational time (1 = Poisson).
        time_unit: ``s`` or ``episode``.
        rate_scale: Multiplies the target rate.
    """

    magnitude: float = 8.0
    start: float | None = 0.3
    ramp: float = 0.02
    hold: float = 0.05
    decay: float = 0.05
    cv: float = 1.0
    time_unit: TimeUnit = "episode"
    rate_scale: float = 1.0

    _CELLS = 32

    def __post_init__(self) -> None:
        if not self.magnitude >= 1:
            raise ValueError(f"FlashCrowd: magnitude must be >= 1, got {self.magnitude}")
        for name in ("ramp", "hold", "decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"FlashCrowd: {name} must be >= 0")
        if self.start is not None and self.start < 0:
            raise ValueError(f"FlashCrowd: start must be >= 0, got {self.start}")

    def profile(self, start_s: float, unit_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Edges (s) and relative intensity (base = 1) of the surge starting at ``start_s``."""
        m1 = self.magnitude - 1.0
        edges = [0.0, start_s]
        lam = [1.0]
        ramp, hold, tau = self.ramp * unit_s, self.hold * unit_s, self.decay * unit_s
        if ramp > 0:
            x = np.linspace(0.0, 1.0, self._CELLS + 1)
            edges.extend((start_s + ramp * x[1:]).tolist())
            lam.extend((1.0 + m1 * 0.5 * (x[:-1] + x[1:])).tolist())
        t = edges[-1]
        if hold > 0:
            edges.append(t + hold)
            lam.append(self.magnitude)
            t += hold
        if tau > 0:
            x = np.linspace(0.0, 8.0, self._CELLS + 1)
            # exact mean of exp(-x) over each cell
            cell = (np.exp(-x[:-1]) - np.exp(-x[1:])) / np.diff(x)
            edges.extend((t + tau * x[1:]).tolist())
            lam.extend((1.0 + m1 * cell).tolist())
        return np.asarray(edges), np.asarray(lam)

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals with one surge; mean rate over the episode ``rate_qps * rate_scale``."""
        rate = _rate(rate_qps, self.rate_scale)
        n = _check_n(n)
        unit_s = _unit_seconds(self.time_unit, n, rate)
        horizon = max(n, 1) / rate
        length = (self.ramp + self.hold + 8 * self.decay) * unit_s
        if self.start is None:
            start_s = float(rng.random()) * max(horizon - length, 0.0)
        else:
            start_s = self.start * unit_s
        edges, rel = self.profile(start_s, unit_s)
        # Expected count over [0, horizon] with base 1, to set the base rate.
        cum = np.concatenate(([0.0], np.cumsum(rel * np.diff(edges))))
        in_horizon = float(np.interp(horizon, edges, cum)) if horizon <= edges[-1] else \
            float(cum[-1] + (horizon - edges[-1]))
        base = rate * horizon / in_horizon
        e = _unit_arrivals(rng, n, self.cv)
        times = invert_intensity(e, edges, base * rel, tail_rate=base)
        return _label(times, mix, rng)


@dataclass(frozen=True)
class PiecewiseRate:
    """A piecewise-constant rate schedule (steps, on/off periods, load ramps in stairs).

    Args:
        levels: Rate of each piece: relative to the target rate when ``normalize`` (the
            duration-weighted mean of one cycle is scaled to the target), else absolute qps
            (the environment's target rate is then ignored).
        durations: Duration of each piece (in ``time_unit``).
        repeat: Cycle through the schedule; otherwise the last level continues forever.
        normalize: See ``levels``.
        cv: CV of the unit-rate process in operational time (1 = Poisson).
        time_unit: ``s`` or ``episode``.
        rate_scale: Multiplies the target rate (and absolute levels).
    """

    levels: tuple[float, ...] = (1.0, 2.0, 0.5)
    durations: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3)
    repeat: bool = True
    normalize: bool = True
    cv: float = 1.0
    time_unit: TimeUnit = "episode"
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(float(x) for x in self.levels))
        object.__setattr__(self, "durations", tuple(float(x) for x in self.durations))
        if not self.levels or len(self.levels) != len(self.durations):
            raise ValueError("PiecewiseRate: levels and durations must be non-empty and of "
                             "equal length")
        if min(self.levels) < 0 or sum(self.levels) <= 0:
            raise ValueError("PiecewiseRate: levels must be >= 0 with a positive sum")
        if min(self.durations) <= 0:
            raise ValueError("PiecewiseRate: durations must be > 0")
        if not self.repeat and self.levels[-1] <= 0:
            raise ValueError("PiecewiseRate: without repeat the last level must be > 0")

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals following the schedule."""
        n = _check_n(n)
        lv = np.asarray(self.levels)
        du = np.asarray(self.durations)
        if self.normalize:
            rate = _rate(rate_qps, self.rate_scale)
            # duration-weighted mean of one cycle -> rate (unit independent)
            lam = lv * (rate / float(np.dot(lv, du) / du.sum()))
        else:
            lam = lv * float(self.rate_scale)
            rate = float(np.dot(lam, du) / du.sum())
        unit_s = _unit_seconds(self.time_unit, n, rate)
        edges = np.concatenate(([0.0], np.cumsum(du * unit_s)))
        e = _unit_arrivals(rng, n, self.cv)
        if self.repeat:
            times = invert_periodic(e, edges, lam)
        else:
            times = invert_intensity(e, edges, lam, tail_rate=float(lam[-1]))
        return _label(times, mix, rng)


@dataclass(frozen=True)
class MixShift:
    """The model mix shifts in steps while requests keep arriving at the target rate.

    A workload whose *mix* drifts (issue [N], online learning): in phase ``k`` each request's
    model is drawn with the popularity ``weights[k]``; the arrival process itself is a renewal
    process at ``rate_qps * rate_scale`` (Poisson for ``cv = 1``). A policy tuned to one mix
    must adapt when it changes.

    Args:
        durations: Duration of each phase (in ``time_unit``).
        weights: Per phase, the relative popularity of each model in mix order. None: phase
            ``k`` takes the mix's own popularity rotated by ``k`` places (model ``i`` gets the
            weight of model ``i - k``), so each model becomes the most requested in turn.
        repeat: Cycle through the phases; otherwise the last phase continues.
        cv: CV of the inter-arrival times (1 = Poisson).
        time_unit: ``s`` or ``episode``.
        rate_scale: Multiplies the target rate.
        start_s: Where an episode starts on the schedule's clock, in seconds (0: at the first
            phase's start; the arrivals' ``start_s`` reports it). None draws it per episode,
            uniformly over the starts whose whole window (the episode's expected length, ``n /
            rate``) lies inside ``split`` of ``[0, span_s)``.
        span_s: Length in seconds of the schedule's timeline that windows are drawn from
            (needed when ``start_s`` is None).
        split: ``all``, ``train`` (the first ``1 - test_fraction`` of ``span_s``) or ``test``
            (the rest): train and test windows never overlap in the schedule's time.
        test_fraction: Share of ``span_s`` that is ``test``.
    """

    durations: tuple[float, ...] = (0.5, 0.5)
    weights: tuple[tuple[float, ...], ...] | None = None
    repeat: bool = False
    cv: float = 1.0
    time_unit: TimeUnit = "episode"
    rate_scale: float = 1.0
    start_s: float | None = 0.0
    span_s: float | None = None
    split: Split = "all"
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "durations", tuple(float(x) for x in self.durations))
        if not self.durations or min(self.durations) <= 0:
            raise ValueError("MixShift: durations must be non-empty and > 0")
        if self.weights is not None:
            w = tuple(tuple(float(x) for x in row) for row in self.weights)
            object.__setattr__(self, "weights", w)
            if len(w) != len(self.durations):
                raise ValueError(f"MixShift: {len(w)} weight rows for {len(self.durations)} "
                                 "phases; give one row per duration")
            for k, row in enumerate(w):
                if not row or min(row) < 0 or sum(row) <= 0:
                    raise ValueError(f"MixShift: weights[{k}] must be >= 0 with a positive sum,"
                                     f" got {list(row)}")
        if not self.cv >= 0:
            raise ValueError(f"MixShift: cv must be >= 0, got {self.cv}")
        _check_window("MixShift", self.start_s, self.span_s, self.split, self.test_fraction,
                      "start_s")
        if self.start_s is None and self.span_s is None:
            raise ValueError("MixShift: start_s: null draws each episode's start within span_s;"
                             " set span_s")
        if self.start_s is not None and not (self.start_s >= 0 and math.isfinite(self.start_s)):
            raise ValueError(f"MixShift: start_s must be a finite number >= 0, got "
                             f"{self.start_s}")

    def phase_probabilities(self, mix: WorkloadMix) -> np.ndarray:
        """``(phases, models)``: each phase's normalised popularity.

        Raises:
            ValueError: a weight row whose length is not the mix's number of models.
        """
        m = len(mix.models)
        if self.weights is None:
            base = mix.probabilities
            rows = np.stack([np.roll(base, k) for k in range(len(self.durations))])
        else:
            bad = [len(r) for r in self.weights if len(r) != m]
            if bad:
                raise ValueError(f"MixShift: a weight row has {bad[0]} entries but the workload "
                                 f"has {m} models ({', '.join(mix.names)})")
            rows = np.asarray(self.weights, dtype=np.float64)
        return rows / rows.sum(axis=1, keepdims=True)

    def phase_edges_s(self, n: int, rate_qps: float) -> np.ndarray:
        """Start of each phase and end of the last, in seconds (one cycle)."""
        unit = _unit_seconds(self.time_unit, n, _rate(rate_qps, self.rate_scale))
        return np.concatenate(([0.0], np.cumsum(np.asarray(self.durations) * unit)))

    @staticmethod
    def _phase_of(edges: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The phase of each time ``t`` (``edges``: :meth:`phase_edges_s`): the last phase
        starting at or before it, the first before ``edges[0]``, the last from ``edges[-1]`` on:
        ``clip(searchsorted(edges, t, "right") - 1, 0, phases - 1)``, computed as one
        ``searchsorted`` on the inner edges (the same values without two temporaries of the
        trace's length, which cost seconds on an hour-long trace)."""
        return np.searchsorted(edges[1:-1], t, side="right")

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals at the target rate, models drawn per phase."""
        rate = _rate(rate_qps, self.rate_scale)
        n = _check_n(n)
        probs = self.phase_probabilities(mix)
        edges = self.phase_edges_s(n, rate_qps)
        if self.start_s is None:
            assert self.span_s is not None  # (__post_init__)
            start = window_start(rng, self.span_s, self.split, self.test_fraction, n / rate,
                                 "MixShift")
        else:
            start = float(self.start_s)
        times = _unit_arrivals(rng, n, self.cv)
        times /= rate
        cdf = np.cumsum(probs, axis=1)
        cdf[:, -1] = 1.0
        model = np.zeros(n, dtype=np.int32)
        # Block by block: each arrival's phase, a uniform (drawn in order, so the same stream
        # as one draw of n) and its model, with temporaries of a block instead of the trace's
        # length (an hour at GPU rates: tens of millions of arrivals, gigabytes of fresh memory).
        for a in range(0, n, _BLOCK):
            t = times[a:a + _BLOCK]
            if start:
                t = t + start  # (the schedule's clock)
            phase = self._phase_of(edges, np.mod(t, edges[-1]) if self.repeat else t)
            u = rng.random(len(t))
            out = model[a:a + _BLOCK]
            for j in range(cdf.shape[1] - 1):
                np.add(out, u >= cdf[phase, j], out=out, casting="unsafe")
        return Arrivals.from_mix(times, mix, rng, model=model, start_s=start)



@dataclass(frozen=True)
class MixSchedule:
    """A diurnal *mix* schedule: each model's share of the arrivals follows its own daily
    curve, so the model mix drifts over the episode (the total rate may follow one too).

    Model ``m``'s share at time ``t`` is proportional to ``p_m * max(0, 1 + a cos(2 pi (t/P +
    phase - phases[m])))`` (``p_m`` its popularity in the workload mix), averaged over ``grid``
    cells per period; the total intensity is ``rate * (1 + rate_amplitude sin(2 pi (t/P +
    phase)))``, exactly averaged per cell as :class:`Diurnal`. Each arrival's model is drawn
    from the shares of its cell. With the default ``period`` of a day in seconds the clock is
    real: an hour-long episode sees an hour's drift.

    Args:
        amplitude: Relative amplitude ``a`` of each model's share curve (>= 0; above 1 a model
            is absent for part of the day).
        phases: Per model (in the mix's order), the time of its peak in periods; None spreads
            the peaks evenly (``m / M``).
        period: Period ``P`` in ``time_unit``.
        phase: Start of the episode in periods (a time of day); None draws it per episode.
        rate_amplitude: Relative amplitude of the total rate in [0, 1] (0: constant).
        cv: CV of the unit-rate arrival process (1: Poisson).
        time_unit: ``s`` or ``episode``.
        grid: Piecewise-constant cells per period.
        rate_scale: Multiplies the target rate.
        split: With ``phase`` None, where the drawn start may fall: ``all`` (anywhere in the
            period), ``train`` (the whole episode inside the period's first ``1 -
            test_fraction``) or ``test`` (inside the rest): train and test windows never
            overlap in the time of day.
        test_fraction: Share of the period that is ``test``.

    The arrivals' ``start_s`` is the episode's start on the schedule's clock, ``phase x P`` in
    seconds.
    """

    amplitude: float = 0.8
    phases: tuple[float, ...] | None = None
    period: float = 86400.0
    phase: float | None = None
    rate_amplitude: float = 0.0
    cv: float = 1.0
    time_unit: TimeUnit = "s"
    grid: int = 1440
    rate_scale: float = 1.0
    split: Split = "all"
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check_window("MixSchedule", self.phase, None, self.split, self.test_fraction, "phase")
        if not self.amplitude >= 0 or not math.isfinite(self.amplitude):
            raise ValueError(f"MixSchedule: amplitude must be >= 0, got {self.amplitude}")
        if not 0 <= self.rate_amplitude <= 1:
            raise ValueError(f"MixSchedule: rate_amplitude must be in [0, 1], got "
                             f"{self.rate_amplitude}")
        if not self.period > 0:
            raise ValueError(f"MixSchedule: period must be > 0, got {self.period}")
        if self.grid < 4:
            raise ValueError(f"MixSchedule: grid must be >= 4, got {self.grid}")
        if self.phases is not None:
            object.__setattr__(self, "phases", tuple(float(x) for x in self.phases))

    def shares(self, mix: WorkloadMix, phase: float) -> np.ndarray:
        """``(grid, M)``: each cell's model probabilities, the episode starting at ``phase``."""
        M = len(mix.models)
        if self.phases is not None and len(self.phases) != M:
            raise ValueError(f"MixSchedule: {len(self.phases)} phases for {M} models")
        ph = np.arange(M) / M if self.phases is None else np.asarray(self.phases)
        g = self.grid
        # cell means of max(0, 1 + a cos(.)) by 16-point averaging within each cell
        x = (np.arange(g * 16) + 0.5) / (g * 16)
        curve = np.maximum(0.0, 1.0 + self.amplitude * np.cos(
            2 * np.pi * (x[:, None] + phase - ph[None, :])))
        w = curve.reshape(g, 16, M).mean(axis=1) * mix.probabilities[None, :]
        tot = w.sum(axis=1, keepdims=True)
        w = np.where(tot > 0, w / np.where(tot > 0, tot, 1.0), 1.0 / M)
        return w

    def sample(self, rng: np.random.Generator, mix: WorkloadMix, n: int,
               rate_qps: float) -> Arrivals:
        """``n`` arrivals at mean rate ``rate_qps * rate_scale`` whose mix drifts."""
        rate = _rate(rate_qps, self.rate_scale)
        n = _check_n(n)
        period_s = self.period * _unit_seconds(self.time_unit, n, rate)
        if self.phase is not None:
            phase = float(self.phase)
        elif self.split == "all":
            phase = float(rng.random())
        else:
            phase = window_start(rng, period_s, self.split, self.test_fraction, n / rate,
                                 "MixSchedule") / period_s
        e = _unit_arrivals(rng, n, self.cv)
        lam = rate * _sine_cell_means(self.grid, self.rate_amplitude, phase)
        edges = np.linspace(0.0, period_s, self.grid + 1)
        times = invert_periodic(e, edges, lam)
        cell = np.minimum((np.mod(times, period_s) / period_s * self.grid).astype(np.int64),
                          self.grid - 1)
        cum = np.cumsum(self.shares(mix, phase), axis=1)
        cum[:, -1] = 1.0
        u = rng.random(n)
        model = np.zeros(n, dtype=np.int32)
        c = cum[cell]
        for k in range(cum.shape[1] - 1):
            model += (u >= c[:, k]).astype(np.int32)
        return Arrivals.from_mix(times, mix, rng, model=model, start_s=phase * period_s)
