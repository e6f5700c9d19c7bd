"""Re-evaluating a saved run: the evaluate command line's overrides on the run's own config."""

from __future__ import annotations

from pathlib import Path

from hydra import initialize_config_dir

from experiments.common import CONF_DIR
from experiments.saved import saved_run_config


def test_a_plus_override_sets_a_key_whether_or_not_the_run_has_it(tmp_path: Path) -> None:
    """``+eval.env_overrides.X=...`` is what evaluate's own config needs for a key it lacks;
    the run (experiment=mimd_study) already has ``episode_queries`` there, which a plain ``+``
    would refuse ("Could not append to config"), and lacks ``load``."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- experiment=mimd_study\n")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = saved_run_config(tmp_path, ["+eval.env_overrides.episode_queries=5",
                                          "+eval.env_overrides.load=0.7",
                                          "++eval.seeds=[10007]", "run_dir=/x"])
    assert cfg.eval.env_overrides.episode_queries == 5
    assert cfg.eval.env_overrides.load == 0.7
    assert cfg.eval.env_overrides.trace == "servegen-m-large-shift-test"  # kept from the run
    assert list(cfg.eval.seeds) == [10007]
