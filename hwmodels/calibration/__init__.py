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
  their prediction and their fit (:func:`fit_profile`).

The public names of all of them are importable from here.
"""

from hwmodels.calibration.fitting import FitResult, fit_targets
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
from hwmodels.calibration.prediction import STACK_PARAMS, predict, stack_params
from hwmodels.calibration.profiles import (
    PROFILE_COLUMNS,
    PROFILE_INTERFERENCE,
    PROFILE_PARAMS,
    ProfileFit,
    ProfileRow,
    fit_profile,
    parse_model,
    predict_profile,
    read_profile,
    share_partitions,
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
    "HARDWARE",
    "MLPERF_BERT_SEQ_LEN",
    "MLPERF_DLRM_PAIRS",
    "MLPERF_SLA_MS",
    "PERFORMANCE_CATEGORIES",
    "PERF_KINDS",
    "PER_DEVICE_PARAMS",
    "PROFILE_COLUMNS",
    "PROFILE_INTERFERENCE",
    "PROFILE_PARAMS",
    "STACK_BOUNDS",
    "STACK_PARAMS",
    "TARGET_COLUMNS",
    "Bound",
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
    "default_value",
    "device_name",
    "evaluate",
    "fit_profile",
    "fit_targets",
    "is_performance",
    "mlperf_dlrm_profile",
    "param_bounds",
    "parse_model",
    "parse_published",
    "plan_target",
    "predict",
    "predict_profile",
    "read_profile",
    "read_targets",
    "reset_fitted",
    "share_partitions",
    "stack_params",
    "summarize",
    "validate",
    "write_profile",
]
