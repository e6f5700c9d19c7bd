"""Learning-rate schedules for SB3 algorithms (``agent.learning_rate={_target_: ...}``).

SB3 calls a schedule with ``progress_remaining`` (1 at the start of training, 0 at the end).
:class:`LateLinearDecay` keeps the rate constant for the first part of training and then lowers
it linearly, so the policy learns at full speed early and the late updates (where checkpoint
selection picks its weights) move it less. Issue [N], goal 1: annealing from the start
(``stable_baselines3.common.utils.LinearSchedule``) slowed learning and broke a passing seed.

Example::

    python -m experiments.train "agent.learning_rate={_target_: agents.schedules.LateLinearDecay,
        value: 0.0003, end: 0.00003, decay_from: 0.67}"
"""

from __future__ import annotations

import math


class LateLinearDecay:
    """Constant ``value`` until ``decay_from`` of training, then linear to ``end`` at the end.

    Args:
        value: the rate before the decay starts.
        end: the rate at the last update (``0 <= end <= value``).
        decay_from: fraction of training (``0 <= decay_from < 1``) after which the rate decays.
    """

    def __init__(self, value: float, end: float, decay_from: float) -> None:
        value, end, decay_from = float(value), float(end), float(decay_from)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"LateLinearDecay: value must be a finite number > 0, got {value}")
        if not (math.isfinite(end) and 0 <= end <= value):
            raise ValueError(f"LateLinearDecay: end must be in [0, value={value}], got {end}")
        if not (math.isfinite(decay_from) and 0 <= decay_from < 1):
            raise ValueError(f"LateLinearDecay: decay_from must be in [0, 1), got {decay_from}")
        self.value = value
        self.end = end
        self.decay_from = decay_from

    def __call__(self, progress_remaining: float) -> float:
        done = 1.0 - float(progress_remaining)
        if done <= self.decay_from:
            return self.value
        frac = min(1.0, (done - self.decay_from) / (1.0 - self.decay_from))
        return self.value + frac * (self.end - self.value)

    def __repr__(self) -> str:
        return f"LateLinearDecay(value={self.value}, end={self.end}, decay_from={self.decay_from})"
