"""Dataclass schemas of the apps' top-level configs, registered in Hydra's ConfigStore.

``conf/train.yaml`` starts its defaults list with ``schema: train`` (``evaluate.yaml`` and
``export.yaml`` override it with their own), so Hydra checks every key's *type* while it
composes: ``seed=abc`` or ``n_envs=1.5`` fail there, naming the key. Ranges and relations
between keys (``n_envs >= 1``, evaluation seeds apart from training seeds) are checked by
:func:`experiments.checks.check_train` before anything is written. The groups that map onto
constructors (``env``, ``hw``, ``workload``, ``trace``, ``agent``) stay free-form here: their
keys are checked by the constructors they are handed to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

# OmegaConf reads these annotations at runtime: they must be typing forms it understands
# (Optional[...], list[...], dict[str, Any]), not PEP 604 unions.


@dataclass
class EvalConf:
    """``eval.*``: how the trained policy and the baselines are scored."""

    seeds: list[int] = field(default_factory=lambda: [10000, 10001, 10002, 10003, 10004])
    baselines: Optional[list[str]] = None  # noqa: UP045
    loads: Optional[list[float]] = None  # noqa: UP045
    env_overrides: dict[str, Any] = field(default_factory=dict)
    traces: Optional[list[str]] = None  # noqa: UP045
    fast: bool = True


@dataclass
class ExportConf:
    """``export.*``: the ONNX parity check."""

    parity_samples: int = 2000


@dataclass
class CheckpointConf:
    """``checkpoint.*``: resumable checkpoints during training (0 = only on interruption)."""

    every_steps: int = 10000


@dataclass
class TrainConf:
    """``conf/train.yaml``: the main job."""

    env: Any = None
    hw: Any = None
    workload: Any = None
    trace: Any = None
    agent: Any = None
    seed: int = 0
    total_timesteps: int = 150000
    n_envs: int = 4
    vec_env: Any = None  # the vec_env group: kind, start_method, normalize, ...
    progress: bool = True
    torch_threads: int = 1
    eval: EvalConf = field(default_factory=EvalConf)
    export: ExportConf = field(default_factory=ExportConf)
    checkpoint: CheckpointConf = field(default_factory=CheckpointConf)
    resume: Optional[str] = None  # noqa: UP045
    # The online-learning study after evaluation (experiments/online.py; null: off).
    online: Any = None
    # Behaviour cloning from a baseline before PPO (experiments/warm_start.py; null: off).
    warm_start: Any = None
    # Checkpoint selection on validation episodes (experiments/selection.py; null: off).
    select: Any = None
    # The learned policy's metric a sweeper optimises (experiments/sweeps.py; null: goodput).
    objective: Optional[str] = None  # noqa: UP045


@dataclass
class ScalingConf(TrainConf):
    """``conf/scaling.yaml``: SB3 throughput of the VecEnvs (experiments/scaling.py)."""

    scaling: Any = None


@dataclass
class EvaluateConf(TrainConf):
    """``conf/evaluate.yaml``: re-evaluate a run, or baselines alone."""

    run_dir: Optional[str] = None  # noqa: UP045
    policies: Optional[list[str]] = None  # noqa: UP045


@dataclass
class ExportConf_(TrainConf):
    """``conf/export.yaml``: re-export a run's policy."""

    run_dir: str = "???"


def register() -> None:
    """Store the schemas as options of the ``schema`` group (package ``_global_``)."""
    cs = ConfigStore.instance()
    cs.store(group="schema", name="train", node=TrainConf, package="_global_")
    cs.store(group="schema", name="evaluate", node=EvaluateConf, package="_global_")
    cs.store(group="schema", name="export", node=ExportConf_, package="_global_")
    cs.store(group="schema", name="scaling", node=ScalingConf, package="_global_")
