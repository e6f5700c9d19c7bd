"""The cluster router: routed arrivals on a device, the cluster simulator, ClusterRouting."""

from __future__ import annotations

import numpy as np
import pytest

from envs.sim.device.serving import BatcherConfig
from envs.sim.device.shared import SharedGpuSim
from traces.arrivals import Arrivals

_LAT = [[[0.002 + 0.0005 * b for b in range(1, 9)] for _ in range(2)] for _ in range(3)]
_BATCHER = BatcherConfig(max_batch=8, max_queue_delay_s=0.001, queue_capacity=16)


def _trace(n: int, seed: int = 0) -> Arrivals:
    rng = np.random.default_rng(seed)
    return Arrivals(np.cumsum(rng.exponential(1 / 1500.0, n)),
                    rng.integers(0, 2, n).astype(np.int32), np.ones(n, np.int32),
                    np.full(n, 20.0), np.zeros(n, np.int8), ("a", "b"))


def _empty() -> Arrivals:
    return Arrivals(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0),
                    np.zeros(0, np.int8), ("a", "b"))


def _counters(sim: SharedGpuSim) -> tuple:
    c = sim.counters
    return (c.arrived, c.completed, c.good, c.dropped_rejected, c.dropped_overflow,
            c.dropped_expired, c.busy_s, c.energy_j, c.latency.counts, c.latency.total_s,
            sim.backlog, sim.now)


def _shortest(sim: SharedGpuSim) -> int:
    return min(range(sim.n_partitions), key=lambda p: (sim.queued_items[p], p))


def _doubling(layout_id: object, jobs: tuple) -> list[float]:
    busy = sum(j is not None for j in jobs)
    return [2.0 if busy > 1 else 1.0] * len(jobs)


@pytest.mark.parametrize("slowdown", [None, _doubling])
def test_routed_arrivals_equal_placing_from_the_trace(slowdown: object) -> None:
    """A passive device fed with ``arrive`` at the trace's times is the trace-driven device."""
    trace = _trace(5000)
    kw = {"power_w": [(10.0, 50.0)] * 3, "slowdown": slowdown}
    a = SharedGpuSim(_LAT, [[True, True]] * 3, trace, _BATCHER, **kw)
    a.advance()
    a.run(lambda now, m, d, s=a: _shortest(s))
    a.finalize_energy()
    b = SharedGpuSim(_LAT, [[True, True]] * 3, _empty(), _BATCHER, **kw)
    times, models = trace.time_s.tolist(), trace.model.tolist()
    sla = trace.sla_ms.tolist()

    def never(now: float, m: int, d: float) -> int:
        raise AssertionError("a passive device has no arrivals of its own")

    for t, m, s in zip(times, models, sla, strict=True):
        b.run_until(never, t)
        b.arrive(_shortest(b), m, (t, t + s * 1e-3, 1e3 / s, 1, 0))
        c = b.counters
        assert c.arrived == c.completed + c.dropped + c.in_system
    b.advance()
    b.finalize_energy()
    assert _counters(a) == _counters(b)
    assert b.counters.completed > 4000 and b.counters.in_system == 0


@pytest.mark.parametrize("slowdown", [None, _doubling])
def test_deliver_is_run_passive_then_arrive(slowdown: object) -> None:
    """``deliver(t, p, m, req)`` (what the cluster calls) leaves a passive device as
    ``run_passive(t)`` then ``arrive(p, m, req)`` do, bit for bit."""
    trace = _trace(3000, seed=1)
    kw = {"power_w": [(10.0, 50.0)] * 3, "slowdown": slowdown}
    a = SharedGpuSim(_LAT, [[True, True]] * 3, _empty(), _BATCHER, **kw)
    b = SharedGpuSim(_LAT, [[True, True]] * 3, _empty(), _BATCHER, **kw)
    for t, m, s in zip(trace.time_s.tolist(), trace.model.tolist(), trace.sla_ms.tolist(),
                       strict=True):
        req = (t, t + s * 1e-3, 1e3 / s, 1, 0)
        p = _shortest(a)
        a.run_passive(t)
        a.arrive(p, m, req)
        b.deliver(t, p, m, req)
        assert _counters(a) == _counters(b)
        assert (a.queued_items, a.busy_until, a._backlog_rate) == (
            b.queued_items, b.busy_until, b._backlog_rate)
    a.advance()
    b.advance()
    assert _counters(a) == _counters(b)
    assert b.counters.completed > 2000


def test_arrive_checks_the_slot() -> None:
    sim = SharedGpuSim(_LAT, [[True, False]] * 3, _empty(), _BATCHER)
    with pytest.raises(ValueError):
        sim.arrive(0, 1, (0.0, 0.1, 10.0, 1, 0))
    with pytest.raises(ValueError):
        sim.arrive(3, 0, (0.0, 0.1, 10.0, 1, 0))
    assert sim.counters.arrived == 0


# ----------------------------------------------------------------------------- the cluster
import gymnasium as gym  # noqa: E402

import envs  # noqa: E402,F401
from envs.presets import get_workload  # noqa: E402
from envs.sim.cluster import ClusterSim, DeviceGroup, build_tables  # noqa: E402
from envs.sim.cluster.spec import base_model, warm_residents  # noqa: E402
from hwmodels.workloads import build_profile  # noqa: E402

_MIX = get_workload("cluster-zipf")
_PROFILES = [build_profile(base_model(n)) for n in _MIX.names]


def _tables(*groups: DeviceGroup):
    return build_tables(groups, _PROFILES, _MIX.probabilities, 8)


def _queries(times: list[float], models: list[int], sla_ms: float = 1e5) -> Arrivals:
    n = len(times)
    return Arrivals(np.array(times), np.array(models, np.int32), np.ones(n, np.int32),
                    np.full(n, sla_ms), np.zeros(n, np.int8), _MIX.names)


def test_the_workload_has_20_models_zipf_and_fine_tuned_variants() -> None:
    assert len(_MIX.names) >= 20
    p = _MIX.probabilities
    assert np.all(np.diff(p) < 0)  # Zipf, most popular first
    variants = [n for n in _MIX.names if "@" in n]
    assert len(variants) >= 8 and all(base_model(v) in _MIX.names for v in variants)


def test_a_load_delays_the_query_by_the_modelled_load_time() -> None:
    tab = _tables(DeviceGroup("t4", link="ethernet-100g"))
    m = _MIX.index("gpt2-xl-decode")
    sim = ClusterSim(tab, _queries([0.001], [m]), BatcherConfig(), [[]])
    sim.advance()
    assert sim.can_route(0, m) and sim.load_wait_s(0, m) == pytest.approx(tab.load_time_s(0, m))
    sim.route(0)
    sim.advance()  # drain
    load = tab.weight_bytes[m] / tab.copy_bps[0] + tab.load_fixed_s[0]
    # 3.1 GB over PCIe Gen3 at 80% (12.6 GB/s) + 0.5 s: about 0.75 s.
    assert 0.7 < load < 0.8 and sim.loads == 1
    solo = tab.latency[0][0][m][0]
    assert sim.latency.n == 1
    assert sim.latency.total_s == pytest.approx(load + solo, rel=1e-9)
    info = sim.summary()
    assert info["completed"] == 1 and info["good"] == 1 and info["in_system"] == 0


def test_a_resident_model_needs_no_load_and_pays_the_network_hop() -> None:
    tab = _tables(DeviceGroup("t4", link="ethernet-10g"))
    m = _MIX.index("resnet50")
    sim = ClusterSim(tab, _queries([0.0], [m]), BatcherConfig(), [[m]])
    sim.advance()
    assert sim.load_wait_s(0, m) == 0.0
    sim.route(0)
    sim.advance()
    # 150 KB at 1.125 GB/s + 50.3 us: about 184 us on the wire.
    assert tab.hop_s[0][m] == pytest.approx(50.3e-6 + 224 * 224 * 3 / 1.125e9)
    # The batcher waits max_queue_delay (2 ms) from the query's arrival at the router.
    wait = max(tab.hop_s[0][m], BatcherConfig().max_queue_delay_s)
    assert sim.latency.total_s == pytest.approx(wait + tab.latency[0][0][m][0])
    assert sim.loads == 0


def test_lru_eviction_order() -> None:
    tab = _tables(DeviceGroup("t4"))  # 16 GB: not all 22 models (22.5 GB with workspace)
    names = ["gpt2-xl-decode", "gpt2-xl-decode@ft1", "gpt2-xl-decode@ft2", "bert-base",
             "gpt2-large-decode@ft1", "gpt2-large-decode@ft2", "resnet50", "gpt2-large-decode"]
    a, b, c, d, l1, l2, e, x = (_MIX.index(n) for n in names)
    # 3 x 3.74 GB + 0.26 + 2 x 1.86 = 15.2 GB resident; e (0.06) fits, x (1.86) does not.
    sim = ClusterSim(tab, _queries([0.0] * 4, [a, e, x, x]), BatcherConfig(),
                     [[a, b, c, d, l1, l2]])
    sim.advance()
    sim.route(0)  # a: resident, becomes the most recently used
    assert list(sim.resident[0]) == [b, c, d, l1, l2, a] and sim.loads == 0
    sim.advance()
    sim.route(0)  # e fits without evicting anything
    assert list(sim.resident[0]) == [b, c, d, l1, l2, a, e] and sim.evictions == 0
    sim.advance()
    free = tab.slot_mem_bytes[0] - sim.mem_used[0]
    assert free < tab.footprint_bytes[x] < free + tab.footprint_bytes[b]
    sim.route(0)  # x needs room: b (least recent) goes, and that is enough
    assert list(sim.resident[0]) == [c, d, l1, l2, a, e, x] and sim.evictions == 1
    assert sim.loads == 2  # e and x
    sim.advance()
    sim.route(0)  # x again: resident (still loading), no further load
    assert sim.loads == 2
    sim.advance()
    assert sim.done and sim.summary()["completed"] == 4


def test_a_slot_whose_models_are_all_busy_cannot_take_another() -> None:
    tab = _tables(DeviceGroup("t4"))
    xl = [_MIX.index(n) for n in ("gpt2-xl-decode", "gpt2-xl-decode@ft1",
                                  "gpt2-xl-decode@ft2")]
    big = _MIX.index("gpt2-large-decode@ft3")
    # Three GPT-2 XL copies and two GPT-2 large copies: 14.9 GB of 16; big needs 1.86.
    larges = [_MIX.index(n) for n in ("gpt2-large-decode", "gpt2-large-decode@ft1")]
    sim = ClusterSim(tab, _queries([0.0] * 6, [*xl, *larges, big]), BatcherConfig(),
                     [[*xl, *larges]])
    for _ in range(5):  # one query of each resident model, routed: all five are in transit
        sim.advance()
        sim.route(0)
    sim.advance()
    m = sim.pending_query()[0]
    assert m == big and not sim.can_route(0, big)
    assert sim.can_route(0, xl[0])  # a resident model always can
    with pytest.raises(ValueError):
        sim.route(0)
    assert big not in sim.resident[0]
    sim.reject()
    sim.advance()
    info = sim.summary()
    assert info["arrived"] == 6 == info["completed"] + info["dropped"]


def test_warm_start_packs_popular_models_first() -> None:
    tab = _tables(DeviceGroup("t4"), DeviceGroup("h100-sxm"))
    res = warm_residents(tab, range(len(_PROFILES)))
    assert sorted(res[1]) == list(range(len(_PROFILES)))  # 80 GB: everything
    assert 0 < len(res[0]) < len(_PROFILES) and 0 in res[0]
    used = sum(tab.footprint_bytes[m] for m in res[0])
    assert used <= tab.slot_mem_bytes[0]


def test_env_conserves_with_loads_in_flight_and_masks_are_memory() -> None:
    env = gym.make("ldsgym/ClusterRouting-v0", load=1.2, episode_queries=1500).unwrapped
    obs, info = env.reset(seed=4)
    rng = np.random.default_rng(0)
    saw_transit = saw_masked = False
    while True:
        assert info["arrived"] == info["completed"] + info["dropped"] + info["in_system"]
        saw_transit |= info["in_transit"] > 0
        mask = env.action_masks()
        assert mask[-1] and mask.any()
        m = int(np.argmax(obs["model"]))
        fits = [env.tables.fits[d][p][m] for d, p in env.tables.slots]
        assert all(f or not v for f, v in zip(fits, mask[:-1], strict=True))
        saw_masked |= not mask[:-1].all()
        obs, _, _, trunc, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        if trunc:
            break
    assert saw_transit
    assert info["arrived"] == 1500 == info["completed"] + info["dropped"]
    assert info["loads"] > 0 and info["evictions"] > 0
    assert info["energy_per_query_j"] > 0 and info["cost_per_query_usd"] > 0


def test_reward_cost_term_is_additive() -> None:
    from envs.rewards import GoodputReward, Outcome

    r = GoodputReward(energy_weight=0.01, cost_weight=1000.0)
    assert r(Outcome(5, 1, 0, 30.0, 0, 0.0, 1e-4)) == pytest.approx(3.6)
    plain = GoodputReward(energy_weight=0.01)
    assert plain.value(5, 1, 0, 30.0, 0, 0.0) == r.value(5, 1, 0, 30.0, 0, 0.0)


@pytest.mark.parametrize("name", ["random", "round_robin", "least_loaded", "power_of_two",
                                  "earliest_finish", "cheapest_meeting_sla",
                                  "static_assignment", "cache_aware"])
def test_each_baseline_runs_an_episode(name: str) -> None:
    from agents.baselines import make_baseline
    from agents.evaluation import run_episode

    env = gym.make("ldsgym/ClusterRouting-v0", load=0.8, episode_queries=600)
    r = run_episode(env, make_baseline(name, "ldsgym/ClusterRouting-v0"), seed=2)
    assert r["arrived"] == 600 == r["completed"] + r["dropped"]
    assert 0.2 < r["sla_attainment"] <= 1.0 and r["goodput"] > 0
    assert r["energy_per_query_j"] > 0


def test_informed_routers_beat_random_at_high_load() -> None:
    from agents.baselines import baselines_for
    from agents.evaluation import evaluate

    eid = "ldsgym/ClusterRouting-v0"
    names = ["random", "least_loaded", "earliest_finish", "cache_aware"]
    res = evaluate(lambda: gym.make(eid, load=1.2, episode_queries=800),
                   {n: baselines_for(eid)[n]() for n in names}, seeds=[1, 2], progress=False)
    sla = {n: res[n].mean("sla_attainment") for n in names}
    assert sla["least_loaded"] > sla["random"]
    assert sla["earliest_finish"] > sla["least_loaded"] + 0.1
    assert sla["cache_aware"] > sla["random"] + 0.1


@pytest.mark.parametrize("preset, devices, slots", [("8", 8, 13), ("16", 16, 26), ("64", 64, 104)])
def test_cluster_presets(preset: str, devices: int, slots: int) -> None:
    from envs.sim.cluster import CLUSTER_PRESETS

    tab = _tables(*CLUSTER_PRESETS[preset])
    assert len(tab.device_names) == devices and len(tab.slots) == slots
    # Capacity adds up over devices: the 64-device cluster is four 16-device ones.
    if preset == "64":
        assert tab.capacity_qps == pytest.approx(4 * _tables(*CLUSTER_PRESETS["16"]).capacity_qps)


def test_best_fit_plan_packs_popular_models_first() -> None:
    from agents.cluster_baselines import best_fit_plan

    # Slots of 10 and 4; models (popularity, size): a (0.6, 3), b (0.3, 5), c (0.1, 4).
    plan = best_fit_plan([0.6, 0.3, 0.1], [3.0, 5.0, 4.0], [10.0, 4.0])
    # First pass: a gets round(0.6 x 2) = 1 replica on the tighter slot that holds it (4 -> 1
    # left); b and c one each on slot 0 (10 -> 5 -> 1). Fill: nothing else fits.
    assert plan == [[False, True], [True, False], [True, False]]
    plan = best_fit_plan([0.5, 0.5], [1.0, 1.0], [3.0, 3.0])
    assert plan == [[True, True], [True, True]]  # the fill pass replicates everywhere



def test_decision_credit_is_booked_at_routing_and_keeps_the_episode_return() -> None:
    """The credit books +1 (finish estimate within the deadline) or -1 (not) at the routing
    decision, withdraws it at the deadline, and leaves the episode's return unchanged."""
    kw = {"trace": "zipf-shift", "load": 1.0, "episode_queries": 400}
    plain = gym.make("ldsgym/ClusterRouting-v0", **kw).unwrapped
    shaped = gym.make("ldsgym/ClusterRouting-v0", decision_credit=1.0, **kw).unwrapped
    obs, _ = plain.reset(seed=4)
    shaped.reset(seed=4)
    t0 = plain.sim.now
    first_deadline = t0 + float(plain.mix.sla_ms.min()) * 1e-3  # no deadline passes before
    rng = np.random.default_rng(0)
    r0, r1, early = [], [], []
    while True:
        mask = plain.action_masks()
        a = int(rng.choice(np.flatnonzero(mask)))  # random: loads, rejections, hits
        predicted = 0.0 if a == plain.n_slots else (1.0 if obs["finish"][a] <= 1.0 else -1.0)
        obs, x0, _, trunc, _ = plain.step(a)
        _, x1, _, trunc1, _ = shaped.step(a)
        assert trunc == trunc1
        r0.append(x0)
        r1.append(x1)
        if plain.sim.now < first_deadline:
            early.append((x1 - x0, predicted))
        if trunc:
            break
    assert sum(r1) == pytest.approx(sum(r0), abs=1e-6)
    assert not np.allclose(r0, r1)
    assert len(early) > 20
    for got, want in early:
        assert got == pytest.approx(want)
    assert {w for _, w in early} == {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("credit", [-1.0, float("nan"), float("inf")])
def test_decision_credit_must_be_finite_and_non_negative(credit: float) -> None:
    with pytest.raises(ValueError, match="decision_credit"):
        gym.make("ldsgym/ClusterRouting-v0", decision_credit=credit, episode_queries=10)


def test_mimd_study_clones_a_baseline_and_trains_with_the_decision_credit() -> None:
    from hydra import compose, initialize_config_dir

    from experiments.common import CONF_DIR, env_spec
    from experiments.warm_start import warm_start_settings

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=mimd_study",
                                          "env.kwargs.episode_queries=50"])
    spec = env_spec(cfg)
    ws = warm_start_settings(cfg, spec.env_id)
    assert ws is not None and ws.teacher == "cheapest_meeting_sla"
    env = spec.make().unwrapped
    assert env.decision_credit == 1.0
    assert cfg.eval.env_overrides.trace == "servegen-m-large-shift-test"


def test_mimd_study_selects_its_checkpoint_on_the_training_windows() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from experiments.common import CONF_DIR, env_spec
    from experiments.selection import select_settings

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=mimd_study",
                                          "env.kwargs.episode_queries=50"])
    spec = env_spec(cfg)
    sel = select_settings(cfg, spec)
    assert sel is not None
    # validation on the env's own (training) trace, never the held-out split evaluated
    assert sel.traces == (None,) and cfg.trace.base == "servegen-m-large"
    assert sel.loads == (1.0, 1.2) and sel.score == "min"
    assert not set(sel.seeds) & {int(s) for s in cfg.eval.seeds}
    # the lower-variance fine-tune: eight envs, 512-sample batches, early-stopped epochs
    assert cfg.n_envs == 8
    agent = instantiate(cfg.agent, _convert_="all")
    assert agent.keywords["target_kl"] == 0.01 and agent.keywords["batch_size"] == 512


def test_a_cluster_from_config_can_hold_a_cpu_node() -> None:
    """Deliverable 1's CPU node: a device group given as config (a mapping, as in YAML) naming
    a CPU spec (``conf/hw/xeon-8380h-4s.yaml``) is a slot like any GPU's; queries routed there
    are served, slower than on the T4 beside it, and every query is accounted for."""
    from hwmodels.specs import load_device

    groups = [{"hw": "t4", "layout": ["full"], "price_per_hour": 0.35, "link": "ethernet-25g",
               "count": 1},
              {"hw": "xeon-8380h-4s", "layout": ["full"], "price_per_hour": 2.0,
               "link": "ethernet-25g", "count": 1}]
    env = gym.make("ldsgym/ClusterRouting-v0", cluster=groups, episode_queries=300, load=0.3)
    assert [load_device(g.hw).kind for g in env.unwrapped.groups] == ["gpu", "cpu"]
    latency = {}
    for slot in (0, 1):
        env.reset(seed=1)
        done, served_there = False, 0
        while not done:
            mask = env.unwrapped.action_masks()
            action = slot if mask[slot] else int(np.flatnonzero(mask)[0])
            served_there += action == slot
            _, _, term, trunc, info = env.step(action)
            done = term or trunc
        assert served_there > 250
        assert info["arrived"] == 300 == info["completed"] + info["dropped"] + info["in_system"]
        assert info["completed"] > 0
        latency[slot] = info["mean_latency_ms"]
    assert latency[1] > 1.5 * latency[0]  # the CPU serves, more slowly (measured 43 vs 18 ms)
