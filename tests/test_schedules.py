"""agents.schedules.LateLinearDecay: values, bad arguments, and use through the agent config."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from agents.schedules import LateLinearDecay
from experiments.common import CONF_DIR


def test_constant_then_linear_to_end() -> None:
    s = LateLinearDecay(3e-4, 3e-5, 2 / 3)
    # progress_remaining 1 -> 0 as training goes on
    assert s(1.0) == s(0.5) == s(1 / 3 + 1e-9) == 3e-4
    assert s(0.0) == pytest.approx(3e-5)
    # half-way through the decay part: the mean of value and end
    assert s(1 / 6) == pytest.approx((3e-4 + 3e-5) / 2)
    values = [s(1 - k / 100) for k in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[80] < 3e-4  # decaying after 2/3
    # no decay part left: decay_from 0 is a plain linear schedule from the start
    assert LateLinearDecay(1.0, 0.0, 0.0)(0.25) == pytest.approx(0.25)
    # past the end (SB3 may overshoot total_timesteps by part of a rollout): stays at end
    assert s(-0.1) == pytest.approx(3e-5)
    assert "decay_from=" in repr(s)


@pytest.mark.parametrize(("args", "name"), [
    ((0.0, 0.0, 0.5), "value"), ((1e-3, 2e-3, 0.5), "end"), ((1e-3, -1.0, 0.5), "end"),
    ((1e-3, 0.0, 1.0), "decay_from"), ((1e-3, 0.0, float("nan")), "decay_from")])
def test_bad_arguments_name_the_argument(args: tuple[float, float, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LateLinearDecay(*args)


def test_agent_config_trains_with_the_schedule() -> None:
    """The override the README gives builds a MaskablePPO whose optimizer follows the schedule."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from experiments.common import env_spec

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            "agent.learning_rate={_target_: agents.schedules.LateLinearDecay, value: 0.001, "
            "end: 0.0001, decay_from: 0.5}", "agent.n_steps=64", "agent.batch_size=64",
            "agent.n_epochs=1", "env.kwargs.episode_queries=200"])
    spec = env_spec(cfg)
    venv = DummyVecEnv([spec.make])
    model = instantiate(cfg.agent, _convert_="all")(env=venv, seed=0)
    assert isinstance(model.learning_rate, LateLinearDecay)
    lrs: list[float] = []
    orig = model._update_learning_rate

    def spy(optimizers: object) -> None:
        orig(optimizers)
        lrs.append(model.policy.optimizer.param_groups[0]["lr"])

    model._update_learning_rate = spy  # type: ignore[method-assign]
    model.learn(total_timesteps=64 * 8)
    # one update per rollout; SB3 sets the rate from progress at the update (1 - steps / total)
    expected = [LateLinearDecay(1e-3, 1e-4, 0.5)(1 - 64 * k / 512) for k in range(1, 9)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] == lrs[3] == 1e-3 and lrs[-1] == pytest.approx(1e-4)
