"""Calibration: predict published measurements with the hardware models, and fit them.

``experiments.calibrate`` (the Hydra app) is a thin shell over this package, which imports no
Hydra, torch or gymnasium (scipy is imported lazily by the fitting functions). The modules,
by job:

* :mod:`~hwmodels.calibration.targets`: reading a published-targets CSV
  (:func:`read_targets`, :func:`parse_published`);
* :mod:`~hwmodels.calibration.plans`: what each target row means to the models
  (:func:`plan_target`: device, layout, workload, precision, serving stack);
* :mod:`~hwmodels.calibration.prediction`: the models' numbers for a plan (:func:`predict`;
  the serving stacks, :data:`STACK_PARAMS`);
* :mod:`~hwmodels.calibration.validation`: predictions against the published values
  (:func:`validate`, :func:`summarize`);
* :mod:`~hwmodels.calibration.params`: the fittable parameters of a spec (names, bounds,
  defaults);
* :mod:`~hwmodels.calibration.fitting`: fitting them to published targets
  (:func:`fit_targets`);
* :mod:`~hwmodels.calibration.profiles`: profile CSVs of latencies measured on a local device,
  their prediction and their fit (:func:`fit_profile`), errors on co-located rows
  (:func:`colocation_stats`);
* :mod:`~hwmodels.calibration.gpulet`: the public gpulet co-location measurements as profile
  rows (:func:`read_gpulet`) and their fixed split (:func:`gpulet_is_training`).

The public names of all of them are importable from here.
"""

from hwmodels.calibration.fitting import FitResult, fit_targets
from hwmodels.calibration.gpulet import HELD_OUT as GPULET_HELD_OUT
from hwmodels.calibration.gpulet import is_training as gpulet_is_training
from hwmodels.calibration.gpulet import read_gpulet
from hwmodels.calibration.params import (
    CPU_OWN_PARAMS,
    DEFAULT_PER_DEVICE,
    FIXED_STACK_PARAMS,
    GLOBAL_PARAMS,
    PER_DEVICE_PARAMS,
    STACK_BOUNDS,
    FitParam,
    apply_params,
    default_value,
    param_bounds,
    reset_fitted,
)
from hwmodels.calibration.plans import (
    DGX_A100_HOST_W,
    FIT_KINDS,
    HARDWARE,
    MLPERF_BERT_SEQ_LEN,
    MLPERF_DLRM_PAIRS,
    MLPERF_SLA_MS,
    PERF_KINDS,
    Plan,
    WorkloadRef,
    device_name,
    mlperf_dlrm_profile,
    plan_target,
)
from hwmodels.calibration.prediction import STACK_PARAMS, predict, stack_latency, stack_params
from hwmodels.calibration.profiles import (
    GPU_PROFILE_INTERFERENCE,
    GPU_PROFILE_PARAMS,
    PROFILE_COLUMNS,
    PROFILE_INTERFERENCE,
    PROFILE_OPTIONAL_COLUMNS,
    PROFILE_PARAMS,
    ColocationStats,
    ProfileFit,
    ProfileRow,
    colocation_stats,
    fit_profile,
    measured_slowdowns,
    parse_model,
    predict_profile,
    predicted_slowdowns,
    read_profile,
    share_partitions,
    spearman,
    write_profile,
)
from hwmodels.calibration.targets import (
    TARGET_COLUMNS,
    Bound,
    Target,
    parse_published,
    read_targets,
)
from hwmodels.calibration.validation import (
    PERFORMANCE_CATEGORIES,
    Result,
    Summary,
    evaluate,
    is_performance,
    summarize,
    validate,
)

__all__ = [
    "CPU_OWN_PARAMS",
    "DEFAULT_PER_DEVICE",
    "DGX_A100_HOST_W",
    "FIT_KINDS",
    "FIXED_STACK_PARAMS",
    "GLOBAL_PARAMS",
    "GPULET_HELD_OUT",
    "GPU_PROFILE_INTERFERENCE",
    "GPU_PROFILE_PARAMS",
    "HARDWARE",
    "MLPERF_BERT_SEQ_LEN",
    "MLPERF_DLRM_PAIRS",
    "MLPERF_SLA_MS",
    "PERFORMANCE_CATEGORIES",
    "PERF_KINDS",
    "PER_DEVICE_PARAMS",
    "PROFILE_COLUMNS",
    "PROFILE_INTERFERENCE",
    "PROFILE_OPTIONAL_COLUMNS",
    "PROFILE_PARAMS",
    "STACK_BOUNDS",
    "STACK_PARAMS",
    "TARGET_COLUMNS",
    "Bound",
    "ColocationStats",
    "FitParam",
    "FitResult",
    "Plan",
    "ProfileFit",
    "ProfileRow",
    "Result",
    "Summary",
    "Target",
    "WorkloadRef",
    "apply_params",
    "colocation_stats",
    "default_value",
    "device_name",
    "evaluate",
    "fit_profile",
    "fit_targets",
    "gpulet_is_training",
    "is_performance",
    "measured_slowdowns",
    "mlperf_dlrm_profile",
    "param_bounds",
    "parse_model",
    "parse_published",
    "plan_target",
    "predict",
    "predict_profile",
    "predicted_slowdowns",
    "read_gpulet",
    "read_profile",
    "read_targets",
    "reset_fitted",
    "share_partitions",
    "spearman",
    "stack_latency",
    "stack_params",
    "summarize",
    "validate",
    "write_profile",
]
