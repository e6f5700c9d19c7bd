"""Every env and every baseline does exactly what the recorded golden trajectories say.

The cases and how they are digested are in ``tests/golden.py``; a change of behaviour
re-records them there (``python tests/golden.py --write <prefix>``) in a commit that says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import golden

from traces.paths import shared_dir

RECORDED = golden.load()
CASES = dict(golden.cases())
SAME_PLATFORM = RECORDED["platform"] == golden.platform_fingerprint()


def test_every_case_is_recorded_and_every_recording_is_a_case() -> None:
    if shared_dir() is None:  # the ids that replay the shared real traces are not registered
        assert set(CASES) <= set(RECORDED["cases"])
        return
    assert sorted(CASES) == sorted(RECORDED["cases"])


#: The slowest cases (10-20 s each on 2 cores): the step-by-step replay of the hindsight
#: baselines, whose fast replay stays in the default run (as do the step cases of every other
#: baseline on the same envs).
EXPENSIVE = {n for n in CASES
             if n.startswith("baseline/Repartition/") and n.endswith(
                 ("/best_static_hindsight/step", "/interval_hindsight/step"))}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.expensive) if n in EXPENSIVE else n for n in sorted(CASES)])
def test_golden_trajectory(name: str) -> None:
    got = CASES[name]()
    want = RECORDED["cases"][name]
    assert got["rounded"] == want["rounded"], f"{name}: trajectory changed"
    if SAME_PLATFORM:
        assert got["exact"] == want["exact"], f"{name}: trajectory changed in the last bits"
