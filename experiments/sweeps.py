"""The value a training job hands back to a Hydra sweeper (Optuna): one metric of the learned
policy, the mean over its held-out episodes and over ``eval.loads``.

The metric is the config's ``objective`` key (set by the ``search`` group; ``goodput`` when
absent); the direction is the sweeper's (``hydra.sweeper.direction``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from omegaconf import DictConfig

from agents.evaluation import REPORT_METRICS, PolicyResult
from experiments.common import UserError

DEFAULT_OBJECTIVE = "goodput"


def objective_metric(cfg: DictConfig) -> str:
    """``cfg.objective``, checked before any training.

    Raises:
        UserError: not a reported metric.
    """
    metric = str(cfg.get("objective") or DEFAULT_OBJECTIVE)
    if metric not in REPORT_METRICS:
        raise UserError(f"objective: unknown metric '{metric}'; one of {', '.join(REPORT_METRICS)}")
    return metric


def objective_value(cfg: DictConfig,
                    sweep: Mapping[float, Mapping[str, PolicyResult]]) -> float:
    """Mean of the objective metric of the ``learned`` policy over every evaluated load."""
    metric = objective_metric(cfg)
    values = [results["learned"].mean(metric) for results in sweep.values()
              if "learned" in results and results["learned"].episodes
              and metric in results["learned"].episodes[0]]
    return float(np.mean(values)) if values else float("nan")
