"""experiments/bench.py: the M/M/c yardstick is right, every section runs on tiny sizes."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from envs.sim.device import compiled as gpu_jit
from experiments import bench
from tests.conftest import run_app


@pytest.mark.parametrize("servers, load", [(1, 0.5), (4, 0.7), (8, 0.8)])
def test_mmc_reference_matches_erlang_c(servers: int, load: float) -> None:
    done, mean = bench.mmc_reference(150_000, servers, load, seed=1)
    assert done == 150_000
    assert mean == pytest.approx(bench.erlang_c_sojourn(servers, load), rel=0.03)


def test_erlang_c_closed_forms() -> None:
    assert bench.erlang_c_sojourn(1, 0.5) == pytest.approx(2.0)  # M/M/1: 1 / (mu - lambda)
    assert bench.erlang_c_sojourn(2, 0.5) == pytest.approx(4 / 3)  # 1 / (mu (1 - rho^2))


def _tiny(tmp_path: Path, memory_sizes: tuple[int, ...] = ()) -> bench.BenchResults:
    return bench.run_bench(
        env_ids=["ldsgym/PartitionPlacement-v0"], steps=300, repeats=1, step_budget_s=5.0,
        baseline_env="ldsgym/PartitionPlacement-v0",
        policies=["round_robin", "shortest_finish"], queries=800, slow_queries=200,
        mmc_servers=4, mmc_load=0.8, scaling_axes=bench.SCALING_AXES, scaling_queries=300,
        scaling_steps=200, memory_sizes=list(memory_sizes), memory_policy="shortest_finish")


MEMORY_SIZES = (2_000, 30_000)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> bench.BenchResults:
    """Every section on tiny sizes, once: its memory section (the probe without tracemalloc,
    2,000 and 30,000 queries) is also what the probe test below checks for ``traced=False``."""
    return _tiny(tmp_path_factory.mktemp("bench"), memory_sizes=MEMORY_SIZES)


def test_every_section_runs_and_writes_its_files(tmp_path: Path,
                                                 tiny_run: bench.BenchResults) -> None:
    res = tiny_run
    md = bench.write_results(res, tmp_path)
    assert (tmp_path / "bench_scaling.png").stat().st_size > 5_000
    rows = list(csv.DictReader(io.StringIO((tmp_path / "bench.csv").read_text())))
    assert list(rows[0]) == ["section", "name", "point", "metric", "value"]
    sections = {r["section"] for r in rows}
    assert sections == {"env_step", "baseline", "scaling", "memory"}
    metrics = {(r["section"], r["metric"]) for r in rows}
    for needed in [("env_step", "cost_vs_cartpole"), ("env_step", "arrivals_per_step"),
                   ("env_step", "cost_per_arrival_vs_cartpole"), ("baseline", "fast_queries_per_s"),
                   ("baseline", "ratio_vs_mmc"), ("baseline", "mmc_queries_per_s"),
                   ("scaling", "us_per_query"), ("scaling", "step_us"),
                   ("memory", "sim_growth_mb"), ("memory", "trace_mb"),
                   ("memory", "rss_peak_mb"), ("memory", "queries_per_s")]:
        assert needed in metrics, needed
    assert all(float(r["value"]) >= 0 for r in rows)
    # Both default axes, every point of each.
    points = {(r["name"], r["point"]) for r in rows if r["section"] == "scaling"}
    assert len(points) == sum(len(a.points) for a in bench.SCALING_AXES)
    for title in ("Env steps", "Baselines over a long trace", "Cost per query",
                  "Memory of one episode", "Load average"):
        assert title in md
    assert md == (tmp_path / "bench.md").read_text()


@pytest.mark.parametrize("traced", [False, True])
def test_memory_probe_separates_the_trace_from_the_simulation(
        traced: bool, request: pytest.FixtureRequest) -> None:
    # Without tracemalloc: the memory section of the shared tiny bench run (same probe).
    rows = (bench.bench_memory("ldsgym/PartitionPlacement-v0", list(MEMORY_SIZES),
                               "round_robin", traced=True) if traced
            else request.getfixturevalue("tiny_run").memory)
    paths = ["Python", "compiled"] if gpu_jit.AVAILABLE else ["Python"]
    assert [r["path"] for r in rows] == [p for p in paths for _ in range(2)]
    for small, large in zip(rows[::2], rows[1::2], strict=True):
        assert large["trace_mb"] == pytest.approx(15 * small["trace_mb"], rel=0.01)
        assert large["method"] == ("tracemalloc" if traced else "rss")
        # What the simulation adds is bounded by its chunk of the trace and the requests in
        # the system, not by the episode length (nan where the platform cannot tell).
        assert not large["sim_growth_mb"] > 2.0
        assert large["completed"] > 0 and large["queries_per_s"] > 0


def test_arrivals_per_step_tells_decision_steps_from_interval_steps() -> None:
    one = pytest.approx(1.0, abs=1.5 / 300)  # the arrival at reset counts too
    assert bench.arrivals_per_step("ldsgym/PartitionPlacement-v0", 300) == one
    assert bench.arrivals_per_step("ldsgym/PartitionPlacement-v0", 300, episode_queries=50) \
        == one  # resets on the way
    assert bench.arrivals_per_step("ldsgym/Repartition-v0", 3) > 100  # a step is an interval
    # A ShardPlacement step is a whole request: it counts the sub-requests (one per shard).
    assert bench.arrivals_per_step("ldsgym/ShardPlacement-v0", 40) == pytest.approx(8.0, abs=0.3)


def test_step_breakdown_parts_add_up_and_the_timers_come_off() -> None:
    from envs.sim.dlrm import ShardSim

    names = ("_make_subrequests", "route", "shed", "advance")
    before = [ShardSim.__dict__[name] for name in names]
    row = bench.step_breakdown("ldsgym/ShardRouting-v0", 400)
    assert [ShardSim.__dict__[name] for name in names] == before
    parts = row["lookups_us"] + row["simulation_us"] + row["adapter_us"]
    assert parts == pytest.approx(row["step_us"], rel=1e-9)
    assert min(row["lookups_us"], row["simulation_us"], row["adapter_us"]) > 0
    # The floor is per sub-request: a request's draws shared by its 8 sub-requests.
    assert row["sub_requests_per_step"] == pytest.approx(1.0, abs=0.01)
    assert 0 < row["lookup_floor_us"] < bench.lookup_floor_us("ldsgym/ShardRouting-v0", 20)
    assert 0 < row["api_floor_us"] < row["step_us"] and 0 < row["compiled_us"] < row["step_us"]


def test_compiled_us_times_the_kernels_and_puts_them_back() -> None:
    import importlib

    import numpy as np

    from envs.sim import jit
    from envs.sim.dlrm import kernels, segment

    if not jit.AVAILABLE:
        pytest.skip("LDSGYM_NO_JIT=1 or no numba: no compiled kernels to time")

    def kernels_now() -> list[object]:
        out: list[object] = [np.power]
        for name in bench.KERNEL_MODULES:
            mod = importlib.import_module(name)
            out += [v for v in vars(mod).values() if hasattr(v, "py_func")]
        return out

    before = kernels_now()
    assert hasattr(segment.run_segment, "signatures") and hasattr(kernels.routing_obs,
                                                                  "signatures")
    inside, step = bench.compiled_us("ldsgym/ShardRouting-v0", 300)
    assert kernels_now() == before  # every kernel and numpy's power restored
    # The compiled kernels (the event loop, the draws, the split) are part of a step, not
    # all of it: the adapter and the arrivals are Python.
    assert 0 < inside < step
    # A sharded step's compiled part is microseconds: the lookups' draws alone are ~7,400
    # float32 uniforms and a power a request.
    assert inside > 1.0


def test_api_floor_env_has_the_envs_observation_and_costs_less_than_its_step() -> None:
    import gymnasium as gym
    import numpy as np

    env = gym.make("ldsgym/ShardRouting-v0").unwrapped
    obs, info = env.reset(seed=0)
    floor = bench.ApiFloorEnv(obs, info, int(env.action_space.n))
    got, reward, term, trunc, got_info = floor.step(0)
    assert list(got) == list(obs) and not term and not trunc and reward == 0.0
    assert all(got[k].shape == np.asarray(obs[k]).shape and got[k].dtype == np.float32
               for k in obs)
    assert got_info == info and got_info is not floor.step(0)[4]  # a new dict each step
    assert floor.action_masks().all() and len(floor.action_masks()) == env.action_space.n
    masks, step = env.action_masks, env.step
    t0 = time.process_time()
    for i in range(300):
        mask = masks()
        step(int(np.flatnonzero(mask)[i % int(mask.sum())]))
    env_us = (time.process_time() - t0) / 300 * 1e6
    assert 0 < bench.api_floor_us("ldsgym/ShardRouting-v0", 2000) < env_us


def test_scaling_axes_are_one_entry_each_and_unknown_envs_are_skipped() -> None:
    extra = bench.ScalingAxis("nodes", "ldsgym/NoSuchEnv-v0", {"4": {"nodes": 4}})
    rows = bench.bench_scaling([extra, bench.SCALING_AXES[0]], queries=200, steps=100,
                               repeats=1)
    assert {r["axis"] for r in rows} == {bench.SCALING_AXES[0].name}
    assert rows[0]["query_rel"] == 1.0 and rows[0]["step_rel"] == 1.0


def test_bench_app_end_to_end(tmp_path: Path) -> None:
    res = run_app("experiments.bench", f"out_dir={tmp_path}", "repeats=1", "steps=200",
                  "envs=[ldsgym/PartitionPlacement-v0]", "baselines.queries=500",
                  "baselines.step_loop_queries=100", "baselines.policies=[round_robin]",
                  "scaling.queries=200", "scaling.steps=100", "scaling.axes=[MIG slices]",
                  "memory.sizes=[1000]", "traces.generated=50000", "traces.replay_rows=20000",
                  "breakdown.envs=[ldsgym/ShardRouting-v0]", "breakdown.steps=200",
                  "repartition.episode_s=3", "repartition.interval_s=1",
                  f"hydra.run.dir={tmp_path}/h")
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("bench.csv", "bench.md", "bench_scaling.png"):
        assert (tmp_path / name).is_file(), name
    md = (tmp_path / "bench.md").read_text()
    assert "generate `poisson`" in md and "replay a 20,000-row CSV" in md
    sections = {r.split(",")[0] for r in (tmp_path / "bench.csv").read_text().split()}
    assert {"traces", "breakdown"} <= sections
    assert "Where a sharded-serving step's time goes" in md
    row = next(line for line in md.splitlines()
               if line.startswith("| `ldsgym/ShardRouting-v0` | 1.0"))
    assert row.count("|") == 13 and row.rstrip(" |").endswith("x")  # ... | floor | bound |
    assert {"compiled_us", "api_floor_us"} <= {
        r.split(",")[3] for r in (tmp_path / "bench.csv").read_text().split()[1:]
        if r.startswith("breakdown,")}
    assert "A Repartition episode" in md and "repartition" in sections
    assert "| MIG | compiled |" in md and "| MPS | compiled |" in md
    bad = run_app("experiments.bench", "repartition.episode_s=5", "repartition.interval_s=0",
                  f"out_dir={tmp_path}/z", f"hydra.run.dir={tmp_path}/h4")
    assert bad.returncode == 2 and "interval_s" in bad.stderr
    bad = run_app("experiments.bench", "repartition.sharing=[mig,ts]", f"out_dir={tmp_path}/y",
                  f"hydra.run.dir={tmp_path}/h5")
    assert bad.returncode == 2 and "repartition.sharing" in bad.stderr
    assert not (tmp_path / "y").exists()
    bad = run_app("experiments.bench", "clock=tsc", f"out_dir={tmp_path}/w",
                  f"hydra.run.dir={tmp_path}/h6")
    assert bad.returncode == 2 and "clock: 'tsc'" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "w").exists()
    bad = run_app("experiments.bench", "baselines.policies=[nope]", f"out_dir={tmp_path}/x",
                  f"hydra.run.dir={tmp_path}/h2")
    assert bad.returncode == 2 and "nope" in bad.stderr
    bad = run_app("experiments.bench", "breakdown.envs=[ldsgym/PartitionPlacement-v0]",
                  f"out_dir={tmp_path}/y", f"hydra.run.dir={tmp_path}/h3")
    assert bad.returncode == 2 and "breakdown.envs" in bad.stderr


def test_profile_mode_writes_the_call_tree_and_the_hot_spots(tmp_path: Path) -> None:
    res = run_app("experiments.bench", "profile.env=ldsgym/PartitionPlacement-v0",
                  "profile.steps=300", f"out_dir={tmp_path}", f"hydra.run.dir={tmp_path}/h")
    assert res.returncode == 0, res.stderr[-3000:]
    text = (tmp_path / "profile.txt").read_text()
    assert "PartitionPlacementEnv.step" in text and "By own time (hot spots)" in text
    assert (tmp_path / "profile.html").stat().st_size > 1_000
    assert not (tmp_path / "bench.md").exists()  # profiling measures nothing else
    bad = run_app("experiments.bench", "profile.env=ldsgym/Nope-v0", f"out_dir={tmp_path}/x",
                  f"hydra.run.dir={tmp_path}/h2")
    assert bad.returncode == 2 and "profile.env" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_step_goal_counts_interval_steps_per_arrival_and_names_the_rest() -> None:
    def row(env: str, cost: float, arrivals: float) -> dict[str, object]:
        return {"env": env, "steps_per_s": 1.0, "step_only_per_s": 1.0,
                "cartpole_steps_per_s": cost, "cost_vs_cartpole": cost,
                "arrivals_per_step": arrivals, "cost_per_arrival_vs_cartpole": cost / arrivals}

    res = bench.BenchResults(env_steps=[row("a", 2.0, 1.0), row("interval", 900.0, 4000.0),
                                        row("slow", 6.5, 1.0), row("request", 60.0, 8.0)])
    goal = next(x for x in bench.to_markdown(res).splitlines() if x.startswith("Goal"))
    assert "met by 1 of 4" in goal and "by 1 more per simulated arrival" in goal
    assert "`interval` 0.23x" in goal
    assert goal.endswith("**not met** by `slow` 6.5x, `request` 60.0x (7.5x per sub-request).")


def test_repartition_section_times_both_paths_on_the_same_episode() -> None:
    from envs.sim.device import compiled_shared

    rows = bench.bench_repartition(8.0, 1.0, "mix-swing", 1.0, repeats=1,
                                   sharings=("mig", "mps"))
    paths = ["compiled", "Python"] if compiled_shared.AVAILABLE else ["Python"]
    assert [(r["sharing"], r["path"]) for r in rows] == [(s, p) for s in ("mig", "mps")
                                                          for p in paths]
    assert all(r["equal"] for r in rows) or not compiled_shared.AVAILABLE
    for sharing in ("mig", "mps"):
        mine = [r for r in rows if r["sharing"] == sharing]
        assert len({r["queries"] for r in mine}) == 1 and mine[0]["queries"] > 40_000
        assert mine[0]["reconfigurations"] >= 1 and mine[0]["steps"] == 8
    for r in rows:
        assert r["hour_s"] == pytest.approx((r["reset_s"] + r["steps_s"]) * 450)
    res = bench.BenchResults(repartition=rows, meta={"rp_trace": "mix-swing", "rp_load": 1.0})
    md = bench.to_markdown(res)
    assert "| MPS | compiled |" in md or not compiled_shared.AVAILABLE
    assert ("Goal (issue 16)" in md) == compiled_shared.AVAILABLE
    if compiled_shared.AVAILABLE:
        goal = next(x for x in md.splitlines() if x.startswith("Goal (issue 16)"))
        assert "MIG in at most 10 s" in goal and "MPS in at most 30 s" in goal
    # The CSV tells the two sharing modes apart (its point column).
    csv_rows = [x.split(",") for x in bench.to_csv(res).splitlines()[1:]]
    assert {(x[1], x[2]) for x in csv_rows} == {(p, s) for s in ("mig", "mps") for p in paths}


def test_the_cpu_clock_leaves_out_waiting_and_every_timed_section_reads_the_chosen_clock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Why CPU time is the default: on a shared machine a process waiting for a core (here:
    # asleep) is not charged for it; wall time is.
    assert bench._timed(bench.CLOCKS["cpu"], time.sleep, 0.2) < 0.1
    assert bench._timed(bench.CLOCKS["wall"], time.sleep, 0.2) >= 0.2
    reads: dict[str, int] = {}

    def counting(name: str) -> bench.Clock:
        def clock() -> float:
            reads[name] = reads.get(name, 0) + 1
            return time.process_time()
        return clock

    for section in ("env", "scaling", "breakdown", "repartition", "baselines"):
        monkeypatch.setitem(bench.CLOCKS, section, counting(section))
    for section in ("env", "scaling", "breakdown", "repartition", "baselines"):
        res = bench.run_bench(
            env_ids=["ldsgym/PartitionPlacement-v0"] if section == "env" else [], steps=200,
            repeats=1, step_budget_s=5.0, baseline_env="ldsgym/PartitionPlacement-v0",
            policies=["round_robin"] if section == "baselines" else [], queries=300,
            slow_queries=100, mmc_servers=2, mmc_load=0.5,
            scaling_axes=bench.SCALING_AXES[:1] if section == "scaling" else [],
            scaling_queries=100, scaling_steps=100, memory_sizes=[], memory_policy="round_robin",
            breakdown_envs=["ldsgym/ShardRouting-v0"] if section == "breakdown" else [],
            breakdown_steps=100, repartition_episode_s=2.0 if section == "repartition" else 0,
            repartition_interval_s=1.0, repartition_python=False, clock=section)
        assert res.meta["clock"] == section
        assert reads.get(section, 0) >= 3, (section, reads)
    assert "timed in wall time" in bench.to_markdown(bench.BenchResults(meta={"clock": "wall"}))
