"""Signals in the apps: a graceful stop while training, a clean exit status elsewhere; an
interrupted evaluation keeps the episodes it finished."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import gymnasium as gym
import pytest

import envs  # noqa: F401  (registers the ids)
from agents.baselines import make_baseline
from agents.evaluation import evaluate
from experiments.interrupts import Interrupted, Interrupts
from experiments.report import results_csv


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_training_gracefully_then_exits_with_128_plus_signal(
        sig: int, status: int) -> None:
    interrupts = Interrupts().install()
    stops: list[bool] = []
    try:
        interrupts.on_signal = lambda: stops.append(True)
        os.kill(os.getpid(), sig)  # while training: the callback is asked to stop, no raise
        assert stops == [True] and interrupts.received == sig
        interrupts.on_signal = None
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), sig)  # outside training: a clean exit
        assert info.value.exit_status == status
    finally:
        interrupts.restore()
    assert signal.getsignal(sig) is not interrupts._handle


def test_interrupted_evaluation_keeps_finished_episodes(tmp_path: Path) -> None:
    make = functools.partial(gym.make, "ldsgym/PartitionPlacement-v0", episode_queries=50)
    policies = {n: make_baseline(n, "ldsgym/PartitionPlacement-v0")
                for n in ("least_loaded", "shortest_finish")}
    written: list[int] = []

    def save(results: dict) -> None:  # what evaluate_and_report does after every episode
        (tmp_path / "results.csv").write_text(results_csv([(1.0, results)]))
        written.append(sum(len(r.episodes) for r in results.values()))
        if written[-1] == 3:
            raise Interrupted(signal.SIGINT)

    with pytest.raises(Interrupted):
        evaluate(make, policies, [1, 2], progress=False, on_episode=save)
    assert written == [1, 2, 3]
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 and rows[-1].startswith("1.0,shortest_finish,")
