"""RLlib adapter (extra ``ldsgym[rllib]``): PPO trains one iteration on every base env, and
every action it samples is valid. Run with ``python -m pytest -m rllib``; skipped without the
extra."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

pytestmark = pytest.mark.rllib

try:  # ray[rllib] brings dm-tree, pandas, pyarrow...: without them RLlib does not import
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig  # noqa: F401
except Exception as exc:  # pragma: no cover - depends on the installed extras
    pytest.skip(f"the rllib extra is not installed ({exc})", allow_module_level=True)

import envs  # noqa: E402
from agents.rllib import (  # noqa: E402
    MASK_KEY,
    OBS_KEY,
    FlattenMaskedObservations,
    make_env,
    ppo_config,
    register_envs,
)

BASE = ["ldsgym/PartitionPlacement-v0", "ldsgym/Repartition-v0", "ldsgym/ShardRouting-v0",
        "ldsgym/ShardPlacement-v0", "ldsgym/ClusterRouting-v0"]
BASE_IDS = [i for i in BASE if i in envs.registered_ids()]
#: Short episodes: one PPO iteration of 128 steps sees several of them.
ENV_CONFIG = {"episode_queries": 48}


@pytest.fixture(scope="module", autouse=True)
def tiny_ray() -> Iterator[None]:
    """A small local Ray instance for this module (the machine is shared), shut down after."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_register_envs_covers_the_namespace() -> None:
    ids = register_envs()
    assert ids == envs.registered_ids() and set(BASE_IDS) <= set(ids)
    from ray.tune.registry import ENV_CREATOR, _global_registry

    for env_id in BASE_IDS:
        assert _global_registry.contains(ENV_CREATOR, env_id)
    with pytest.raises(ValueError, match="unknown environment"):
        ppo_config("ldsgym/NoSuchEnv-v0")


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_flatten_connector_keeps_the_mask(env_id: str) -> None:
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    env = make_env(env_id, ENV_CONFIG)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    mask = obs[MASK_KEY]
    np.testing.assert_array_equal(mask, env.unwrapped.action_masks().astype(np.float32))
    connector = FlattenMaskedObservations(env.observation_space, env.action_space)
    out_space = connector.observation_space
    rest = sum(int(np.prod(s.shape)) for k, s in env.observation_space.spaces.items()
               if k != MASK_KEY)
    assert set(out_space.spaces) == {MASK_KEY, OBS_KEY}
    assert out_space[OBS_KEY].shape == (rest,)
    episode = SingleAgentEpisode(observations=[obs])
    connector(rl_module=None, batch={}, episodes=[episode], explore=True, shared_data={})
    flat = episode.get_observations(-1)
    np.testing.assert_array_equal(flat[MASK_KEY], mask)
    expected = np.concatenate([np.ravel(obs[k]) for k in sorted(obs) if k != MASK_KEY])
    np.testing.assert_allclose(flat[OBS_KEY], expected)
    env.close()


@pytest.mark.parametrize("env_id", BASE_IDS)
def test_ppo_trains_one_iteration_with_masks(env_id: str) -> None:
    config = (ppo_config(env_id, ENV_CONFIG, hidden=(32, 32), seed=0)
              .env_runners(num_env_runners=0, num_envs_per_env_runner=1)
              .training(train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1))
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 128
        learner = result["learners"]["default_policy"]
        assert math.isfinite(float(learner["total_loss"]))
        # Every action PPO samples (exploring) is one the mask allows.
        episodes = algo.env_runner.sample(num_timesteps=200, random_actions=False)
        steps = 0
        for episode in episodes:
            observations = episode.get_observations()
            actions = episode.get_actions()
            for t, action in enumerate(actions):
                assert observations[MASK_KEY][t][int(action)] == 1.0, (env_id, t, action)
                steps += 1
            infos = episode.get_infos()
            assert all(int(i.get("invalid_actions", 0)) == 0 for i in infos)
        assert steps >= 100
        # The module itself: with one action allowed per row, that action is the greedy one.
        import torch
        from ray.rllib.core.columns import Columns

        module = algo.get_module()
        n = int(module.action_space.n)
        dim = int(module.observation_space[OBS_KEY].shape[0])
        obs = {MASK_KEY: torch.eye(n), OBS_KEY: torch.randn(n, dim)}
        logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        assert torch.equal(logits.argmax(dim=-1), torch.arange(n))
    finally:
        algo.stop()
