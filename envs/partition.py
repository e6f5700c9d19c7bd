"""``ldsgym/PartitionPlacement-v0``: place each arriving query on a partition of one GPU."""

from __future__ import annotations

import dataclasses
import math
import operator
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import checked_action
from envs.partition_features import CLIP as _CLIP
from envs.partition_features import OBSERVATION, features
from envs.presets import get_workload, load_range
from envs.rewards import Outcome, Reward, make_reward
from envs.sim.device import compiled, rules
from envs.sim.device.serving import BatcherConfig, GpuServingSim
from envs.sim.device.shared import SharedGpuSim
from envs.sim.device.tables import (
    CoRunnerSlowdowns,
    capacity_qps,
    normalise_layout,
    per_item_s,
)
from hwmodels.interference import InterferenceModel
from hwmodels.latency import LatencyModel
from hwmodels.partitions import make_layout
from hwmodels.specs import DeviceSpec, load_device
from hwmodels.workloads import build_profile
from traces.arrivals import TraceSource, WorkloadMix
from traces.presets import get_trace

Obs = dict[str, np.ndarray]
#: Interference callables and slowdown caches shared by the envs of one process, per
#: (device, precision, models, partitions, latency table length); the last _SHARED_MAX
#: configurations created are kept.
_SHARED_SLOWDOWNS: dict[tuple[Any, ...],
                        tuple[CoRunnerSlowdowns, dict[Any, tuple[float, ...]]]] = {}
_SHARED_MAX = 4


class PartitionPlacementEnv(gym.Env[Obs, np.int64]):
    """Place inference queries on the spatial partitions (MIG slices) of one GPU.

    ## Description

    Several DNN models are co-served on one GPU split into partitions (by default an A100 as
    ``3g + 2g + 1g + 1g`` MIG slices; or MPS shares, or time slices: ``sharing``). Queries
    arrive from a trace (Poisson by default) with a per-model SLA. At every arrival the agent
    picks the partition that serves the query, or rejects it. Each partition runs a dynamic
    batcher (the oldest queued model goes next, up to ``max_batch`` items, waiting at most
    ``max_queue_delay_ms`` when idle); batch latency comes from the calibrated roofline model
    in :mod:`hwmodels`. Small slices are slower per query but there are more of them; the
    batcher rewards putting the same model together.

    MIG slices are isolated (the v0 simulator, :class:`envs.sim.device.serving.GpuServingSim`). MPS
    shares and time slices interfere: when a batch starts or stops on one partition, the batches
    running on the others change speed (calibrated slowdowns, :mod:`hwmodels.interference`) and
    their completion times are recomputed (:class:`envs.sim.device.shared.SharedGpuSim`). With
    ``priorities=True`` each partition serves its most important queued class first at every batch
    boundary (PREMA-style); ``preempt=True`` also kills a running batch of a less important class
    when a more important query is queued behind it.

    Heuristics that read a few observation entries can run a whole episode through
    :meth:`rollout`, without building observations and infos every step (the same episode,
    metrics and return as stepping; :mod:`agents.fast_eval` uses it).

    ## Action Space

    ``Discrete(P + 1)``: ``0..P-1`` queue the query on that partition, ``P`` rejects it.
    :meth:`action_masks` forbids partitions whose memory cannot hold the query's model;
    rejecting is always allowed, so a mask is never empty. The action rule of every ldsgym env
    (:mod:`envs.actions`): ``step`` raises ``ValueError``, changing nothing, for a masked
    action, an index out of range or a non-integer (``0.5``); an unmasked agent can use
    :class:`envs.wrappers.NearestValidAction`.

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
    | ``priority`` | (1,)  | the query's priority class: 1 most important, 0 least (0: one)    |
    | ``slowdown`` | (P,)  | predicted slowdown - 1 of the query's batch there, from the       |
    |              |       | batches running on the other partitions now (0 when isolated)     |
    | ``finish_prio``| (P,)| as ``finish``, counting only queued work at least as important   |
    | ``slack``    | (P,)  | 1 - (wait + (work ahead by priority + batch of one) x slowdown)   |
    |              |       | / time to deadline, in ``[-10, 1]``: < 0 means it would be late   |
    | ``resident`` | (P,)  | 1 where the partition is running the query's model now            |

    With MIG (isolated slices) and one priority class, ``slowdown`` is 0, ``finish_prio`` is
    ``finish`` and ``slack`` is ``1 - finish`` (unclipped above).

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

    ``goodput`` divides the in-SLA count by the time until the last request finished, so an
    episode's drain (from its last arrival to then) costs goodput, which the per-decision
    rewards do not see. ``drain_weight=w > 0`` charges it in the last reward:
    ``- w * good * drain / end`` (``good`` in-SLA requests of the episode, ``end`` its clock after
    the drain). With ``w = 1`` the in-SLA terms of the return then add up to ``goodput`` times
    the time of the last arrival: the return sees the makespan the metric divides by. Worked
    example: 1,000 in-SLA requests, the last arrival at 0.19 s, the last completion at 0.20 s:
    the last reward is lowered by ``1000 * 0.01 / 0.20 = 50``.

    ## Arguments

    ``gym.make("ldsgym/PartitionPlacement-v0", hw="a100-80gb", layout=[...], workload=...,
    trace="poisson", load=0.8, episode_queries=1000, max_batch=8, max_queue_delay_ms=2,
    queue_capacity=64, drop_expired=True, precision="fp16", reward="goodput", rate_window_s=1,
    request_sizes=False, sharing=None, interference=None, priorities=False, preempt=False,
    drain_weight=0)``.
    ``sharing`` is ``mig``, ``mps`` or ``ts`` (None: from the layout), with layouts such as
    ``[3g, 2g, 1g, 1g]``, ``[mps:50, mps:30, mps:20]`` (or ``[50, 30, 20]`` with
    ``sharing="mps"``) and ``[ts:3]`` (or ``[3]``); time slices each see the whole GPU, one at
    a time, so together they count as one device in the capacity. ``interference`` (None: on
    for MPS and time slicing, off for MIG) applies co-runner slowdowns; ``True`` with MIG applies
    the small calibrated MIG factor. ``priorities`` serves requests by their priority class
    (the workload's ``priority`` and request classes, e.g. ``workload="vision-nlp-prio"``).
    ``hw`` is a
    device name from ``conf/hw``, a YAML path, a mapping or a :class:`DeviceSpec`; ``workload`` a
    preset name or a list of ``{name, weight, sla_ms, priority}``; ``trace`` a preset name or a
    :class:`traces.TraceSource`; ``load`` the offered load as a fraction of the layout's capacity
    (queries/s at full batches for the mix), or a range ``[lo, hi]`` from which every episode
    draws its load uniformly (to train across loads). Each request is one query unless
    ``request_sizes=True``, when the trace's sizes count as items of the batch (clipped at 256).
    SLAs given as multiples (``sla_multiple``) are resolved against the model's batch-1 latency
    on its fastest partition.

    ## Version History

    * v0: first release. (Later speed work kept v0's dynamics; the only numeric change is in
      the last bits of ``finish``: the queued-work estimate behind it is decreased once per
      batch, and is exactly 0 when the queue is empty instead of carrying rounding residue.)
      Later additions keep v0's dynamics for its defaults (MIG, one priority class): the
      observation keys ``priority``, ``slowdown``, ``finish_prio``, ``slack``, ``resident``
      were added, and the arguments ``sharing``, ``interference``, ``priorities``,
      ``preempt`` (the shared-GPU simulator; off by default).
    * v0, ``request_sizes=True`` only (issue 12): the capacity read the last entry of the
      256-long latency table (a batch of 256) divided by ``max_batch``, so ``load=0.8``
      offered ~180 queries/s and ran the GPU at 2-5%; it now reads the batch of ``max_batch``
      (one capacity for every env, :func:`envs.sim.device.tables.capacity_qps`): 5,270
      queries/s, 92% utilisation, as without sizes. With sizes ``load`` counts items: the
      trace's clock is stretched by the mean items per query. Without ``request_sizes``
      nothing changed.
    * v0 (unchanged dynamics, issue [N]): ``drain_weight`` (default 0: no change) charges the
      episode's drain in its last reward.
    * v0 (unchanged dynamics): non-integer actions (``0.5``) raise ``ValueError`` like masked
      ones, the rule of every env (:mod:`envs.actions`).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012
    # Episode state, set by _start (declared for the type checker).
    _steps: int
    _rates: list[float]
    _rate_t: float
    _snapshot: tuple[int, int, int, float, float]

    def __init__(
        self,
        hw: str | Mapping[str, Any] | DeviceSpec = "a100-80gb",
        layout: Sequence[str] = ("3g", "2g", "1g", "1g"),
        workload: str | Sequence[Mapping[str, Any]] | WorkloadMix = "vision-nlp",
        trace: str | TraceSource = "poisson",
        load: float | Sequence[float] = 0.8,
        episode_queries: int = 1000,
        max_batch: int = 8,
        max_queue_delay_ms: float = 2.0,
        queue_capacity: int = 64,
        drop_expired: bool = True,
        precision: str = "fp16",
        reward: str | dict[str, Any] | Reward = "goodput",
        rate_window_s: float = 1.0,
        request_sizes: bool = False,
        sharing: str | None = None,
        interference: bool | None = None,
        priorities: bool = False,
        preempt: bool = False,
        drain_weight: float = 0.0,
    ) -> None:
        self.device = load_device(hw)
        layout_spec, self.sharing = normalise_layout(layout, sharing)
        self.partitions = make_layout(self.device, layout_spec)
        self.mix = get_workload(workload)
        self.trace = get_trace(trace)
        lo, hi = load_range(load)
        if episode_queries < 1:
            raise ValueError(f"episode_queries must be >= 1, got {episode_queries}")
        #: Offered load of the current episode (drawn from ``load_range`` at each reset when
        #: that is a range).
        self.load = lo
        self.load_range = (lo, hi)
        self.episode_queries = int(episode_queries)
        if not max_queue_delay_ms >= 0:  # reported in the unit given (BatcherConfig has seconds)
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {max_queue_delay_ms}")
        self.batcher = BatcherConfig(max_batch, max_queue_delay_ms * 1e-3, queue_capacity,
                                     drop_expired)
        self.reward_fn = make_reward(reward)
        if not (math.isfinite(drain_weight) and drain_weight >= 0):
            raise ValueError(f"drain_weight must be a finite number >= 0, got {drain_weight}")
        #: Weight of the drain charge in the episode's last reward (0: none; see Episode End).
        self.drain_weight = float(drain_weight)
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
        #: Queries/s the layout sustains for this mix at full batches (what ``load=1`` means;
        #: :func:`envs.sim.device.tables.capacity_qps`).
        self.capacity_qps = capacity_qps(per_item_s(lat, fits, max_batch),
                                         self.mix.probabilities,
                                         [p.mode == "time" for p in self.partitions])
        self._power = [
            (self.device.idle_w * part.sms / self.device.sm_count,
             self.device.tdp_w * part.sms / self.device.sm_count)
            for part in self.partitions
        ]
        if self.sharing == "ts":
            # One context runs at a time (the capacity counts them as one device).
            idle = self.device.idle_w / P
            self._power = [(idle, idle + self.device.tdp_w - self.device.idle_w)] * P
        self.interference = (self.sharing != "mig") if interference is None else bool(
            interference)
        self.priorities = bool(priorities)
        self.preempt = bool(preempt)
        levels = {m.priority for m in self.mix.models} | {
            c.priority for m in self.mix.models for c in m.classes if c.priority is not None}
        #: Priority values told apart (most important first) when ``priorities`` is on.
        self.priority_levels = tuple(sorted(levels, reverse=True))
        self.n_levels = len(self.priority_levels) if self.priorities else 1
        self._slowdowns: CoRunnerSlowdowns | None = None
        self._fcache: dict[Any, tuple[float, ...]] = {}
        if self.interference:
            # Shared by every env with the same device, precision, models, partitions and
            # table length (the factors are pure functions of these and of the cache keys),
            # so vectorised and re-created envs start warm; it changes no result.
            share = (repr(self.device), precision, tuple(m.name for m in self.mix.models),
                     tuple(self.partitions), table_len)
            hit = _SHARED_SLOWDOWNS.get(share)
            if hit is None:
                if len(_SHARED_SLOWDOWNS) >= _SHARED_MAX:  # forget the oldest configuration
                    _SHARED_SLOWDOWNS.pop(next(iter(_SHARED_SLOWDOWNS)), None)
                hit = _SHARED_SLOWDOWNS[share] = (CoRunnerSlowdowns(
                    InterferenceModel(self.device, precision), profiles, {0: self.partitions},
                    isolated_mig=False), {})
            self._slowdowns, self._fcache = hit
        #: Whether the simulator is :class:`~envs.sim.device.shared.SharedGpuSim` (interference or
        #: priorities); otherwise the v0 simulator, :class:`~envs.sim.device.serving.GpuServingSim`.
        self.shared = self.interference or self.n_levels > 1 or self.preempt
        self._sms = np.array([p.sms / self.device.sm_count for p in self.partitions],
                             dtype=np.float32)
        self._max_sla_ms = float(self.mix.sla_ms.max())
        self._sms_list = self._sms.tolist()
        #: The variant of the observation's features (envs.partition_features).
        self._variant = ("isolated" if not self.shared else
                         "shared" if self.n_levels == 1 else "levels")
        # _obs collects its values in one "raw" list, in the order it computes them, packs
        # them as float32 and puts them into the observation's order with one numpy index
        # (cheaper than reordering the Python floats first); the layout comes with the
        # features of the variant.
        sizes, order, self._raw_len = features(self._variant).layout(P, M)
        self._feature_sizes = sizes
        offsets = np.cumsum([0, *sizes.values()])
        self._slices = [(k, slice(int(a), int(b)))
                        for k, a, b in zip(sizes, offsets[:-1], offsets[1:], strict=True)]
        self._slice_list = [sl for _, sl in self._slices]
        self._obs_len = int(offsets[-1])
        #: The observation's views of its flat array, by key, in one call.
        self._views = operator.itemgetter(*self._slice_list)
        #: Where each observation entry is in _obs's raw values.
        self._obs_order = np.array(order, dtype=np.intp)
        self.observation_space: spaces.Dict = spaces.Dict({  # type: ignore[assignment]
            k: spaces.Box(lo, hi, (sizes[k],), np.float32)
            for k, (_, lo, hi) in OBSERVATION.items()})
        self.action_space = spaces.Discrete(P + 1)
        self.sim: GpuServingSim | None = None
        # Per model: the action mask (reject always valid) and the one-hot "model" feature.
        self._mask_table = [np.array([f[m] for f in self._fits] + [True]) for m in range(M)]
        self._onehot = [[1.0 if k == m else 0.0 for k in range(M)] for m in range(M)]
        self._zeros_p = [0.0] * P
        self._ones_p = [1.0] * P
        self._obs_const = [features(self._variant).constants(self, m) for m in range(M)]
        self._bind_scratch()
        self._inv_b = 1.0 / self.batcher.max_batch
        self._inv_cap = 1.0 / self.capacity_qps
        #: Batch-1 latency (s) of each model on each partition: ``[m][p]``, as sim.solo_s[p][m].
        self._solo_of_model = [[lat[p, m, 0].item() for p in range(P)] for m in range(M)]
        self._reward_value = getattr(self.reward_fn, "value", None)

    def _bind_scratch(self) -> None:
        """The features' compiled functions, and the scratch space of :meth:`_obs`: its raw
        values are packed into one bytearray (packing rounds each float to float32 as numpy's
        cast does: the same values), which one float32 array views; indexing that array by
        ``_obs_order`` copies them out in the observation's order, into a fresh array (the
        scratch never leaves the env)."""
        feats = features(self._variant)
        self._raw, self._builders, self._as_dict = feats.raw, feats.builders, feats.as_dict
        codec = struct.Struct(f"={self._raw_len}f")
        self._raw_buf = bytearray(codec.size)
        self._raw_f32 = np.frombuffer(self._raw_buf, np.float32)
        self._pack_into = codec.pack_into

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # A Struct's method and the compiled features do not pickle, and a copy of the view
        # would not share the buffer: rebuilt by __setstate__.
        for key in ("_raw_buf", "_raw_f32", "_pack_into", "_raw", "_builders",
                    "_as_dict"):
            del state[key]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind_scratch()

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Draw a new trace and run to its first arrival."""
        self._start(seed)
        return self._obs(), self._info()

    def step(self, action: np.int64 | int) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Place (or reject) the pending query and run to the next arrival."""
        sim = self.sim
        if sim is None or sim.pending is None:
            raise RuntimeError("call reset() before step()")
        a = checked_action(action, self.action_space, self._mask_table[sim.pending_model()])
        if a == self.n_partitions:
            sim.reject()
        else:
            sim.place(a)
        self._steps += 1
        sim.advance()
        if sim.pending is None:  # truncated
            sim.finalize_energy()
            reward = self._reward()
            if self.drain_weight:
                reward -= self._drain_charge()
            return self._last_obs, reward, False, True, self._info()
        # _observe_arrival, _reward and _info inlined (the same statements; this runs every
        # step).
        now = sim.events.now
        decay = math.exp(-(now - self._rate_t) / self.rate_window_s)
        rates = self._rates
        for k, r in enumerate(rates):  # (cheaper than a new list by a comprehension)
            rates[k] = r * decay
        rates[sim.pending_model()] += 1.0 / self.rate_window_s
        self._rate_t = now
        reward = self._reward()
        obs = self._obs()
        return obs, reward, False, False, sim.summary()

    def action_masks(self) -> np.ndarray:
        """Valid actions for the pending query (reject is always valid)."""
        sim = self.sim
        if sim is not None and sim.pending is not None:
            return self._mask_table[sim.pending_model()].copy()
        return np.ones(self.n_partitions + 1, dtype=bool)

    def latency_counts(self) -> list[int]:
        """Latency histogram of the episode so far (bins: ``envs.sim.metrics.BIN_EDGES_S``)."""
        return list(self.sim.counters.latency.counts) if self.sim is not None else []

    # ------------------------------------------------------------------ fast path
    def action_mask_table(self) -> list[np.ndarray]:
        """Every action mask this env can produce, indexed by the ``k`` :meth:`rollout` passes.

        The mask depends only on the pending query's model, so ``k`` is the model index and
        ``action_masks()`` is ``action_mask_table()[k]`` for the pending query.
        """
        return [m.copy() for m in self._mask_table]

    def rollout(self, decide: Callable[[int, tuple[float, ...]], int],
                features: Sequence[str] = (), seed: int | None = None,
                reset: bool = True) -> dict[str, Any]:
        """One whole episode decided by ``decide``, without building observations or infos.

        The fast path for heuristics (:mod:`agents.fast_eval`): ``reset(seed=seed)`` (unless
        ``reset=False``: then the episode that ``reset`` started goes on), then at every
        decision ``a = decide(k, x)`` where ``k`` indexes :meth:`action_mask_table` (the
        current action mask) and ``x`` holds the observation entries named in ``features``,
        concatenated in that order, as Python floats equal to the float32 values ``step`` would
        have returned in the observation. The simulation, the rewards and the metrics are the
        same code as in :meth:`step`, so the result equals stepping the env with the same
        decisions, exactly.

        Args:
            decide: Picks the action (as ``step`` takes it) from the mask id and the features.
            features: Observation keys ``decide`` reads (any of ``observation_space``'s).
            seed: Episode seed, as for :meth:`reset`.
            reset: Start a new episode; ``False`` finishes the current one, from its pending
                query (for measuring the simulation apart from the trace's sampling).

        Returns:
            The final ``info`` of the episode, plus ``episode_return`` (the sum of the rewards,
            added up in the same order as a loop over ``step`` does) and ``steps``.

        Raises:
            KeyError: an unknown feature.
            ValueError: ``decide`` returned a masked or out-of-range action.
            RuntimeError: ``reset=False`` without a started episode.
        """
        builders = [self._builders[k] for k in features]
        width = sum(self._feature_sizes[k] for k in features)
        codec = struct.Struct(f"<{width}f")  # packing rounds to float32 as numpy's cast does
        pack, unpack = codec.pack, codec.unpack
        one = builders[0] if len(builders) == 1 else None
        track_rates = "rates" in features
        if reset:
            self._start(seed)
        sim = self.sim
        if sim is None or sim.pending is None:
            raise RuntimeError("rollout(reset=False) needs an episode started by reset()")
        reward_of = self._reward
        total = 0.0
        first = True
        clip = _CLIP

        def choose(now: float, m: int, deadline: float) -> int:
            # Called right after the simulator reached this request: first the reward of the
            # previous step (as step() computes it after advancing), then the decision.
            nonlocal total, first
            if first:
                first = False
            else:
                if track_rates:
                    self._observe_arrival()
                total += reward_of()
            if not width:
                return decide(m, ())
            sla = deadline - now
            inv_sla = 1.0 / sla if sla > 0 else 1e3
            if one is not None:
                values = one(self, sim, m, now, sla, inv_sla)
            else:
                values = []
                for build in builders:
                    values += build(self, sim, m, now, sla, inv_sla)
            return decide(m, unpack(pack(*[clip if v > clip else v for v in values])))

        try:
            steps = sim.run(choose)
        except ValueError as exc:
            raise ValueError(f"rollout: {exc}: the action is masked or out of range") from None
        sim.finalize_energy()
        total += reward_of()
        if self.drain_weight:
            total -= self._drain_charge()
        self._steps += steps
        return {**self._info(), "episode_return": total, "steps": steps}

    @property
    def compiles(self) -> bool:
        """Whether :meth:`run_compiled` can run this env: numba, the v0 simulator (isolated
        partitions, one priority class: the features the rules read are plain functions of
        its state) and a reward with linear ``weights`` (compiled in)."""
        return (compiled.AVAILABLE and not self.shared
                and getattr(self.reward_fn, "weights", None) is not None)

    def run_compiled(self, rule: int, *, seed: int | None = None, reset: bool = True,
                     reject_hopeless: bool = False, margin: float = 0.0,
                     choices: np.ndarray | None = None, cursor: int = 0,
                     record: np.ndarray | None = None) -> tuple[dict[str, Any], int]:
        """One whole episode as one compiled loop, decided by ``rule``
        (:data:`envs.sim.device.compiled.RULE_EARLIEST`, ...): the same episode, metrics and
        return as stepping the env with that rule's baseline (:attr:`compiles` must hold).

        ``reset=False`` runs the episode :meth:`reset` has just started (``seed`` ignored).
        ``choices``/``cursor``/``record``: see
        :meth:`envs.sim.device.serving.GpuServingSim.run_compiled`; ``choices`` may also be a
        function of the trace's model indices (called after the reset, for pre-drawn
        random choices).

        Returns:
            As :meth:`rollout`, and round robin's cursor afterwards.
        """
        if reset:
            self._start(seed)
        sim = self.sim
        if sim is None:
            raise RuntimeError("run_compiled(reset=False) needs an episode started by reset()")
        if callable(choices):
            choices = choices(sim.trace_models)
        masks = np.array(self._mask_table)
        cursor, steps, total = sim.run_compiled(
            rule, valid=masks[:, :-1], can_reject=masks[:, -1],
            size_f32=np.asarray(self._sms_list, dtype=np.float64), clip=_CLIP,
            weights=self.reward_fn.weights,  # type: ignore[attr-defined]
            reject_hopeless=reject_hopeless, margin_f32=rules.f32(margin), choices=choices,
            cursor=cursor, record=record)
        self._steps += steps
        c = sim.counters
        self._snapshot = (c.good, c.completed - c.good, c.dropped, c.energy_j, sim.backlog)
        if self.drain_weight:
            total -= self._drain_charge()
        return {**self._info(), "episode_return": total, "steps": steps}, cursor

    # ------------------------------------------------------------------ helpers
    def _start(self, seed: int | None) -> None:
        """``reset`` without the observation: a new trace, run to its first arrival."""
        super().reset(seed=seed)
        trace_seed = int(self.np_random.integers(0, 2**63 - 1))
        lo, hi = self.load_range
        if hi > lo:
            self.load = lo + (hi - lo) * float(self.np_random.random())
        arrivals = self.trace.sample(np.random.default_rng(trace_seed), self.mix,
                                     self.episode_queries, self.load * self.capacity_qps)
        arrivals = arrivals.resolve_sla(self._solo_ms)
        if self.request_sizes:
            size = np.clip(arrivals.size, 1, self._table_len).astype(np.int32)
            # The capacity counts items (one per query at full batches): stretch the trace's
            # clock by the mean items per query, so that ``load`` is offered items / capacity.
            arrivals = dataclasses.replace(arrivals, size=size,
                                           time_s=arrivals.time_s * float(size.mean()))
        else:
            arrivals = dataclasses.replace(arrivals, size=np.ones(len(arrivals), np.int32))
        if self.shared:
            self.sim = SharedGpuSim(
                self._latency, self._fits, arrivals, self.batcher, self._power,
                slowdown=self._slowdowns, slowdown_cache=self._fcache,
                priorities=self.priority_levels if self.priorities else False,
                preempt=self.preempt)
        else:
            self.sim = GpuServingSim(self._latency, self._fits, arrivals, self.batcher,
                                     self._power)
        self._rates = [0.0] * self.n_models
        self._rate_t = 0.0
        self._steps = 0
        self._snapshot = (0, 0, 0, 0.0, 0.0)
        self.sim.advance()
        self._observe_arrival()

    def _reward(self) -> float:
        """The reward for what happened since the last call (counters' differences): the
        reward object's ``value`` of the :class:`~envs.rewards.Outcome`'s fields where it has
        one (the built-in rewards; no object per step), else its ``Outcome``."""
        sim = self.sim
        assert sim is not None
        c = sim.counters
        good, completed, energy, backlog = c.good, c.completed, c.energy_j, sim.backlog
        dropped = c.dropped_rejected + c.dropped_overflow + c.dropped_expired
        g0, l0, d0, e0, b0 = self._snapshot
        self._snapshot = (good, completed - good, dropped, energy, backlog)
        dg, dl, dd, de, db = good - g0, completed - good - l0, dropped - d0, energy - e0, \
            backlog - b0
        value = self._reward_value
        if value is None:
            return float(self.reward_fn(Outcome(dg, dl, dd, de, 0, db)))
        return float(value(dg, dl, dd, de, 0, db))

    def _drain_charge(self) -> float:
        """At the end of an episode: ``drain_weight * good * drain / end``, where ``good`` is
        the episode's in-SLA count, ``end`` the clock after the drain (the time ``goodput``
        divides by) and ``drain`` the time from the last arrival to ``end``."""
        sim = self.sim
        assert sim is not None
        end = sim.events.now
        times = sim.trace_times_s
        if end <= 0 or not len(times):
            return 0.0
        drain = max(end - float(times[-1]), 0.0)
        return self.drain_weight * sim.counters.good * drain / end

    def _observe_arrival(self) -> None:
        sim = self.sim
        assert sim is not None
        now = sim.now
        decay = math.exp(-(now - self._rate_t) / self.rate_window_s)
        rates = self._rates = [r * decay for r in self._rates]
        rates[sim.pending_model()] += 1.0 / self.rate_window_s
        self._rate_t = now

    def _obs(self) -> Obs:
        """One fresh float32 array per step; the dict values are views of it."""
        sim = self.sim
        assert sim is not None and sim.pending is not None
        m, deadline, lev = sim.pending_query()
        now = sim.events.now
        sla = deadline - now
        inv_sla = 1.0 / sla if sla > 0 else 1e3
        # The per-query values, the per-model constants, then a row per partition: the
        # features' one table (envs.partition_features), clipped as they are computed.
        raw = self._raw(self, sim, m, now, sla, inv_sla, lev)
        # A fresh, writeable float32 array (the index copies), in the observation's order.
        self._pack_into(self._raw_buf, 0, *raw)
        flat = self._raw_f32[self._obs_order]
        obs = self._as_dict(self._views(flat))
        self._last_obs = obs
        return obs

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        assert sim is not None
        return sim.summary()
