"""What a training job hands back to a sweeper: the learned policy's objective metric."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from agents.evaluation import PolicyResult
from experiments.common import UserError
from experiments.sweeps import objective_metric, objective_value


def _result(name: str, values: list[float]) -> PolicyResult:
    return PolicyResult(name, [{"goodput": v, "sla_attainment": v / 10} for v in values])


def test_objective_is_the_learned_mean_over_episodes_and_loads() -> None:
    sweep = {0.8: {"learned": _result("learned", [1.0, 3.0]), "x": _result("x", [100.0])},
             1.0: {"learned": _result("learned", [6.0]), "x": _result("x", [100.0])}}
    assert objective_value(OmegaConf.create({}), sweep) == pytest.approx(4.0)  # (2 + 6) / 2
    cfg = OmegaConf.create({"objective": "sla_attainment"})
    assert objective_value(cfg, sweep) == pytest.approx(0.4)
    with pytest.raises(UserError, match="objective"):
        objective_metric(OmegaConf.create({"objective": "speed"}))


def test_bad_objective_is_one_line_before_training(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import quick_train_refused

    assert "objective" in quick_train_refused(["+objective=speed"], tmp_path, capsys,
                                              monkeypatch)
