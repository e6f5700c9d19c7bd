"""``python -m experiments.repartition_gap`` (issue 16's measurement): the per-interval bound is
at least every static layout, the table has every row, bad input is one line with exit 2."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest

from experiments.repartition_gap import main, measure, table


def _args(**kw: object) -> argparse.Namespace:
    base = dict(trace="mix-swing", period=None, amplitude=None, shift=None,
                workload="vision-nlp", episode_s=60.0, interval_s=10.0, load=1.0, seeds=[0],
                cands='[["3g", "2g", "1g", "1g"], ["7g"]]', reconfig_params=None,
                policies="greedy")
    base.update(kw)
    return argparse.Namespace(**base)


def test_bound_is_at_least_every_static_layout_and_the_table_has_every_row() -> None:
    names, rows, ref = measure(_args())
    assert names == ["3g.40gb+2g.20gb+1g.10gb+1g.10gb", "7g.80gb"]
    best = rows["best static in hindsight"][0]
    assert ref == best["goodput"] >= rows["static (start layout)"][0]["goodput"]
    assert rows["per-interval bound (switching free)"][0]["goodput"] >= ref
    assert set(rows) == {"static (start layout)", "best static in hindsight",
                         "per-interval bound (switching free)",
                         "per-interval hindsight schedule, real costs", "greedy"}
    md = table(rows, ref).splitlines()
    assert len(md) == 2 + len(rows) and "| greedy |" in md[-1]


@pytest.mark.parametrize("argv, message", [
    (["--policies", "nope"], "--policies: unknown ['nope']"),
    (["--trace", "poisson", "--period", "5"], "--period/--amplitude need a MixSchedule"),
    (["--trace", "nope"], "trace 'nope': unknown preset"),
    (["--cands", "[[oops"], "error:"),
])
def test_bad_input_is_one_line(argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--episode-s", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_repartition_report_plots_the_layout_each_policy_held(tmp_path: Path) -> None:
    """Issue 16: the report of a Repartition evaluation shows the layout each policy chose over
    one held-out episode against the model mix (plots/layout_timeline.png)."""
    from experiments.report import _short_layout
    from tests.conftest import run_app

    out = tmp_path / "ev"
    r = run_app("experiments.evaluate", "env=repartition", "~hw", "~workload",
                "policies=[static,threshold]", "eval.seeds=[10000]", "eval.loads=[1.0]",
                "env.kwargs.episode_s=30", "env.kwargs.interval_s=5", "progress=false",
                f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-2000:]
    png = out / "plots" / "layout_timeline.png"
    assert png.is_file() and png.stat().st_size > 10_000
    report = (out / "report.md").read_text()
    assert "![layout_timeline](plots/layout_timeline.png)" in report
    # Deliverable 6: downtime is a column of the table, read from the episodes' info (the
    # threshold policy switches once here: 3.6 s).
    rows = list(csv.DictReader((out / "results.csv").open()))
    head = next(line for line in report.splitlines() if "| down s |" in line)
    col = [c.strip() for c in head.split("|")].index("down s")
    for name in ("static", "threshold"):
        mine = [float(r["downtime_s"]) for r in rows if r["policy"] == name]
        mean = sum(mine) / len(mine)
        line = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
        cell = [c.strip() for c in line.split("|")][col]
        assert float(cell.split(" ± ")[0]) == pytest.approx(mean, abs=0.01)
    assert _short_layout("3g+1g.10gb+1g.10gb+1g.20gb") == "3g+2x1g.10gb+1g.20gb"
