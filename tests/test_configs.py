"""Every config in conf/ composes, and every hw/workload/trace option builds an environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from experiments.common import CONF_DIR, env_spec
from hwmodels.partitions import enumerate_layouts
from traces.paths import shared_dir

GROUPS = {p.name: sorted(x.stem for x in p.glob("*.yaml")) for p in CONF_DIR.iterdir()
          if p.is_dir()}
PRIMARY = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


@pytest.mark.parametrize("name", PRIMARY)
def test_primary_configs_compose(name: str) -> None:
    extra = ["run_dir=/tmp/x"] if name == "export" else []
    cfg = _compose(name, extra)
    assert "env" in cfg or name not in ("train", "evaluate", "export")


OPTIONS = [(g, o) for g, opts in GROUPS.items() for o in opts if g in
           ("env", "hw", "workload", "trace", "agent", "experiment")]


@pytest.mark.parametrize("group, option", OPTIONS)
def test_group_option_composes_with_train(group: str, option: str) -> None:
    cfg = _compose("train", [f"{group}={option}"])
    assert cfg is not None


ENV_OPTIONS = [(g, o) for g, o in OPTIONS if g in ("hw", "workload", "trace", "env")]


@pytest.mark.parametrize("group, option", ENV_OPTIONS)
def test_group_option_builds_an_environment(group: str, option: str) -> None:
    if (group == "trace" and option.startswith(("azure-", "servegen-", "mixture-real"))
            and shared_dir() is None):
        pytest.skip(f"trace={option} replays the shared real traces (../shared is absent)")
    overrides = [f"{group}={option}", "env.kwargs.episode_queries=50"]
    cfg = _compose("train", overrides)
    if group == "hw":  # a layout that exists on this device
        mig = cfg.hw.get("mig")
        layout = (["full"] if mig is None else
                  next(lay for lay in enumerate_layouts(mig) if len(lay) >= 2))
        cfg = _compose("train", [*overrides, f"env.kwargs.layout=[{','.join(layout)}]"])
    spec = env_spec(cfg)
    env = spec.make()
    obs, _info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()


def test_conf_groups_mirror_design() -> None:
    assert {"env", "agent", "hw", "trace", "workload", "experiment"} <= set(GROUPS)
    assert Path(CONF_DIR / "train.yaml").is_file()
