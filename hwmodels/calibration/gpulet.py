"""The gpulet measurements (``0909wlgur/Gpulet``) as profile rows, and their fixed split.

The repository's ``data/inference.csv`` has the solo latency of 10 CNNs (PyTorch eager, TF32,
an A100-class GPU of compute capability 8.0) at batches 1-64 and MPS SM shares of 20-100%;
``data/interference.csv`` has 3,675 co-located runs: the measured model at a share, the
co-runner with the rest of the SMs, and the measured model's latency. Neither file states a
licence, so they are read from a checkout or mirror given on the command line and never
copied into this repository (only fitted parameters and error figures are).

Fixed split (:func:`is_training`): fit on the co-located rows whose measured model is
``resnet50`` and on the solo rows of ``resnet50``, ``vgg16``, ``inception_v3`` and
``mobilenet_v2``; every other row (co-located rows measuring ``densenet121`` or ``vgg19``;
solo rows of ``densenet121/169/201``, ``resnet101/152`` and ``vgg19``) is held out.
"""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

from hwmodels.calibration.profiles import ProfileRow

NAMES: dict[str, str] = {"inception": "inception_v3", "mobilenet": "mobilenet_v2"}
"""gpulet's model names that ldsgym spells differently (the others are the same)."""

STACK, PRECISION = "eager", "tf32"
"""How gpulet measured: PyTorch eager with TF32 (its ``profiling/`` folder)."""

HELD_OUT = ("co-located rows measuring densenet121 or vgg19; solo rows of densenet121, "
            "densenet169, densenet201, resnet101, resnet152 and vgg19")
"""The held-out rows of the fixed split, in words."""

TRAIN_SOLO = frozenset({"resnet50", "vgg16", "inception_v3", "mobilenet_v2"})
TRAIN_COLOCATED = frozenset({"resnet50"})


def _read(source: Path, name: str) -> str:
    direct = source / "data" / name
    if direct.is_file():
        return direct.read_text(encoding="utf-8")
    if (source / "HEAD").is_file() or (source / ".git").exists():  # a (bare) git repository
        try:
            return subprocess.run(["git", "-C", str(source), "show", f"HEAD:data/{name}"],
                                  check=True, capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ValueError(f"gpulet: cannot read data/{name} from {source}: {exc}") from None
    raise ValueError(f"gpulet: {source} has no data/{name} (give a checkout or a git mirror "
                     "of github.com/0909wlgur/Gpulet)")


def _model(name: str) -> str:
    return NAMES.get(name, name)


def read_gpulet(source: str | Path) -> list[ProfileRow]:
    """Solo then co-located rows of the gpulet data (latency in ms, share as a fraction).

    Args:
        source: A checkout of the repository, or its bare git mirror.

    Raises:
        ValueError: missing or malformed files.
    """
    src = Path(source)
    rows: list[ProfileRow] = []
    for lineno, rec in enumerate(csv.reader(io.StringIO(_read(src, "inference.csv"))), 1):
        if not rec:
            continue
        # model,batch,share%,throughput,<v>,latency,<seconds>,<flag>
        if len(rec) < 7 or rec[5] != "latency":
            raise ValueError(f"gpulet inference.csv line {lineno}: unexpected {rec}")
        rows.append(ProfileRow(_model(rec[0]), int(rec[1]), int(rec[2]) / 100.0,
                               float(rec[6]) * 1e3, line=lineno, stack=STACK,
                               precision=PRECISION))
    for lineno, rec in enumerate(csv.reader(io.StringIO(_read(src, "interference.csv"))), 1):
        if not rec:
            continue
        # model,batch,share%,corunner,corunner batch,throughput,<v>,latency,<seconds>,<flag>
        if len(rec) < 9 or rec[7] != "latency":
            raise ValueError(f"gpulet interference.csv line {lineno}: unexpected {rec}")
        rows.append(ProfileRow(_model(rec[0]), int(rec[1]), int(rec[2]) / 100.0,
                               float(rec[8]) * 1e3, _model(rec[3]), int(rec[4]),
                               line=lineno, stack=STACK, precision=PRECISION))
    return rows


def is_training(row: ProfileRow) -> bool:
    """Whether the fixed split fits on ``row`` (see the module docstring)."""
    base = row.model.partition("@")[0]
    return base in (TRAIN_COLOCATED if row.colocated else TRAIN_SOLO)
