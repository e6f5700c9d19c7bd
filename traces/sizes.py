"""Request-size distributions: batch items, sequence lengths, token counts.

A :class:`SizeDist` is one small frozen dataclass for every supported family, selected by
``kind``, so that a workload config can say ``size: {kind: lognormal, mean: 512, cv: 1.5}``
without a Hydra ``_target_``. Draws are vectorised and come from the generator passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

SizeKind = Literal["const", "uniform", "geometric", "poisson", "lognormal", "zipf", "choice"]
_KINDS: tuple[str, ...] = ("const", "uniform", "geometric", "poisson", "lognormal", "zipf",
                           "choice")


@dataclass(frozen=True)
class SizeDist:
    """A distribution of integer request sizes.

    Families (``kind``) and the fields each reads:

    - ``const``: always ``value``.
    - ``uniform``: integers in ``[low, high]`` (both inclusive).
    - ``geometric``: on ``1, 2, ...`` with mean ``mean`` (>= 1).
    - ``poisson``: Poisson with mean ``mean``.
    - ``lognormal``: ``round(X)`` with ``X`` lognormal of mean ``mean`` and CV ``cv``
      (typical for prompt and output token counts).
    - ``zipf``: Zipf (power law) with exponent ``a`` > 1 on ``1, 2, ...``.
    - ``choice``: one of ``values`` with probabilities proportional to ``weights``
      (an empirical histogram; equal weights when ``weights`` is empty).

    Every draw is finally clipped to ``[minimum, maximum]`` (``maximum=None``: no upper bound).

    Attributes:
        kind: The family, see above.
        value: Constant size (``const``).
        low: Smallest size (``uniform``).
        high: Largest size (``uniform``).
        mean: Mean size (``geometric``, ``poisson``, ``lognormal``).
        cv: Coefficient of variation (``lognormal``).
        a: Zipf exponent (``zipf``).
        values: Support of an empirical distribution (``choice``).
        weights: Relative probabilities of ``values`` (``choice``).
        minimum: Lower clip.
        maximum: Upper clip, or None.
    """

    kind: SizeKind = "const"
    value: int = 1
    low: int = 1
    high: int = 1
    mean: float = 1.0
    cv: float = 1.0
    a: float = 2.0
    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    minimum: int = 0
    maximum: int | None = None

    def __post_init__(self) -> None:
        # Hydra hands lists; keep the dataclass hashable.
        object.__setattr__(self, "values", tuple(int(v) for v in self.values))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        if self.kind not in _KINDS:
            raise ValueError(f"size distribution: unknown kind '{self.kind}'; known: "
                             f"{', '.join(_KINDS)}")
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError(f"size distribution uniform: high {self.high} < low {self.low}")
        if self.kind == "geometric" and self.mean < 1:
            raise ValueError(f"size distribution geometric: mean must be >= 1, got {self.mean}")
        if self.kind in ("poisson", "lognormal") and self.mean <= 0:
            raise ValueError(f"size distribution {self.kind}: mean must be > 0, got {self.mean}")
        if self.kind == "lognormal" and self.cv < 0:
            raise ValueError(f"size distribution lognormal: cv must be >= 0, got {self.cv}")
        if self.kind == "zipf" and self.a <= 1:
            raise ValueError(f"size distribution zipf: a must be > 1, got {self.a}")
        if self.kind == "choice":
            if not self.values:
                raise ValueError("size distribution choice: 'values' is empty")
            if self.weights and len(self.weights) != len(self.values):
                raise ValueError("size distribution choice: 'weights' and 'values' differ in "
                                 "length")
            if self.weights and (min(self.weights) < 0 or sum(self.weights) <= 0):
                raise ValueError("size distribution choice: weights must be >= 0, sum > 0")
        if self.maximum is not None and self.maximum < self.minimum:
            raise ValueError(f"size distribution: maximum {self.maximum} < minimum "
                             f"{self.minimum}")

    @classmethod
    def from_spec(cls, spec: SizeDist | Mapping[str, object] | int) -> SizeDist:
        """A :class:`SizeDist` from itself, a plain dict (a config) or a constant."""
        if isinstance(spec, SizeDist):
            return spec
        if isinstance(spec, bool):
            raise ValueError(f"size distribution: expected a dict or an int, got {spec!r}")
        if isinstance(spec, int):
            return cls(kind="const", value=spec)
        if isinstance(spec, Mapping):
            fields = set(cls.__dataclass_fields__)
            unknown = sorted(set(spec) - fields)
            if unknown:
                raise ValueError(f"size distribution: unknown key(s) {unknown}; allowed: "
                                 f"{sorted(fields)}")
            return cls(**spec)  # type: ignore[arg-type]
        raise ValueError(f"size distribution: expected a dict or an int, got "
                         f"{type(spec).__name__}")

    @property
    def expected(self) -> float:
        """Mean of the distribution before clipping."""
        if self.kind == "const":
            return float(self.value)
        if self.kind == "uniform":
            return 0.5 * (self.low + self.high)
        if self.kind in ("geometric", "poisson", "lognormal"):
            return float(self.mean)
        if self.kind == "zipf":
            return math.inf if self.a <= 2 else _zeta(self.a - 1) / _zeta(self.a)
        w = np.asarray(self.weights if self.weights else [1.0] * len(self.values))
        return float(np.dot(w / w.sum(), self.values))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` sizes (int32) drawn with ``rng``."""
        x: np.ndarray
        if self.kind == "const":
            x = np.full(n, self.value, dtype=np.int64)
        elif self.kind == "uniform":
            x = rng.integers(self.low, self.high, size=n, endpoint=True)
        elif self.kind == "geometric":
            x = rng.geometric(1.0 / self.mean, size=n)
        elif self.kind == "poisson":
            x = rng.poisson(self.mean, size=n)
        elif self.kind == "lognormal":
            s2 = math.log1p(self.cv * self.cv)
            x = np.rint(rng.lognormal(math.log(self.mean) - 0.5 * s2, math.sqrt(s2), size=n))
        elif self.kind == "zipf":
            x = rng.zipf(self.a, size=n)
        else:
            vals = np.asarray(self.values, dtype=np.int64)
            p = None
            if self.weights:
                w = np.asarray(self.weights, dtype=np.float64)
                p = w / w.sum()
            x = rng.choice(vals, size=n, p=p)
        hi = np.iinfo(np.int32).max if self.maximum is None else self.maximum
        return np.clip(x, self.minimum, hi).astype(np.int32)


def _zeta(s: float, terms: int = 100_000) -> float:
    """Riemann zeta for s > 1 (direct sum plus an integral tail; ample for a mean)."""
    k = np.arange(1, terms + 1, dtype=np.float64)
    return float(np.sum(k ** -s) + terms ** (1 - s) / (s - 1))
