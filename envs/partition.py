"""``ldsgym/PartitionPlacement-v0``: place each arriving query on a partition of one GPU."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.presets import get_workload
from envs.rewards import Outcome, Reward, make_reward
from envs.sim.gpu import BatcherConfig, GpuServingSim
from hwmodels.latency import LatencyModel
from hwmodels.partitions import make_layout
from hwmodels.specs import DeviceSpec, load_device
from hwmodels.workloads import build_profile
from traces.arrivals import TraceSource, WorkloadMix, mix_from_spec
from traces.presets import get_trace

Obs = dict[str, np.ndarray]
_CLIP = 10.0


class PartitionPlacementEnv(gym.Env[Obs, np.int64]):
    """Place inference queries on the spatial partitions (MIG slices) of one GPU.

    ## Description

    Several DNN models are co-served on one GPU split into partitions (by default an A100 as
    ``3g + 2g + 1g + 1g`` MIG slices). Queries arrive from a trace (Poisson by default) with a
    per-model SLA. At every arrival the agent picks the partition that serves the query, or
    rejects it. Each partition runs a dynamic batcher (the oldest queued model goes next, up to
    ``max_batch`` items, waiting at most ``max_queue_delay_ms`` when idle); batch latency comes
    from the calibrated roofline model in :mod:`hwmodels`. Small slices are slower per query but
    there are more of them; the batcher rewards putting the same model together.

    ## Action Space

    ``Discrete(P + 1)``: ``0..P-1`` queue the query on that partition, ``P`` rejects it.
    :meth:`action_masks` forbids partitions whose memory cannot hold the query's model;
    rejecting is always allowed, so a mask is never empty.

    ## Observation Space

    A ``Dict`` of float32 boxes in ``[0, 10]`` (P partitions, M models):

    | key          | shape | meaning                                                           |
    |--------------|-------|-------------------------------------------------------------------|
    | ``model``    | (M,)  | one-hot model of the query                                        |
    | ``sla``      | (1,)  | its SLA / the largest SLA of the mix                              |
    | ``queue``    | (P,)  | items queued per partition / ``max_batch``                        |
    | ``queue_same``| (P,) | items of the query's model queued per partition / ``max_batch``  |
    | ``busy``     | (P,)  | time left in the running batch / the query's SLA                  |
    | ``finish``   | (P,)  | expected time until this query would finish there / its SLA      |
    | ``size``     | (P,)  | partition SMs / device SMs                                        |
    | ``rates``    | (M,)  | recent arrival rate per model (1 s EWMA) / capacity               |

    ## Rewards

    A reward object (:mod:`envs.rewards`) weighs what happened since the last decision. The
    default ``goodput`` reward is ``good - late - dropped``: +1 for each query finished within
    its SLA, -1 for each late or dropped one. Worked example: after a decision, two ResNet-50
    queries finish in time and a BERT query is dropped because its deadline had passed before
    its batch could start: ``r = 2 - 0 - 1 = 1``.

    ## Starting State

    An idle GPU with empty queues; the first query of a freshly drawn trace is pending.

    ## Episode End

    Episodes last ``episode_queries`` decisions (a horizon on the trace, so the end is a
    *truncation*). After the last decision the queued work is drained (no decision is left to
    make) so the final ``info`` counts every request as completed or dropped.

    ## Arguments

    ``gym.make("ldsgym/PartitionPlacement-v0", hw="a100-80gb", layout=[...], workload=...,
    trace="poisson", load=0.8, episode_queries=1000, max_batch=8, max_queue_delay_ms=2,
    queue_capacity=64, drop_expired=True, precision="fp16", reward="goodput", rate_window_s=1,
    request_sizes=False)``. ``hw`` is a
    device name from ``conf/hw``, a YAML path, a mapping or a :class:`DeviceSpec`; ``workload`` a
    preset name or a list of ``{name, weight, sla_ms, priority}``; ``trace`` a preset name or a
    :class:`traces.TraceSource`; ``load`` the offered load as a fraction of the layout's capacity
    (queries/s at full batches for the mix). Each request is one query unless
    ``request_sizes=True``, when the trace's sizes count as items of the batch (clipped at 256).
    SLAs given as multiples (``sla_multiple``) are resolved against the model's batch-1 latency
    on its fastest partition.

    ## Version History

    * v0: first release.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        hw: str | Mapping[str, Any] | DeviceSpec = "a100-80gb",
        layout: Sequence[str] = ("3g", "2g", "1g", "1g"),
        workload: str | Sequence[Mapping[str, Any]] | WorkloadMix = "vision-nlp",
        trace: str | TraceSource = "poisson",
        load: float = 0.8,
        episode_queries: int = 1000,
        max_batch: int = 8,
        max_queue_delay_ms: float = 2.0,
        queue_capacity: int = 64,
        drop_expired: bool = True,
        precision: str = "fp16",
        reward: str | dict[str, Any] | Reward = "goodput",
        rate_window_s: float = 1.0,
        request_sizes: bool = False,
    ) -> None:
        self.device = load_device(hw)
        self.partitions = make_layout(self.device, list(layout))
        if isinstance(workload, str | WorkloadMix):
            self.mix = get_workload(workload)
        else:
            self.mix = mix_from_spec([dict(m) for m in workload])
        self.trace = get_trace(trace)
        if load <= 0:
            raise ValueError(f"load must be > 0, got {load}")
        if episode_queries < 1:
            raise ValueError(f"episode_queries must be >= 1, got {episode_queries}")
        self.load = float(load)
        self.episode_queries = int(episode_queries)
        self.batcher = BatcherConfig(max_batch, max_queue_delay_ms * 1e-3, queue_capacity,
                                     drop_expired)
        self.reward_fn = make_reward(reward)
        self.rate_window_s = float(rate_window_s)
        self.request_sizes = bool(request_sizes)

        model = LatencyModel(self.device, precision)
        profiles = [build_profile(m.name) for m in self.mix.models]
        P, M = len(self.partitions), len(profiles)
        self.n_partitions, self.n_models = P, M
        # Tables reach past max_batch so that one large request (request_sizes=True) still
        # gets its own latency; larger requests are clipped to the table.
        table_len = self._table_len = max(max_batch, 256 if request_sizes else 1)
        lat = np.stack([
            np.stack([model.table_s(prof, part, table_len) for prof in profiles])
            for part in self.partitions
        ])  # (P, M, B)
        self._latency = lat.tolist()
        fits = np.array([
            [prof.weight_bytes(precision) * 1.2 <= part.mem_gb * 1e9 for prof in profiles]
            for part in self.partitions
        ])
        if not fits.any(axis=0).all():
            bad = [self.mix.names[m] for m in range(M) if not fits[:, m].any()]
            raise ValueError(f"layout {list(layout)}: model(s) {bad} fit on no partition")
        self._fits = fits.tolist()
        #: Batch-1 latency per model on its fastest partition: the base of SLA multiples.
        self._solo_ms = np.where(fits, lat[:, :, 0], np.inf).min(axis=0) * 1e3
        per_item = lat[:, :, -1] / max_batch  # (P, M) seconds per item at full batches
        mix_cost = (np.where(fits, per_item, np.inf) * self.mix.probabilities).sum(axis=1)
        #: Queries/s the layout sustains for this mix at full batches (each partition serving
        #: the whole mix; partitions that cannot hold some model count as zero).
        self.capacity_qps = float(np.sum(1.0 / mix_cost[np.isfinite(mix_cost)]))
        self._power = [
            (self.device.idle_w * part.sms / self.device.sm_count,
             self.device.tdp_w * part.sms / self.device.sm_count)
            for part in self.partitions
        ]
        self._sms = np.array([p.sms / self.device.sm_count for p in self.partitions],
                             dtype=np.float32)
        self._max_sla_ms = float(self.mix.sla_ms.max())
        self._sms_list = self._sms.tolist()
        sizes = {"model": M, "sla": 1, "queue": P, "queue_same": P, "busy": P, "finish": P,
                 "size": P, "rates": M}
        offsets = np.cumsum([0, *sizes.values()])
        self._slices = [(k, slice(int(a), int(b)))
                        for k, a, b in zip(sizes, offsets[:-1], offsets[1:], strict=True)]

        box = spaces.Box
        self.observation_space: spaces.Dict = spaces.Dict({  # type: ignore[assignment]
            "model": box(0.0, 1.0, (M,), np.float32),
            "sla": box(0.0, _CLIP, (1,), np.float32),
            "queue": box(0.0, _CLIP, (P,), np.float32),
            "queue_same": box(0.0, _CLIP, (P,), np.float32),
            "busy": box(0.0, _CLIP, (P,), np.float32),
            "finish": box(0.0, _CLIP, (P,), np.float32),
            "size": box(0.0, 1.0, (P,), np.float32),
            "rates": box(0.0, _CLIP, (M,), np.float32),
        })
        self.action_space = spaces.Discrete(P + 1)
        self.sim: GpuServingSim | None = None

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Draw a new trace and run to its first arrival."""
        super().reset(seed=seed)
        trace_seed = int(self.np_random.integers(0, 2**63 - 1))
        arrivals = self.trace.sample(np.random.default_rng(trace_seed), self.mix,
                                     self.episode_queries, self.load * self.capacity_qps)
        arrivals = arrivals.resolve_sla(self._solo_ms)
        if self.request_sizes:
            arrivals = dataclasses.replace(
                arrivals, size=np.clip(arrivals.size, 1, self._table_len).astype(np.int32))
        else:
            arrivals = dataclasses.replace(arrivals, size=np.ones(len(arrivals), np.int32))
        self.sim = GpuServingSim(self._latency, self._fits, arrivals, self.batcher, self._power)
        self._rates = [0.0] * self.n_models
        self._rate_t = 0.0
        self._steps = 0
        self._snapshot = (0, 0, 0, 0.0, 0.0)
        self.sim.advance()
        self._observe_arrival()
        return self._obs(), self._info()

    def step(self, action: np.int64 | int) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Place (or reject) the pending query and run to the next arrival."""
        sim = self.sim
        if sim is None or sim.pending is None:
            raise RuntimeError("call reset() before step()")
        a = int(action)
        if a == self.n_partitions:
            sim.reject()
        elif 0 <= a < self.n_partitions and self._fits[a][sim.pending_model()]:
            sim.place(a)
        else:
            raise ValueError(f"action {a} is masked or out of range for this query")
        self._steps += 1
        sim.advance()
        truncated = sim.pending is None
        if truncated:
            sim.finalize_energy()
        else:
            self._observe_arrival()
        c = sim.counters
        snap = (c.good, c.late, c.dropped, c.energy_j, sim.backlog)
        old = self._snapshot
        self._snapshot = snap
        reward = self.reward_fn(Outcome(snap[0] - old[0], snap[1] - old[1], snap[2] - old[2],
                                        snap[3] - old[3], 0, snap[4] - old[4]))
        obs = self._obs() if not truncated else self._last_obs
        return obs, float(reward), False, truncated, self._info()

    def action_masks(self) -> np.ndarray:
        """Valid actions for the pending query (reject is always valid)."""
        mask = np.ones(self.n_partitions + 1, dtype=bool)
        if self.sim is not None and self.sim.pending is not None:
            m = self.sim.pending_model()
            mask[: self.n_partitions] = [f[m] for f in self._fits]
        return mask

    def latency_counts(self) -> list[int]:
        """Latency histogram of the episode so far (bins: ``envs.sim.metrics.BIN_EDGES_S``)."""
        return list(self.sim.counters.latency.counts) if self.sim is not None else []

    # ------------------------------------------------------------------ helpers
    def _observe_arrival(self) -> None:
        sim = self.sim
        assert sim is not None
        now = sim.now
        decay = math.exp(-(now - self._rate_t) / self.rate_window_s)
        rates = self._rates
        for k in range(len(rates)):
            rates[k] *= decay
        rates[sim.pending_model()] += 1.0 / self.rate_window_s
        self._rate_t = now

    def _obs(self) -> Obs:
        """One fresh float32 array per step; the dict values are views of it."""
        sim = self.sim
        assert sim is not None and sim.pending is not None
        m = sim.pending_model()
        now = sim.now
        sla = sim.pending_deadline() - now
        inv_sla = 1.0 / sla if sla > 0 else 1e3
        inv_b = 1.0 / self.batcher.max_batch
        busy_until, busy = sim.busy_until, sim.busy
        onehot = [0.0] * self.n_models
        onehot[m] = 1.0
        inv_cap = 1.0 / self.capacity_qps
        values = [
            *onehot,
            sla * 1e3 / self._max_sla_ms,
            *[q * inv_b for q in sim.queued_items],
            *[q[m] * inv_b for q in sim.queued_by_model],
            *[(busy_until[p] - now) * inv_sla if busy[p] else 0.0
              for p in range(self.n_partitions)],
            *[sim.expected_finish_s(p, m) * inv_sla for p in range(self.n_partitions)],
            *self._sms_list,
            *[r * inv_cap for r in self._rates],
        ]
        flat = np.array(values, dtype=np.float32)
        np.minimum(flat, _CLIP, out=flat)
        obs = {key: flat[sl] for key, sl in self._slices}
        self._last_obs = obs
        return obs

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        assert sim is not None
        return sim.counters.summary(sim.now)

