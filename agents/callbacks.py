"""Stable-Baselines3 callbacks: scheduling metrics to TensorBoard under ``sched/`` and ``hw/``."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

#: info key -> TensorBoard tag, logged (as a mean over the episodes that ended) every rollout.
SCALARS = {
    "sla_attainment": "sched/sla_attainment",
    "goodput": "sched/goodput",
    "p50_latency_ms": "sched/p50_latency_ms",
    "p99_latency_ms": "sched/p99_latency_ms",
    "dropped": "sched/dropped",
    "completed": "sched/completed",
    "utilization": "hw/utilization",
    "energy_per_query_j": "hw/energy_per_query_j",
}


class SchedMetricsCallback(BaseCallback):
    """Records the episode metrics that environments put in ``info`` when an episode ends."""

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.episodes = 0

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals.get("infos", [])
        dones = self.locals.get("dones", [])
        for info, done in zip(infos, dones, strict=False):
            if not done:
                continue
            self.episodes += 1
            for key, tag in SCALARS.items():
                if key in info:
                    self.logger.record_mean(tag, float(info[key]))
        return True
