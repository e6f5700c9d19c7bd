"""``ldsgym/Repartition-v0``: every T seconds, keep the GPU's layout or re-partition it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.actions import checked_action
from envs.presets import get_workload
from envs.rewards import Outcome, Reward, make_reward
from envs.sim.device import compiled_shared, rules
from envs.sim.device.serving import BatcherConfig
from envs.sim.device.shared import SharedGpuSim, SlotSpec
from envs.sim.device.tables import CoRunnerSlowdowns, PartitionTables, normalise_layout
from hwmodels.interference import InterferenceModel
from hwmodels.partitions import Partition, enumerate_layouts, make_layout, mig_table
from hwmodels.reconfig import ReconfigModel
from hwmodels.specs import DeviceSpec, load_device
from hwmodels.workloads import WorkloadProfile, build_profile
from traces.arrivals import TraceSource, WorkloadMix
from traces.presets import get_trace
from traces.replay import RateMode, WindowOptions

Obs = dict[str, np.ndarray]
_CLIP = 10.0
_INF = float("inf")

#: Routing heuristics for the queries inside an interval (``placement=``); each is the rule of
#: the PartitionPlacement baseline of the same name, applied to the simulator's state.
PLACEMENTS = ("shortest_finish", "least_loaded", "round_robin", "interference_aware")
#: The compiled interval's rule for each placement (``interference_aware`` is
#: ``shortest_finish`` where partitions do not interfere, the only case the kernel runs).
_KERNEL_RULES = {"shortest_finish": compiled_shared.ROUTE_EARLIEST,
                 "interference_aware": compiled_shared.ROUTE_EARLIEST,
                 "least_loaded": compiled_shared.ROUTE_LEAST_LOADED,
                 "round_robin": compiled_shared.ROUTE_ROUND_ROBIN}


def mps_share_vectors(step: int = 10, max_parts: int = 4) -> list[list[str]]:
    """Every MPS layout whose shares are multiples of ``step`` percent summing to 100, with at
    most ``max_parts`` clients, largest share first (``[mps:100]``, ``[mps:90, mps:10]``, ...).
    """
    units = 100 // step
    out: list[list[int]] = []

    def grow(left: int, cap: int, cur: list[int]) -> None:
        if left == 0:
            out.append(list(cur))
            return
        if len(cur) == max_parts:
            return
        for k in range(min(left, cap), 0, -1):
            grow(left - k, k, [*cur, k])

    grow(units, units, [])
    return [[f"mps:{k * step}" for k in parts] for parts in out]


class _NamedReconfigModel(ReconfigModel):
    """:class:`ReconfigModel` whose :meth:`steps` are computed once per distinct change.

    The environment asks for the same few changes again and again (the mean and a sample of
    every switch, the switch costs of every layout); each answer validates both layouts and
    adds up the models' weights. Models are told apart by name, which holds for the
    environment's bundles (:func:`_bundle`: named after the models they hold).
    """

    def __init__(self, device: DeviceSpec, precision: str = "fp16",
                 params: Mapping[str, float] | None = None) -> None:
        super().__init__(device, precision, params)
        self._steps: dict[tuple[Any, ...], dict[str, float]] = {}

    def steps(self, old_layout: Sequence[str], new_layout: Sequence[str],
              models: Sequence[WorkloadProfile | str | None],
              old_models: Sequence[WorkloadProfile | str | None] | None = None,
              drain_s: float | None = None) -> dict[str, float]:
        """As :meth:`ReconfigModel.steps` (a fresh dict each call)."""
        def names(ms: Sequence[WorkloadProfile | str | None]) -> tuple[str | None, ...]:
            return tuple(m if m is None or isinstance(m, str) else m.name for m in ms)

        key = (tuple(old_layout), tuple(new_layout), names(models),
               None if old_models is None else names(old_models), drain_s)
        out = self._steps.get(key)
        if out is None:
            out = self._steps[key] = super().steps(old_layout, new_layout, models, old_models,
                                                   drain_s)
        return dict(out)


def _bundle(profiles: Sequence[WorkloadProfile]) -> WorkloadProfile:
    """One profile holding the weights of several models (a partition serving all of them),
    so that :class:`~hwmodels.reconfig.ReconfigModel` reloads all of their weights."""
    if len(profiles) == 1:
        return profiles[0]
    layers = tuple(dataclasses.replace(lay, name=f"{p.name}/{lay.name}")
                   for p in profiles for lay in p.layers)
    return WorkloadProfile("+".join(p.name for p in profiles), profiles[0].family, layers,
                           "models served together", "sum of the models' layers")


class RepartitionEnv(gym.Env[Obs, np.int64]):
    """Decide every ``interval_s`` seconds whether to re-partition one GPU, and into what.

    ## Description

    One GPU (by default an A100 in MIG mode, ``3g + 2g + 1g + 1g``) co-serves several DNN
    models, as in ``ldsgym/PartitionPlacement-v0``. Here the agent does not place queries: a
    fixed heuristic (``placement``, e.g. Clockwork-style shortest expected finish) routes each
    arriving query to a partition. Every ``interval_s`` seconds of simulated time the agent
    keeps the layout or switches to another valid one: any maximal MIG layout of the device
    (:func:`hwmodels.partitions.enumerate_layouts`) or, with ``sharing="mps"``, any vector of
    MPS shares. A switch has the calibrated cost of :class:`hwmodels.reconfig.ReconfigModel`:
    partitions that stay are untouched and keep serving; the others drain their running batch
    (``reconfig_mode="drain"``) or drop it back into the queues (``"preempt"``), then stay down
    for the sampled time of destroying and creating instances, restarting contexts, reloading
    weights and warming up, and serve nothing meanwhile. Queries queued on changed partitions
    are routed again. MPS shares interfere (:class:`envs.sim.device.shared.SharedGpuSim`).

    ## Action Space

    ``Discrete(L + 1)``: ``0`` keeps the layout, ``1 + l`` switches to ``candidates[l]``
    (``1 + current`` keeps it too). While a reconfiguration is under way :meth:`action_masks`
    allows only these two. The action rule of every ldsgym env (:mod:`envs.actions`): ``step``
    raises ``ValueError``, changing nothing, for a masked action (a switch asked for during a
    reconfiguration), an index out of range or a non-integer; an unmasked agent can use
    :class:`envs.wrappers.NearestValidAction`. The first
    decision of an episode (at time 0, before any query) chooses the starting layout for free:
    the GPU is provisioned before traffic starts.

    ## Observation Space

    A ``Dict`` of float32 boxes (L candidate layouts, M models, H = ``history``):

    | key        | shape  | meaning                                                        |
    |------------|--------|----------------------------------------------------------------|
    | ``layout`` | (L,)   | one-hot of the current layout (the target while switching)      |
    | ``rates``  | (H*M,) | arrivals per model in each of the last H intervals / (reference |
    |            |        | capacity x T), oldest interval first, models within            |
    | ``forecast``| (M,)  | next interval's rates: linear trend over the last 4, >= 0       |
    | ``util``   | (L,)   | forecast arrivals / each layout's capacity for the forecast mix |
    | ``latency``| (L,)   | each layout's mean batch-1 latency / SLA for the forecast mix,  |
    |            |        | on the largest partition that holds the model                  |
    | ``queue``  | (M,)   | items queued per model / (max_batch x partitions)              |
    | ``recent`` | (3,)   | last interval's SLA attainment, dropped fraction, utilisation  |
    | ``reconfig``| (1,)  | time until the reconfiguration under way completes / T         |
    | ``switch_cost``| (L,)| expected capacity lost by switching there: mean downtime x share|
    |            |        | of the GPU's SMs on partitions that change / T (0: current)     |

    All are clipped to ``[0, 10]``. The reference capacity is the starting layout's capacity
    for the workload mix (queries/s at full batches); ``load`` is relative to it.

    With ``time_obs=True`` one more key tells the time, as a server's clock would (off by
    default: the observation is then exactly the one above):

    | key        | shape  | meaning                                                        |
    |------------|--------|----------------------------------------------------------------|
    | ``time``   | (3,)   | elapsed fraction of the episode's nominal length (``episode_s``,|
    |            |        | else ``episode_queries / (load x capacity)``) in ``[0, 1]``;    |
    |            |        | ``sin`` and ``cos`` of ``2 pi t / clock_period_s`` in ``[-1, 1]``|

    ``t`` is the time of the decision on the trace's own clock: the episode's start there (the
    arrivals' ``start_s``: where a replayed window or a mix schedule started at an offset
    begins; 0 for traces that start at their time 0) plus the simulated time since the
    episode started (``clock_origin="episode"``: the latter only). A trace whose pattern
    repeats with a known period (a daily cycle, ``MixShift(repeat=True)``) is then predictable
    from the clock whatever window an episode replays: set ``clock_period_s`` to the period.

    ## Rewards

    A reward object (:mod:`envs.rewards`) weighs what happened in the interval, divided by the
    queries the reference capacity serves in one interval (``capacity x T``), so rewards are
    fractions of capacity whatever T and the device. The default ``goodput`` reward is ``good -
    late - dropped``; the downtime of a re-partitioning already costs the queries it loses,
    and ``reconfig_weight`` adds a fixed price per re-partitioning (in queries), ``energy_weight``
    one per joule. Worked example, ``GoodputReward(reconfig_weight=500)``, T = 1 s, reference
    capacity 6,600 queries/s: in an interval 6,000 queries finish in time, 200 late, 300 are
    dropped and the agent started one re-partitioning: ``r = (6000 - 200 - 300 - 500) / 6600 =
    0.758``.

    ## Starting State

    An idle GPU in the starting ``layout``; no query has arrived; the history is empty.

    ## Episode End

    After the trace's ``episode_queries`` arrivals (the number of arrivals, not of decisions:
    an episode lasts about ``episode_queries / (load x capacity)`` seconds, i.e. that divided
    by T decisions). The interval in which the last query arrives ends the episode (a
    truncation); the system then drains so the final ``info`` counts every query as completed
    or dropped.

    ## Arguments

    ``gym.make("ldsgym/Repartition-v0", hw="a100-80gb", layout=[3g, 2g, 1g, 1g],
    sharing=None, candidates=None, workload="vision-nlp", trace="poisson", load=0.8,
    episode_queries=100000, interval_s=1.0, placement="shortest_finish",
    reconfig_mode="drain", reconfig_params=None, history=8, max_batch=8,
    max_queue_delay_ms=2.0, queue_capacity=64, drop_expired=True, precision="fp16",
    reward="goodput", interference=None, priorities=False, request_sizes=False, mps_step=10,
    mps_max_parts=4, rate_mode="scale", episode_s=None, compiled=None, time_obs=False,
    clock_period_s=3600.0, clock_origin="trace")``. ``rate_mode`` replaces the
    ``rate_mode`` of a replayed trace (:class:`traces.replay.WindowOptions`: Azure, CSV,
    ServeGen): ``scale`` (default) keeps the trace's clock and multiplies its rate per tenant
    and window, so an hour of trace is an hour of simulated time and a minutes-long drift of
    the mix stays minutes long (``compress`` shrinks time instead: ~1,000x for Azure at GPU
    rates); ``None`` keeps the trace's own. Synthetic traces ignore it. ``episode_s`` sets the
    episode's length in seconds instead of ``episode_queries`` (``episode_s x load x capacity``
    arrivals). ``candidates`` lists the layouts to choose from (default: every
    maximal MIG layout on which each model fits somewhere, or every MPS share vector in steps
    of ``mps_step`` percent with at most ``mps_max_parts`` clients); the starting layout is
    added when it is not among them. ``placement`` is one of :data:`PLACEMENTS`.
    ``reconfig_params`` override :data:`hwmodels.reconfig.DEFAULTS` (e.g. ``{"cv": 0}``).
    ``compiled`` runs each interval as one compiled (numba) loop
    (:mod:`envs.sim.device.compiled_shared`: the same episode, observations, rewards and
    ``info``, about 10x faster): ``None`` (default) wherever it applies (``priorities=False``;
    numba installed and ``LDSGYM_NO_JIT`` unset; MIG, or MPS with or without interference:
    the kernel computes the co-runners' slowdowns and reschedules running batches as the
    Python loop does, on Python < 3.12 whose ``sum()`` it reproduces), ``False`` the Python
    loop (the reference), ``True`` requires it.
    ``time_obs`` adds the ``time`` key above; ``clock_period_s`` (> 0, finite; default an
    hour) is its clock's period; ``clock_origin`` (``trace`` or ``episode``) where it counts from.
    The other arguments are those of ``PartitionPlacement-v0``.

    ## Version History

    * v0: first release.
    * v0 (physics change, issue 16): replayed traces default to ``rate_mode="scale"`` (the
      trace's clock kept) instead of their own ``compress``; ``episode_s``.
    * v0 (unchanged dynamics, issue 16): ``compiled``; intervals run compiled by default where
      they can (golden trajectories bit-identical); later also with interference (MPS).
    * v0 (unchanged dynamics): masked, out-of-range and non-integer actions raise ``ValueError``
      in every env (:mod:`envs.actions`) (a switch during a reconfiguration was ignored before);
      valid actions give the same episodes as before (golden trajectories bit-identical).
    * v0 (unchanged dynamics, issue 16): ``time_obs`` and ``clock_period_s`` (off by default;
      golden trajectories bit-identical).
    * v0 (unchanged dynamics, issue 16): the clock follows the trace's clock (``clock_origin``;
      the same observations for traces that start at their time 0).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        hw: str | Mapping[str, Any] | DeviceSpec = "a100-80gb",
        layout: Sequence[Any] = ("3g", "2g", "1g", "1g"),
        sharing: str | None = None,
        candidates: Sequence[Sequence[Any]] | None = None,
        workload: str | Sequence[Mapping[str, Any]] | WorkloadMix = "vision-nlp",
        trace: str | TraceSource = "poisson",
        load: float = 0.8,
        episode_queries: int = 100_000,
        interval_s: float = 1.0,
        placement: str = "shortest_finish",
        reconfig_mode: str = "drain",
        reconfig_params: Mapping[str, float] | None = None,
        history: int = 8,
        max_batch: int = 8,
        max_queue_delay_ms: float = 2.0,
        queue_capacity: int = 64,
        drop_expired: bool = True,
        precision: str = "fp16",
        reward: str | dict[str, Any] | Reward = "goodput",
        interference: bool | None = None,
        priorities: bool = False,
        request_sizes: bool = False,
        mps_step: int = 10,
        mps_max_parts: int = 4,
        rate_mode: str | None = "scale",
        episode_s: float | None = None,
        compiled: bool | None = None,
        time_obs: bool = False,
        clock_period_s: float = 3600.0,
        clock_origin: str = "trace",
    ) -> None:
        self.device = load_device(hw)
        start, self.sharing = normalise_layout(layout, sharing)
        if self.sharing == "ts":
            raise ValueError("Repartition: sharing 'ts' is not supported (it chooses among MIG "
                             "layouts or MPS share vectors); time slicing is "
                             "ldsgym/PartitionPlacement-TS-v0")
        self.mix = get_workload(workload)
        self.trace = get_trace(trace)
        if rate_mode is not None:
            if rate_mode not in ("scale", "compress", "thin", "native"):
                raise ValueError(f"rate_mode must be scale|compress|thin|native or null, got "
                                 f"'{rate_mode}'")
            if isinstance(self.trace, WindowOptions):
                self.trace = dataclasses.replace(
                    self.trace, rate_mode=cast("RateMode", rate_mode))
        if episode_s is not None and not episode_s > 0:
            raise ValueError(f"episode_s must be > 0, got {episode_s}")
        self.episode_s = None if episode_s is None else float(episode_s)
        if load <= 0:
            raise ValueError(f"load must be > 0, got {load}")
        if episode_queries < 1:
            raise ValueError(f"episode_queries must be >= 1, got {episode_queries}")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement '{placement}': unknown; known: {', '.join(PLACEMENTS)}")
        if reconfig_mode not in ("drain", "preempt"):
            raise ValueError(f"reconfig_mode must be drain|preempt, got '{reconfig_mode}'")
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        if not isinstance(time_obs, bool):
            raise ValueError(f"time_obs must be true or false, got {time_obs!r}")
        if (isinstance(clock_period_s, bool) or not isinstance(clock_period_s, (int, float))
                or not 0 < clock_period_s < _INF):
            raise ValueError(f"clock_period_s must be a finite number > 0, got "
                             f"{clock_period_s!r}")
        if clock_origin not in ("trace", "episode"):
            raise ValueError(f"clock_origin must be trace|episode, got {clock_origin!r}")
        self.time_obs = time_obs
        self.clock_period_s = float(clock_period_s)
        self.clock_origin = clock_origin
        self._clock0 = 0.0  # the episode's start on the clock (reset)
        self.load = float(load)
        self.episode_queries = int(episode_queries)
        self.interval_s = float(interval_s)
        self.placement = placement
        self.drain = reconfig_mode == "drain"
        self.history = int(history)
        if not max_queue_delay_ms >= 0:  # reported in the unit given (BatcherConfig has seconds)
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {max_queue_delay_ms}")
        self.batcher = BatcherConfig(max_batch, max_queue_delay_ms * 1e-3, queue_capacity,
                                     drop_expired)
        self.precision = precision
        self.reward_fn = make_reward(reward)
        self.request_sizes = bool(request_sizes)
        if compiled is not None and not isinstance(compiled, bool):
            raise ValueError(f"compiled must be true, false or null, got {compiled!r}")
        self.reconfig: ReconfigModel = _NamedReconfigModel(self.device, precision,
                                                           reconfig_params)
        self.profiles = [build_profile(m.name) for m in self.mix.models]
        M = self.n_models = len(self.profiles)
        self._table_len = max(max_batch, 256 if request_sizes else 1)

        # Candidate layouts (canonical names, as make_layout reads them).
        cands = self._candidates(start, candidates, mps_step, mps_max_parts)
        self._latcache: dict[tuple[Any, ...], np.ndarray] = {}
        probs = self.mix.probabilities
        self.tables: list[PartitionTables] = []
        keep: list[tuple[str, ...]] = []
        for lay in cands:
            t = PartitionTables.build(self.device, lay, self.profiles, probs, max_batch,
                                      precision, self._table_len, self._latcache)
            if np.array(t.fits).any(axis=0).all():  # every model fits somewhere
                keep.append(lay)
                self.tables.append(t)
        start_key = self._canonical(start)
        if start_key not in keep:
            raise ValueError(f"layout {list(layout)}: some model fits on no partition")
        #: The layouts the agent chooses among (``1 + l`` switches to ``candidates[l]``).
        self.candidates: list[tuple[str, ...]] = keep
        self.start_index = keep.index(start_key)
        L = self.n_layouts = len(keep)
        P = self.n_slots = max(len(c) for c in keep)
        self.capacity_qps = self.tables[self.start_index].capacity_qps
        # Per layout: (P, M) seconds per item (inf: no partition / does not fit), and the
        # batch-1 latency of each model on the largest partition that holds it.
        self._cost = np.full((L, P, M), np.inf)
        self._best_solo = np.zeros((L, M))
        for i, t in enumerate(self.tables):
            self._cost[i, :len(t.partitions)] = t.per_item_s
            lat = np.array(t.latency)[:, :, 0]
            sms = np.array([p.sms for p in t.partitions], dtype=np.float64)
            for m in range(M):
                ok = np.flatnonzero(np.array(t.fits)[:, m])
                big = ok[np.argmax(sms[ok])]
                self._best_solo[i, m] = lat[big, m]
        self._sla_s = np.array(self.mix.sla_ms) * 1e-3
        self.interference = (self.sharing != "mig") if interference is None else bool(
            interference)
        self.priorities = bool(priorities)
        levels = {m.priority for m in self.mix.models} | {
            c.priority for m in self.mix.models for c in m.classes if c.priority is not None}
        self.priority_levels = tuple(sorted(levels, reverse=True))
        self._slowdowns = CoRunnerSlowdowns(InterferenceModel(self.device, precision),
                                            self.profiles, {}, isolated_mig=False)
        # The compiled interval (envs.sim.device.compiled_shared) where it runs the same model:
        # one priority class, and interference only where the kernel computes the same floats
        # (a placement of PLACEMENTS always has a rule).
        fits_kernel = not self.priorities and (not self.interference
                                               or self._slowdowns.kernel_ready)
        if compiled and not fits_kernel:
            raise ValueError("compiled=true needs priorities: false (and, with interference, "
                             "Python < 3.12)")
        if compiled and not compiled_shared.AVAILABLE:
            raise ValueError("compiled=true needs numba (installed, LDSGYM_NO_JIT unset)")
        #: Whether each interval runs as one compiled loop (else the Python loop, the reference).
        self.compiled = fits_kernel and compiled_shared.AVAILABLE if compiled is None else (
            compiled)
        self._rule = _KERNEL_RULES[placement]
        self._predict = placement == "interference_aware" and self.interference
        self._fcache: dict[Any, tuple[float, ...]] = {}
        self._layout_ids: dict[tuple[str | None, ...], int] = {}
        self._bundles: dict[tuple[int, ...], WorkloadProfile] = {}

        box = spaces.Box
        H = self.history
        self.observation_space: spaces.Dict = spaces.Dict({  # type: ignore[assignment]
            "layout": box(0.0, 1.0, (L,), np.float32),
            "rates": box(0.0, _CLIP, (H * M,), np.float32),
            "forecast": box(0.0, _CLIP, (M,), np.float32),
            "util": box(0.0, _CLIP, (L,), np.float32),
            "latency": box(0.0, _CLIP, (L,), np.float32),
            "queue": box(0.0, _CLIP, (M,), np.float32),
            "recent": box(0.0, 1.0, (3,), np.float32),
            "reconfig": box(0.0, _CLIP, (1,), np.float32),
            "switch_cost": box(0.0, _CLIP, (L,), np.float32),
        })
        if self.time_obs:
            self.observation_space.spaces["time"] = box(
                np.array([0.0, -1.0, -1.0], np.float32), np.ones(3, np.float32), (3,),
                np.float32)
        #: The episode's nominal length in seconds (the ``time`` key's elapsed fraction).
        self.nominal_episode_s = (self.episode_s if self.episode_s is not None
                                  else self.episode_queries / (self.load * self.capacity_qps))
        self._switch_costs: dict[int, np.ndarray] = {}
        self.action_space = spaces.Discrete(L + 1)
        self.sim: SharedGpuSim | None = None
        self._current = self.start_index

    # ------------------------------------------------------------------ layouts
    def _canonical(self, layout: Sequence[str]) -> tuple[str, ...]:
        """Full profile names, largest first (as :func:`enumerate_layouts` lists them)."""
        if self.sharing == "mig" and list(layout) != ["full"]:
            table = mig_table(str(self.device.mig))
            profs = [table.profile(n) for n in layout]
            profs.sort(key=lambda p: (-p.compute_slices, p.name))
            return tuple(p.name for p in profs)
        if self.sharing == "mps":
            return tuple(sorted(layout, key=lambda x: -float(x[4:])))
        return tuple(layout)

    def _candidates(self, start: list[str], given: Sequence[Sequence[Any]] | None, step: int,
                    max_parts: int) -> list[tuple[str, ...]]:
        if given is not None:
            out = [self._canonical(normalise_layout(c, self.sharing)[0]) for c in given]
        elif self.sharing == "mig":
            if self.device.mig is None:
                raise ValueError(f"hw '{self.device.name}' has no MIG; use sharing: mps")
            out = [tuple(c) for c in enumerate_layouts(self.device.mig)]
        else:  # mps (time slicing is refused in __init__)
            if not 1 <= step <= 100 or 100 % step:
                raise ValueError(f"mps_step must divide 100, got {step}")
            out = [tuple(c) for c in mps_share_vectors(step, max_parts)]
        for c in out:
            make_layout(self.device, list(c))  # validates given candidates
        seen: list[tuple[str, ...]] = []
        for c in out:
            if c not in seen:
                seen.append(c)
        first = self._canonical(start)
        # The listed order; the starting layout goes first when it is not listed.
        return seen if first in seen else [first, *seen]

    @property
    def per_item_s(self) -> np.ndarray:
        """``(L, P, M)``: seconds per query of each model on each partition of each candidate
        at full batches (the profiled tables; inf: no such partition or the model does not
        fit). A copy."""
        return self._cost.copy()

    def slo_per_item_s(self, fraction: float = 0.5) -> np.ndarray:
        """``(L, P, M)``: as :attr:`per_item_s`, but each at the largest batch (up to
        ``max_batch``) whose latency is within ``fraction`` of the model's SLA, the rest of the
        SLA left to queueing (a throughput-under-SLO profile, as MIG-serving profiles
        instances); inf where even one query takes longer.

        Raises:
            ValueError: ``fraction`` not in (0, 1].
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        L, P, M = self._cost.shape
        out = np.full((L, P, M), np.inf)
        for i, t in enumerate(self.tables):
            lat = np.asarray(t.latency, dtype=np.float64)[:, :, :self.batcher.max_batch]
            batch = np.arange(1, lat.shape[2] + 1, dtype=np.float64)
            for p in range(len(t.partitions)):
                for m in range(M):
                    ok = np.flatnonzero(lat[p, m] <= fraction * self._sla_s[m])
                    if t.fits[p][m] and len(ok):
                        b = ok[-1]
                        out[i, p, m] = lat[p, m, b] / batch[b]
        return out

    def layout_name(self, index: int | None = None) -> str:
        """``"3g.40gb+2g.20gb+..."`` of a candidate (default: the current layout)."""
        return "+".join(self.candidates[self._current if index is None else index])

    def _bundle_of(self, table: PartitionTables, p: int) -> WorkloadProfile:
        key = tuple(m for m in range(self.n_models) if table.fits[p][m])
        b = self._bundles.get(key)
        if b is None:
            b = self._bundles[key] = _bundle([self.profiles[m] for m in key])
        return b

    def _layout_id(self, names: tuple[str | None, ...],
                   parts: tuple[Partition | None, ...]) -> int:
        lid = self._layout_ids.get(names)
        if lid is None:
            lid = self._layout_ids[names] = len(self._layout_ids)
            self._slowdowns.layouts[lid] = parts
        return lid

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Draw a new trace; the GPU is idle in the starting layout at time 0."""
        super().reset(seed=seed)
        trace_seed, reconfig_seed, route_seed = (int(x) for x in
                                                 self.np_random.integers(0, 2**63 - 1, 3))
        self._reconfig_rng = np.random.default_rng(reconfig_seed)
        self._route_rng = np.random.default_rng(route_seed)
        rate = self.load * self.capacity_qps
        n = (self.episode_queries if self.episode_s is None
             else max(1, math.ceil(self.episode_s * rate)))
        arrivals = self.trace.sample(np.random.default_rng(trace_seed), self.mix, n, rate)
        self._clock0 = float(arrivals.start_s) if self.clock_origin == "trace" else 0.0
        solo = self._best_solo[self.start_index] * 1e3
        if arrivals.needs_sla_resolution:  # (else it would copy sla_ms: seconds an hour)
            arrivals = arrivals.resolve_sla(solo)
        if self.request_sizes:
            arrivals = dataclasses.replace(
                arrivals, size=np.clip(arrivals.size, 1, self._table_len).astype(np.int32))
        elif not (arrivals.size.dtype == np.int32 and len(arrivals)
                  and arrivals.size.min() == 1 == arrivals.size.max()):  # (else: all 1 already)
            arrivals = dataclasses.replace(arrivals, size=np.ones(len(arrivals), np.int32))
        P, M = self.n_slots, self.n_models
        t = self.tables[self.start_index]
        n = len(t.partitions)
        blank = [[math.inf] * self._table_len for _ in range(M)]
        lat = [t.latency[p] if p < n else blank for p in range(P)]
        fits = [t.fits[p] if p < n else [False] * M for p in range(P)]
        power = [t.power_w[p] if p < n else (0.0, 0.0) for p in range(P)]
        self._slot_names: list[str | None] = [
            self.candidates[self.start_index][p] if p < n else None for p in range(P)]
        self._slot_parts: list[Partition | None] = [
            t.partitions[p] if p < n else None for p in range(P)]
        self._slot_bundles: list[WorkloadProfile | None] = [
            self._bundle_of(t, p) if p < n else None for p in range(P)]
        lid = self._layout_id(tuple(self._slot_names), tuple(self._slot_parts))
        self.sim = SharedGpuSim(
            lat, fits, arrivals, self.batcher, power,
            slowdown=self._slowdowns if self.interference else None,
            slowdown_cache=self._fcache, layout_id=lid,
            priorities=self.priority_levels if self.priorities else False,
            active=[p < n for p in range(P)])
        self._sms = [float(p.sms) if p is not None else 0.0 for p in self._slot_parts]
        self._current = self.start_index
        self._t = 0.0
        self._steps = 0
        self._rr = 0
        self._counts = [0] * M
        self._hist = np.zeros((self.history, M))
        self._recent = [1.0, 0.0, 0.0]
        self._snap = self._snapshot()
        self._reconfigs_step = 0
        self._busy_snap = 0.0
        self._slot_time = 0.0  # partition-seconds of the layouts held so far
        #: Per reconfiguration: (mean downtime from ReconfigModel, sampled downtime).
        self.reconfig_log: list[tuple[float, float]] = []
        return self._obs(), self._info()

    def step(self, action: np.int64 | int) -> tuple[Obs, float, bool, bool, dict[str, Any]]:
        """Apply the layout decision and simulate one interval."""
        sim = self.sim
        if sim is None or self._t < 0:
            raise RuntimeError("call reset() before step()")
        a = checked_action(action, self.action_space, self.action_masks())
        self._reconfigs_step = 0
        if a > 0 and a - 1 != self._current and not sim.reconfiguring:
            self._switch(a - 1, free=self._steps == 0 and sim.now == 0.0)
        self._counts = [0] * self.n_models
        t_end = self._t + self.interval_s
        active = sum(sim.active)
        if self.compiled:
            self._counts, self._rr = sim.run_until_compiled(t_end, self._rule, self._sms,
                                                            self._rr, self._predict)
        else:
            sim.run_until(self._router(), t_end)
        self._slot_time += active * (t_end - self._t)
        self._t = t_end
        self._steps += 1
        truncated = sim.all_arrived
        if truncated:
            sim.advance()  # drain: no decision is left
            sim.finalize_energy()
            self._slot_time += sum(sim.active) * (sim.now - t_end)
        self._hist = np.roll(self._hist, -1, axis=0)
        self._hist[-1] = self._counts
        reward = self._reward()
        info = self._info()
        if truncated:
            self._t = -1.0  # the episode is over
        return self._obs(), reward, False, truncated, info

    def action_masks(self) -> np.ndarray:
        """Keep is always valid; switches only when no reconfiguration is under way."""
        mask = np.zeros(self.n_layouts + 1, dtype=bool)
        mask[0] = True
        sim = self.sim
        if sim is None or not sim.reconfiguring:
            mask[1:] = True
        mask[1 + self._current] = True  # "switch" to the current layout: keep
        return mask

    def latency_counts(self) -> list[int]:
        """Latency histogram of the episode so far (bins: ``envs.sim.metrics.BIN_EDGES_S``)."""
        return list(self.sim.counters.latency.counts) if self.sim is not None else []

    # ------------------------------------------------------------------ re-partitioning
    def _switch(self, target: int, free: bool = False) -> None:
        """Start switching to ``candidates[target]`` (at once and at no cost if ``free``)."""
        sim = self.sim
        assert sim is not None
        table = self.tables[target]
        new_names = list(self.candidates[target])
        old_names = list(self._slot_names)
        P = self.n_slots
        # Partitions that stay keep their slot; new ones take the free slots in order.
        slots: list[int | None] = [None] * len(new_names)
        used = [False] * P
        for i, name in enumerate(new_names):
            for p in range(P):
                if not used[p] and old_names[p] == name:
                    slots[i] = p
                    used[p] = True
                    break
        free_slots = [p for p in range(P) if not used[p]]
        k = 0
        changes: dict[int, SlotSpec | None] = {}
        new_slot_names: list[str | None] = [None] * P
        new_parts: list[Partition | None] = [None] * P
        new_bundles: list[WorkloadProfile | None] = [None] * P
        for i, name in enumerate(new_names):
            kept = slots[i]
            if kept is None:
                p = free_slots[k]
                k += 1
                changes[p] = SlotSpec(table.latency[i], table.fits[i], table.power_w[i])
            else:
                p = kept
            new_slot_names[p] = name
            new_parts[p] = table.partitions[i]
            new_bundles[p] = self._bundle_of(table, i)
        for p in free_slots[k:]:
            if old_names[p] is not None:
                changes[p] = None
        old_layout = [n for n in old_names if n is not None]
        old_models: list[WorkloadProfile | str | None] = [
            b for b in self._slot_bundles if b is not None]
        new_models: list[WorkloadProfile | str | None] = [
            self._bundle_of(table, i) for i in range(len(new_names))]
        if free:
            downtime = mean = 0.0
        else:
            mean = self.reconfig.mean(old_layout, new_names, new_models, old_models, drain_s=0.0)
            downtime = self.reconfig.sample(self._reconfig_rng, old_layout, new_names,
                                            new_models, old_models, drain_s=0.0)
        lid = self._layout_id(tuple(new_slot_names), tuple(new_parts))
        handed = sim.reconfigure(changes, downtime, drain=self.drain or free, layout_id=lid)
        if free:
            sim.reconfigurations -= 1
            sim.reconfig_until = 0.0
        else:
            self._reconfigs_step += 1
            self.reconfig_log.append((mean, downtime))
        self._slot_names, self._slot_parts, self._slot_bundles = (
            new_slot_names, new_parts, new_bundles)
        self._sms = [float(p.sms) if p is not None else 0.0 for p in new_parts]
        self._current = target
        route = self._route
        for m, req in handed:
            p = route(sim.now, m, req[1])
            if p == P:
                sim.drop(req)
            else:
                sim.requeue(p, m, req)

    # ------------------------------------------------------------------ routing
    def _route_counted(self, now: float, m: int, deadline: float) -> int:
        self._counts[m] += 1
        return self._route(now, m, deadline)

    def _router(self) -> Callable[[float, int, float], int]:
        """:meth:`_route_counted` for the queries of one interval, with what only changes
        between two intervals (which slots hold each model) read once."""
        sim = self.sim
        assert sim is not None
        kind = self.placement
        if kind != "shortest_finish" and kind != "interference_aware":
            return self._route_counted
        P = self.n_slots
        counts = self._counts
        fits = sim.fits
        # Per model, the slots that hold it (in slot order): only those are compared.
        cands = [[p for p in range(P) if fits[p][m]] for m in range(self.n_models)]
        every = [[True] * len(c) for c in cands]
        finish, earliest = sim.finish_times_s, rules.earliest
        predict = sim.predicted if kind == "interference_aware" and sim.interferes else None

        def route(now: float, m: int, deadline: float) -> int:
            counts[m] += 1
            slots = cands[m]
            fin = finish(m, now, predict(m) if predict is not None else None, slots)
            # hopeless everywhere: reject, as Clockwork does
            i = earliest(fin, every[m], True, True, now, deadline)
            return slots[i] if i < len(slots) else P
        return route

    def _route(self, now: float, m: int, deadline: float) -> int:
        """The slot for a query of model ``m`` (``n_slots``: reject), by ``placement``."""
        sim = self.sim
        assert sim is not None
        P = self.n_slots
        fits, up = sim.fits, sim.up_at
        kind = self.placement
        if kind == "round_robin" or kind == "least_loaded":
            # The slots that are up, else every slot that holds the model (it waits).
            ok = [bool(fits[p][m] and up[p] <= now) for p in range(P)]
            if not any(ok):
                ok = [bool(fits[p][m]) for p in range(P)]
            if kind == "round_robin":
                p, self._rr = rules.round_robin(self._rr, ok, P)
                return p
            return rules.least_loaded(sim.queued_items, self._sms, ok)
        f = sim.predicted_slowdowns(m) if kind == "interference_aware" else None
        return rules.earliest(sim.finish_times_s(m, now, f), [fits[p][m] for p in range(P)],
                              True, True, now, deadline)

    # ------------------------------------------------------------------ observation
    def _snapshot(self) -> tuple[int, int, int, float, float, int]:
        sim = self.sim
        assert sim is not None
        c = sim.counters
        return (c.good, c.completed - c.good, c.dropped, c.energy_j, sim.backlog,
                c.arrived)

    def _reward(self) -> float:
        sim = self.sim
        assert sim is not None
        snap = self._snapshot()
        g0, l0, d0, e0, b0, _ = self._snap
        dg, dl, dd = snap[0] - g0, snap[1] - l0, snap[2] - d0
        busy = sum(sim.counters.busy_s)
        n_active = max(1, sum(sim.active))
        self._recent = [dg / (dg + dl + dd) if dg + dl + dd else 1.0,
                        dd / (dg + dl + dd) if dg + dl + dd else 0.0,
                        min(1.0, max(0.0, (busy - self._busy_snap)
                                     / (n_active * self.interval_s)))]
        self._busy_snap = busy
        self._snap = snap
        out = Outcome(dg, dl, dd, snap[3] - e0, self._reconfigs_step, snap[4] - b0)
        return float(self.reward_fn(out)) / (self.capacity_qps * self.interval_s)

    def forecast(self) -> np.ndarray:
        """Next interval's arrivals per model: the linear trend of the last 4 (>= 0)."""
        h = self._hist[-min(4, self.history):]
        k = len(h)
        mean = h.mean(axis=0)
        if k == 1:
            return mean
        x = np.arange(k, dtype=np.float64) - (k - 1) / 2
        slope = (x[:, None] * (h - mean)).sum(axis=0) / (x * x).sum()
        return np.maximum(mean + slope * (k - (k - 1) / 2), 0.0)

    def layout_scores(self, demand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(util, latency)`` of every candidate for per-model arrivals per interval
        ``demand`` (see the observation table)."""
        total = float(demand.sum())
        if total <= 0:
            return np.zeros(self.n_layouts), np.zeros(self.n_layouts)
        pi = demand / total
        with np.errstate(invalid="ignore"):
            mix_cost = np.where(pi > 0, self._cost * pi, 0.0).sum(axis=2)  # (L, P)
        cap = np.where(np.isfinite(mix_cost) & (mix_cost > 0), 1.0 / mix_cost, 0.0).sum(axis=1)
        rate = total / self.interval_s
        util = np.where(cap > 0, rate / np.maximum(cap, 1e-12), _CLIP)
        latency = (self._best_solo / self._sla_s * pi).sum(axis=1)
        return util, latency

    def switch_costs(self, current: int) -> np.ndarray:
        """Per candidate, the expected capacity lost by switching to it from ``current``: the
        mean downtime (:meth:`ReconfigModel.mean`) times the share of the current layout's SMs
        on partitions that change, over T (intervals of the whole GPU; 0 for ``current``)."""
        cached = self._switch_costs.get(current)
        if cached is not None:
            return cached.copy()
        old = list(self.candidates[current])
        t_old = self.tables[current]
        old_models: list[WorkloadProfile | str | None] = [
            self._bundle_of(t_old, i) for i in range(len(old))]
        sms = {name: float(part.sms) for name, part in zip(old, t_old.partitions, strict=True)}
        total = sum(sms[n] for n in old)
        out = np.zeros(self.n_layouts, np.float32)
        for j, new in enumerate(self.candidates):
            if j == current:
                continue
            t_new = self.tables[j]
            models: list[WorkloadProfile | str | None] = [
                self._bundle_of(t_new, i) for i in range(len(new))]
            mean = self.reconfig.mean(old, list(new), models, old_models, drain_s=0.0)
            kept = list(new)
            lost = 0.0
            for name in old:
                if name in kept:
                    kept.remove(name)
                else:
                    lost += sms[name]
            out[j] = min(mean * lost / total / self.interval_s, _CLIP)
        self._switch_costs[current] = out
        return out.copy()

    def _obs(self) -> Obs:
        sim = self.sim
        assert sim is not None
        L, M = self.n_layouts, self.n_models
        layout = np.zeros(L, np.float32)
        layout[self._current] = 1.0
        norm = 1.0 / (self.capacity_qps * self.interval_s)
        fc = self.forecast()
        util, latency = self.layout_scores(fc)
        per_model = np.zeros(M)
        for qs in sim.queued_by_model:
            per_model += qs
        queue = per_model / (self.batcher.max_batch * max(1, sum(sim.active)))
        left = max(0.0, sim.reconfig_until - sim.now) if sim.reconfiguring else 0.0
        if sim.reconfiguring and left == 0.0:
            left = self.interval_s  # still draining: at least another interval
        c = _CLIP
        obs = {
            "layout": layout,
            "rates": np.minimum(self._hist * norm, c).astype(np.float32).reshape(-1),
            "forecast": np.minimum(fc * norm, c).astype(np.float32),
            "util": np.minimum(util, c).astype(np.float32),
            "latency": np.minimum(latency, c).astype(np.float32),
            "queue": np.minimum(queue, c).astype(np.float32),
            "recent": np.array(self._recent, np.float32),
            "reconfig": np.array([min(left / self.interval_s, c)], np.float32),
            "switch_cost": self.switch_costs(self._current),
        }
        if self.time_obs:
            obs["time"] = self.clock(self._steps * self.interval_s)  # (self._t: -1 at the end)
        return obs

    def clock(self, t: float) -> np.ndarray:
        """The ``time`` observation at ``t`` seconds into the episode: the elapsed fraction of
        :attr:`nominal_episode_s` (clipped to ``[0, 1]``), ``sin`` and ``cos`` of ``2 pi (t0 +
        t) / clock_period_s``, ``t0`` the episode's start on the trace's clock (``clock_origin
        ="trace"``: the arrivals' ``start_s``) or 0 (``"episode"``)."""
        angle = 2.0 * math.pi * (self._clock0 + t) / self.clock_period_s
        return np.array([min(max(t / self.nominal_episode_s, 0.0), 1.0), math.sin(angle),
                         math.cos(angle)], np.float32)

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        assert sim is not None
        info: dict[str, Any] = sim.summary()
        # Utilisation over the partitions that existed (slots are empty in smaller layouts),
        # running batches counted up to now only.
        info["utilization"] = ((sum(sim.counters.busy_s) - sim.busy_ahead_s()) / self._slot_time
                               if self._slot_time > 0 else 0.0)
        info["reconfigurations"] = sim.reconfigurations
        info["downtime_s"] = sim.downtime_s
        info["energy_j"] = sim.counters.energy_j
        info["layout"] = self.layout_name()
        return info


__all__ = ["PLACEMENTS", "RepartitionEnv", "mps_share_vectors"]
