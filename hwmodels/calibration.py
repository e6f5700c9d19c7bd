"""Calibration: predict published measurements with the hardware models, and fit them.

``experiments.calibrate`` (the Hydra app) is a thin shell over this module, which imports no
Hydra, torch or gymnasium (scipy is imported lazily by the fitting functions).

Published targets
-----------------
A targets CSV has the columns :data:`TARGET_COLUMNS` (``calibration/published_targets.csv``
in the shared folder is the reference). :func:`plan_target` maps each row to a prediction
plan, or to the reason it is skipped:

* **hardware** strings map to ``conf/hw`` names (:data:`HARDWARE`), with a MIG layout when the
  string names a slice (``"A100-SXM4-80GB MIG 1g.10gb"``), and "per GPU of 8" values are
  already per GPU. DeepLearningExamples' ``V100-16GB`` runs on the ``v100`` spec (same chip).
* **models** map to workload profiles (:data:`MODELS`): ``resnet50``; ``bert-99`` to
  ``bert-large`` at :data:`MLPERF_BERT_SEQ_LEN` tokens on GPUs (NVIDIA's MLPerf engines drop
  padding, so a SQuAD v1.1 sample costs its real length: a paragraph of about 140 WordPiece
  tokens plus a question of about 11 plus 3 special tokens; the CPU submission (OpenVINO) pads
  to 384); ``bert-large`` rows of DeepLearningExamples are at 384 tokens (stated in the row);
  ``dlrm-99`` (MLPerf v1-v3 DLRM on Criteo Terabyte) and ``dlrm (Criteo)`` to
  :func:`mlperf_dlrm_profile` (bottom MLP 13-512-256-128, 26 one-hot tables of dim 128, dot
  interaction, top MLP 479-1024-1024-512-256-1; the ``dlrm-v2`` workload is the later DCNv2
  model). An MLPerf DLRM *sample* aggregates user-item pairs drawn from the rules' quantile
  distribution (100, 100, 200 x 12, 300, 300, 400, ..., 700: mean 270,
  :data:`MLPERF_DLRM_PAIRS`; mlcommons/inference issue #784), so samples/s = pairs/s / 270;
  DeepLearningExamples counts pairs.
* **precision**: NVIDIA's MLPerf engines are INT8 for ResNet-50, BERT and DLRM (for DLRM
  FP16 is impossible: 305k samples/s x 270 pairs x 4.9 MFLOP = 404 TFLOP/s > the A100's 312
  FP16 peak). The OpenVINO CPU submission (Cooper Lake, AVX512_VNNI and AVX512_BF16) is taken
  as INT8 ResNet-50 and BF16 BERT: that puts both at about 58% of their peak, whereas INT8 BERT
  would be at 30% (an inference from the numbers, not a documented setting).
  DeepLearningExamples rows are FP16 (TensorRT FP16, PyTorch AMP).
* **serving stack** (:data:`STACK_PARAMS`, fitted, stored in each spec's ``stacks``):
  ``mlperf`` (TensorRT/OpenVINO under LoadGen: a per-query overhead ``request_us``; in the
  Server scenario, Poisson arrivals queue behind batches of latency ``T``, and the p99 bound
  ``L`` leaves room for a waiting time of about ``server_c * (L / T - 1)`` service times, so
  the load may reach ``rho = g / (1 + g)`` with ``g = server_c * (L / T - 1)`` as in an
  M/D/1 queue: the throughput is the best ``rho * b / T(b)`` over batches with ``T(b) < L``),
  ``triton`` (end to end through a Triton client:
  ``request_us`` per request plus ``us_per_mb`` per MB of input, for the serialisation and
  copy of the tensors), ``eager`` (PyTorch eager AMP: efficiency scaled by ``eff_scale``, a
  framework cost ``batch_us`` per batch and ``launch_us`` per kernel) and ``cudagraph``
  (PyTorch AMP with CUDA graphs: ``eff_scale`` and ``batch_us``).

Predictions by kind: Offline throughput = best samples/s over batch sizes (the engine chooses
its batch); Server throughput as above; SingleStream latency = batch-1 latency plus the
query overhead; DeepLearningExamples batch rows = throughput and latency at the given batch;
MIG rows = the same on the slice's partition, ``n x`` one slice divided by the MIG
interference factor for aggregates; interference rows = the throughput change from
:class:`~hwmodels.interference.InterferenceModel`; spec, MIG-table, model, link, storage,
reconfiguration and power rows compare with the corresponding model or spec number.

Profiles
--------
A profile CSV (``experiments.calibrate mode=profile`` writes one; users may fill their own
from measurements) has the columns :data:`PROFILE_COLUMNS`:

``model``
    A :data:`hwmodels.workloads.MODEL_NAMES` name, optionally ``@N`` for ``seq_len`` (BERT,
    GPT-2 prefill) or ``context_len`` (GPT-2 decode), e.g. ``bert-base@128``.
``batch``
    Samples per batch.
``share``
    Fraction of the device the measured model may use (CPU: threads / cores; GPU: MPS
    active-thread fraction, 1 = whole device).
``latency_ms``
    Measured batch latency (the fastest of several timed runs: on a shared machine the
    others are disturbed by unrelated load; a co-runner slows every run).
``corunner_model``, ``corunner_batch``
    What ran at the same time in another process (empty when alone). The co-runner used the
    remaining ``1 - share`` of the device, or all of it when ``share`` is 1 (both then
    oversubscribe and the OS or driver time-slices them).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwmodels.interference import DEFAULTS as INTERFERENCE_DEFAULTS
from hwmodels.interference import InterferenceModel
from hwmodels.latency import LatencyModel
from hwmodels.links import LINKS
from hwmodels.partitions import (
    MIG_TABLES,
    Partition,
    full_gpu,
    max_instances,
    mig_layout,
    mps_layout,
)
from hwmodels.power import PowerModel
from hwmodels.reconfig import ReconfigModel
from hwmodels.specs import DeviceSpec
from hwmodels.storage import TIERS
from hwmodels.workloads import (
    DLRM_V2_MULTI_HOT,
    DLRM_V2_ROWS,
    Layer,
    WorkloadProfile,
    build_profile,
)

TARGET_COLUMNS = ("id", "category", "quantity", "hardware", "model", "batch", "value", "unit",
                  "source", "note", "confidence")
"""Columns a targets CSV must have."""

PROFILE_COLUMNS = ("model", "batch", "share", "latency_ms", "corunner_model", "corunner_batch")
"""Columns of a profile CSV (see the module docstring)."""

MLPERF_BERT_SEQ_LEN = 172
"""Average real tokens of an MLPerf SQuAD v1.1 sample (see the module docstring)."""

MLPERF_DLRM_PAIRS = 270
"""Mean user-item pairs per MLPerf DLRM sample (see the module docstring)."""

MLPERF_SLA_MS = {"resnet50": 15.0, "bert-99": 130.0, "dlrm-99": 30.0}
"""MLPerf Inference Server-scenario p99 latency bounds (inference rules; rows T003, T019, T033)."""

STACK_PARAMS: dict[str, dict[str, float]] = {
    "engine": {},
    "mlperf": {"request_us": 30.0, "server_c": 2.0},
    "triton": {"request_us": 400.0, "us_per_mb": 400.0},
    "eager": {"eff_scale": 0.5, "batch_us": 10000.0, "launch_us": 10.0},
    "cudagraph": {"eff_scale": 0.5, "batch_us": 100.0},
}
"""Serving-stack parameters and their starting values (see the module docstring)."""

FIXED_STACK_PARAMS: frozenset[tuple[str, str]] = frozenset()
"""Stack parameters that are set, not fitted."""


# ---------------------------------------------------------------------------------------------
# Reading targets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One row of a targets CSV (all fields as text) and its line number."""

    id: str
    category: str
    quantity: str
    hardware: str
    model: str
    batch: str
    value: str
    unit: str
    source: str
    note: str
    confidence: str
    line: int = 0


def read_targets(path: str | Path) -> list[Target]:
    """Rows of a targets CSV.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column, a malformed row or a duplicate id, naming the file and
            line.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header with {', '.join(TARGET_COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in TARGET_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path} line 1: missing column(s) {', '.join(missing)}")
    out: list[Target] = []
    seen: set[str] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path} line {lineno}: expected {len(header)} fields, got {len(row)}")
        rec = {h: c.strip() for h, c in zip(header, row, strict=True)}
        if not rec["id"]:
            raise ValueError(f"{path} line {lineno}: empty id")
        if rec["id"] in seen:
            raise ValueError(f"{path} line {lineno}: duplicate id {rec['id']}")
        if not rec["value"]:
            raise ValueError(f"{path} line {lineno}: empty value for {rec['id']}")
        seen.add(rec["id"])
        out.append(Target(**{c: rec[c] for c in TARGET_COLUMNS}, line=lineno))
    return out


@dataclass(frozen=True)
class Bound:
    """A published number: a point (``lo == hi``) or a range."""

    lo: float
    hi: float

    @property
    def point(self) -> bool:
        return self.lo == self.hi

    def error(self, predicted: float) -> float:
        """Relative error of ``predicted`` (0 inside a range, else to the nearest end)."""
        if self.lo <= predicted <= self.hi:
            return 0.0
        ref = self.lo if predicted < self.lo else self.hi
        return abs(predicted - ref) / abs(ref) if ref else abs(predicted - ref)


_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_SUFFIX = {"": 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9}


def _number(text: str) -> float | None:
    m = re.fullmatch(rf"\s*({_NUM})\s*([kKMG]?)\s*", text)
    return float(m.group(1)) * _SUFFIX[m.group(2)] if m else None


def parse_published(text: str) -> list[Bound] | None:
    """``"469.1 / 2.128"`` -> two points; ``"4-5"`` a range; ``"<0.1"`` ``[0, 0.1]``; ``"~2"``
    a point; None if a part is not a number."""
    out = []
    text = re.sub(r"\(.*?\)", "", text)  # drop remarks in parentheses
    for part in text.split("/"):
        part = part.strip().lstrip("~").strip()
        if part.startswith("<"):
            v = _number(part[1:])
            if v is None:
                return None
            out.append(Bound(0.0, v))
            continue
        m = re.fullmatch(rf"({_NUM})\s*-\s*({_NUM})", part)
        if m and not part.startswith("-"):
            out.append(Bound(float(m.group(1)), float(m.group(2))))
            continue
        v = _number(part)
        if v is None:
            return None
        out.append(Bound(v, v))
    return out


def _numbers(text: str) -> list[float]:
    return [float(m.group(1)) * _SUFFIX[m.group(2)]
            for m in re.finditer(rf"({_NUM})([kKMG]?)\b", text)]


# ---------------------------------------------------------------------------------------------
# Workloads used by the targets
# ---------------------------------------------------------------------------------------------


@functools.cache
def mlperf_dlrm_profile() -> WorkloadProfile:
    """MLPerf Inference DLRM (v0.7-v3.1, Criteo Terabyte): one user-item pair per sample.

    Bottom MLP 13-512-256-128, 26 one-hot embedding tables of dim 128 (rows as DLRMv2's,
    capped at 40M), dot interaction of the 27 vectors (351 pairs + the dense 128 = 479
    features) fused with the gathers, top MLP 479-1024-1024-512-256-1. Sources:
    facebookresearch/dlrm and mlcommons/inference recommendation/dlrm
    (``--arch-mlp-bot 13-512-256-128 --arch-mlp-top 1024-1024-512-256-1
    --arch-sparse-feature-size 128``); NVIDIA DeepLearningExamples
    PyTorch/Recommendation/DLRM uses the same architecture.
    """
    layers: list[Layer] = []

    def gemm(name: str, k: int, n: int) -> None:
        layers.append(Layer(name, "gemm", flops=2.0 * k * n, params=k * n + n,
                            act_in=float(k), act_out=float(n)))

    for i, (k, n) in enumerate([(13, 512), (512, 256), (256, 128)]):
        gemm(f"bot_mlp.{i}", k, n)
    dim = 128
    vectors = len(DLRM_V2_ROWS) + 1
    pairs = vectors * (vectors - 1) // 2
    # The engines fuse the gathers into the dot interaction (NVIDIA's MLPerf DLRM plugin and
    # DeepLearningExamples' dot_based_interact kernels): gathered rows are read once and never
    # written back, so the lookups have no output and the interaction reads only the dense
    # vector from memory.
    for t, rows in enumerate(DLRM_V2_ROWS):
        layers.append(Layer(f"emb.{t}", "embedding", flops=float(dim), params=rows * dim,
                            act_in=float(dim), act_out=0.0, kernels=0))
    layers.append(Layer("interaction.dot", "gemm", flops=2.0 * vectors * vectors * dim,
                        params=0, act_in=float(dim), act_out=float(pairs + dim)))
    for i, (k, n) in enumerate([(pairs + dim, 1024), (1024, 1024), (1024, 512), (512, 256),
                                (256, 1)]):
        gemm(f"top_mlp.{i}", k, n)
    return WorkloadProfile("dlrm-mlperf", "recsys", tuple(layers),
                           "13 dense features + 26 one-hot sparse features (one user-item pair)",
                           mlperf_dlrm_profile.__doc__ or "")


@dataclass(frozen=True)
class WorkloadRef:
    """A target's workload: a profile, samples per query and input bytes per sample."""

    profile: WorkloadProfile
    per_query: int = 1
    input_mb: float = 0.0
    max_batch: int = 2048
    family: str = "cnn"


def _workload(model: str, device: DeviceSpec) -> WorkloadRef | str:
    m = model.strip()
    if m == "resnet50":
        # Triton clients send FP32 224x224x3 tensors.
        return WorkloadRef(build_profile("resnet50"), 1, 224 * 224 * 3 * 4 / 1e6, 2048, "cnn")
    if m == "bert-99":
        seq = 384 if device.kind == "cpu" else MLPERF_BERT_SEQ_LEN
        return WorkloadRef(build_profile("bert-large", seq_len=seq), 1, 3 * seq * 4 / 1e6, 1024,
                           "transformer")
    if m == "bert-large":  # DeepLearningExamples rows: "(seq 384)", padded
        return WorkloadRef(build_profile("bert-large", seq_len=384), 1, 3 * 384 * 4 / 1e6, 1024,
                           "transformer")
    if m == "dlrm-99":
        return WorkloadRef(mlperf_dlrm_profile(), MLPERF_DLRM_PAIRS, 0.0, 1024, "recsys")
    if m.startswith("dlrm (Criteo)"):
        return WorkloadRef(mlperf_dlrm_profile(), 1, 0.0, 65536, "recsys")
    return f"no workload profile for model '{model}'"


# ---------------------------------------------------------------------------------------------
# Hardware strings
# ---------------------------------------------------------------------------------------------

HARDWARE: tuple[tuple[str, str], ...] = (
    (r"^A100-SXM4-80GB(\s*\(per GPU of 8\))?$", "a100-80gb"),
    (r"^A100-80GB$", "a100-80gb"),
    (r"^A100-SXM4-80GB( MIG.*| 7x1g.*)$", "a100-80gb"),
    (r"^A100-PCIe-80GB( MIG.*)?$", "a100-pcie-80gb"),
    (r"^A100-SXM4-40GB$", "a100-40gb"),
    (r"^A100$", "a100-80gb"),
    (r"^A10(\s*\(per GPU of 8\))?$", "a10"),
    (r"^A30( MIG.*)?$", "a30"),
    (r"^T4$", "t4"),
    (r"^L4$", "l4"),
    (r"^V100(-32GB|-16GB)?$", "v100"),
    (r"^H100-SXM5$", "h100-sxm"),
    (r"^H200-SXM$", "h200"),
    (r"^4x Xeon Gold 8380H \(CPU\)$", "xeon-8380h-4s"),
)
"""``(regular expression, conf/hw name)`` for the hardware column."""


def device_name(hardware: str) -> str | None:
    """The ``conf/hw`` name for a targets CSV hardware string, or None."""
    for pattern, name in HARDWARE:
        if re.match(pattern, hardware.strip()):
            return name
    return None


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------

PERF_KINDS = ("offline", "server", "single", "batch", "fixed", "aggregate")
FIT_KINDS = frozenset({*PERF_KINDS, "mig_interf"})


@dataclass(frozen=True)
class Plan:
    """How to predict one target.

    Attributes:
        kind: ``offline``/``server``/``single``/``batch``/``fixed``/``aggregate`` (performance),
            ``mig_interf``, ``mps_interf``, ``spec``, ``mig_table``, ``model``, ``link``,
            ``storage``, ``reconfig``, ``power``, ``ratio``.
        device: ``conf/hw`` name (None when no device is involved).
        model: The target's model string.
        precision: Engine precision.
        stack: Serving stack (a key of :data:`STACK_PARAMS`).
        layout: Partition layout (``("full",)`` or MIG profile names).
        batch: Samples per batch for fixed-batch rows.
        sla_ms: Server p99 bound.
        published: Parsed published numbers.
        percent: The published numbers are percentage changes (compared as ``1 + x/100``).
        extra: Kind-specific details.
    """

    kind: str
    device: str | None
    model: str
    precision: str = "int8"
    stack: str = "engine"
    layout: tuple[str, ...] = ("full",)
    batch: int | None = None
    sla_ms: float | None = None
    published: tuple[Bound, ...] = ()
    percent: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def fittable(self) -> bool:
        """Whether fitting may use this row."""
        return self.kind in FIT_KINDS and all(b.point for b in self.published)


def plan_target(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    """The prediction plan of a target, or the reason it cannot be predicted."""
    handler = _PLANNERS.get(t.category.split("-", 1)[-1].lower())
    if handler is None:
        return f"category '{t.category}' is not modelled"
    return handler(t, devices)


def _device(t: Target, devices: Mapping[str, DeviceSpec]) -> tuple[str, DeviceSpec] | str:
    name = device_name(t.hardware)
    if name is None:
        return f"no hw spec for '{t.hardware}'"
    if name not in devices:
        return f"hw spec '{name}' not loaded"
    return name, devices[name]


def _plan_perf(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    q = t.quantity
    if t.hardware.startswith("8x "):
        return ("56 slices behind one Triton server at a 15 ms p99 bound: limited by the host "
                "and the server's queues, not modelled")
    found = _device(t, devices)
    if isinstance(found, str):
        return found
    name, dev = found
    work = _workload(t.model, dev)
    if isinstance(work, str):
        return work
    published = parse_published(t.value)
    if published is None:
        return f"value '{t.value}' is not numeric"
    layout: tuple[str, ...] = ("full",)
    m = re.search(r"(\d+)x(1g\.\d+gb)|MIG (\dg\.\d+gb)", t.hardware)
    count = 1
    if m:
        if m.group(1):
            count, layout = int(m.group(1)), (m.group(2),)
        else:
            layout = (m.group(3),)
    if "MLPerf" in q or t.category.startswith("2-MIG"):
        stack, precision = "mlperf", "int8"
        if dev.kind == "cpu" and t.model.strip() == "bert-99":
            precision = "bf16"
    elif "Triton" in q:
        stack, precision = "triton", "fp16"
    elif "eager" in q:
        stack, precision = "eager", "fp16"
    elif "CUDA Graphs" in q:
        stack, precision = "cudagraph", "fp16"
    else:
        return f"serving stack of '{q}' unknown"
    batch = int(t.batch) if t.batch.isdigit() else None
    if "Server" in q:
        kind = "server"
    elif "SingleStream" in q or ("latency" in q.lower() and "/" not in t.value):
        kind, batch = "single", 1
    elif t.category.startswith("3-batch"):
        kind = "batch"
    elif count > 1:
        kind = "aggregate"
    elif batch is not None:
        kind = "fixed"
    else:
        kind = "offline"
    if kind == "batch" and (batch is None or len(published) != 2):
        return "batch row needs a batch size and 'throughput / latency'"
    sla = re.search(r"p99<=(\d+(?:\.\d+)?)ms", t.note)
    sla_ms = float(sla.group(1)) if sla else MLPERF_SLA_MS.get(t.model.strip())
    if kind == "server" and sla_ms is None:
        return "server row without a p99 bound"
    return Plan(kind, name, t.model.strip(), precision, stack, layout, batch, sla_ms,
                tuple(published), extra={"count": count, "work": work})


def _plan_interf(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    if t.confidence == "low" and "fraction of" in t.quantity:
        return "second-hand survey statistic over 250 model pairs (NOT verified); not modelled"
    published = parse_published(t.value)
    if published is None:
        return f"value '{t.value}' is not numeric"
    if "co-locating two DNNs" in t.quantity:
        if "a100-80gb" not in devices:
            return "hw spec 'a100-80gb' not loaded"
        return Plan("mps_interf", "a100-80gb", "resnet50+bert-base", "fp16",
                    published=(published[0],), percent=True)
    found = _device(t, devices)
    if isinstance(found, str):
        return found
    name, dev = found
    if dev.mig is None:
        return f"'{name}' has no MIG"
    return Plan("mig_interf", name, t.model, "int8", published=tuple(published), percent=True)


def _plan_spec(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    found = _device(t, devices)
    if isinstance(found, str):
        return found
    name, _ = found
    published = parse_published(t.value)
    if published is None:
        return f"value '{t.value}' is not numeric"
    q = t.quantity.lower()
    if "bandwidth" in q:
        what = "mem_bw_gbs"
    elif "fp16" in q and "peak" in q:
        what = "peak_fp16"
    else:
        return f"spec quantity '{t.quantity}' not modelled"
    return Plan("spec", name, "-", published=tuple(published), extra={"field": what})


def _plan_mig(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    q = t.quantity
    if t.model == "-" or t.model == "multiple":
        if "SM count" in q:
            tables = ["h100-80gb", "h200-141gb"] if "H100" in t.hardware else ["a100-80gb"]
            return Plan("mig_table", None, "-", published=(),
                        extra={"what": "sms", "tables": tables, "value": t.value})
        if "Memory per profile" in q:
            return Plan("mig_table", None, "-", extra={"what": "mem", "tables": ["a100-80gb"],
                                                       "value": t.value})
        if "Max instances" in q:
            return Plan("mig_table", None, "-", extra={"what": "count", "tables": ["a100-80gb"],
                                                       "value": t.value})
        published = parse_published(t.value)
        if published is None:
            return f"qualitative value '{t.value}'; the model restarts the MPS client " \
                   "(ReconfigModel context_s + reload)"
        if "MIG mode" in q:
            return Plan("reconfig", "a100-80gb", "-", published=tuple(published),
                        extra={"what": "mig_mode"})
        if "shadow" in q or "Re-allocation" in q:
            return Plan("reconfig", "a100-80gb", "-", published=tuple(published),
                        extra={"what": "mps_shadow"})
        return f"quantity '{q}' not modelled"
    return _plan_perf(t, devices)


def _plan_model(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    return Plan("model", None, t.model, extra={"quantity": t.quantity, "value": t.value})


def _plan_link(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    published = parse_published(t.value)
    if published is None:
        return f"value '{t.value}' is not numeric"
    if t.id and "P99 latency increase" in t.quantity:
        return "distributed-vs-single P99 of Facebook DLRM-like models: needs the distributed " \
               "recommendation environment (shard counts and RPC times unpublished)"
    return Plan("link", None, "-", published=tuple(published),
                extra={"quantity": t.quantity, "hardware": t.hardware})


def _plan_rec(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    if t.category.startswith("5-rec") and ("lookups" in t.quantity or "tables" in t.quantity):
        return _plan_model(t, devices)
    return _plan_link(t, devices)


def _plan_storage(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    published = parse_published(t.value)
    if published is None:
        return f"value '{t.value}' is not numeric"
    hw = t.hardware
    if "RecSSD" in hw or "FlashEmbedding" in hw:
        return "near-data-processing SSD speed-up of a whole system: not modelled"
    return Plan("storage", None, "-", published=tuple(published), extra={"hardware": hw})


def _plan_power(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    published = parse_published(t.value)
    if published is None or t.confidence == "low":
        return "second-hand, unverified ratio (EmBench via a survey); not modelled"
    if "A2" in t.hardware:
        return "no hw spec for the A2"
    if "GPU/CPU throughput ratio" in t.quantity:
        return Plan("ratio", "a100-80gb", t.model, published=tuple(published),
                    extra={"other": "xeon-8380h-4s"})
    if "A100-PCIe-40GB" in t.hardware:
        return "no hw spec for the A100-PCIe-40GB (250 W board)"
    if "A100-SXM" in t.hardware:
        return Plan("power", "a100-80gb", t.model, published=tuple(published),
                    extra={"gpus": 8, "host_w": DGX_A100_HOST_W})
    return f"system '{t.hardware}' not modelled"


DGX_A100_HOST_W = 1000.0
"""Host power of a DGX A100 besides its GPUs, W: 2 x 225 W AMD EPYC 7742 (AMD TDP) plus about
550 W for 6 NVSwitches, 9 NICs, memory, storage and fans (assumption; the DGX A100 datasheet's
6.5 kW maximum minus 8 x 400 W GPUs leaves 3.3 kW at peak)."""

_PLANNERS: dict[str, Callable[[Target, Mapping[str, DeviceSpec]], Plan | str]] = {
    "throughput": _plan_perf,
    "latency": _plan_perf,
    "batch": _plan_perf,
    "mig": _plan_mig,
    "mps": _plan_mig,
    "interf": _plan_interf,
    "spec": _plan_spec,
    "model": _plan_model,
    "rec": _plan_rec,
    "link": _plan_link,
    "storage": _plan_storage,
    "power": _plan_power,
}


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------


def stack_params(device: DeviceSpec, stack: str) -> dict[str, float]:
    """The serving-stack parameters of ``device`` (its ``stacks`` over the defaults)."""
    if stack not in STACK_PARAMS:
        raise ValueError(f"unknown serving stack {stack!r}; known: {', '.join(STACK_PARAMS)}")
    return {**STACK_PARAMS[stack], **device.stacks.get(stack, {})}


def _partition(device: DeviceSpec, layout: Sequence[str]) -> Partition:
    return full_gpu(device) if list(layout) == ["full"] else mig_layout(device, layout)[0]


class _Latency:
    """Batch latency (s) of one plan, as a function of samples per batch."""

    def __init__(self, device: DeviceSpec, plan: Plan) -> None:
        st = stack_params(device, plan.stack)
        self.stack = st
        d = device.replace(
            eff_compute_max=min(1.0, device.eff_compute_max * st.get("eff_scale", 1.0)),
            batch_overhead_us=device.batch_overhead_us + st.get("batch_us", 0.0),
            launch_us=device.launch_us + st.get("launch_us", 0.0),
        )
        self.work: WorkloadRef = plan.extra["work"]
        self.model = LatencyModel(d, plan.precision)
        self.partition = _partition(device, plan.layout)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        b = np.asarray(batch, dtype=np.float64)
        w = self.work
        t = self.model.latency_s(w.profile, b * w.per_query, self.partition)
        return t + (self.stack.get("request_us", 0.0) + b * w.input_mb
                    * self.stack.get("us_per_mb", 0.0)) * 1e-6

    def grid(self) -> np.ndarray:
        return np.unique(np.round(np.geomspace(1, self.work.max_batch, 24)))

    def best(self) -> float:
        """Highest samples/s over batch sizes (Offline)."""
        b = self.grid()
        return float((b / self(b)).max())

    def server(self, sla_s: float, c: float) -> float:
        """Highest sustainable samples/s under a p99 bound (see the module docstring)."""
        b = self.grid()
        lat = self(b)
        g = c * np.maximum(sla_s / lat - 1.0, 0.0)
        return float((b / lat * g / (1.0 + g)).max())


def predict(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    """Predicted numbers of a plan, in the units of its published numbers."""
    return _PREDICTORS[plan.kind](plan, devices)


def _dev(plan: Plan, devices: Mapping[str, DeviceSpec]) -> DeviceSpec:
    assert plan.device is not None
    return devices[plan.device]


def _pred_perf(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    dev = _dev(plan, devices)
    lat = _Latency(dev, plan)
    if plan.kind == "offline":
        return [lat.best()]
    if plan.kind == "server":
        assert plan.sla_ms is not None
        return [lat.server(plan.sla_ms * 1e-3, lat.stack["server_c"])]
    if plan.kind == "single":
        return [float(lat(np.array(1.0))) * 1e3]
    if plan.kind in ("batch", "fixed"):
        assert plan.batch is not None
        b = float(plan.batch)
        t = float(lat(np.array(b)))
        return [b / t, t * 1e3] if plan.kind == "batch" else [b / t]
    # aggregate: n identical slices, all busy
    n = int(plan.extra["count"])
    parts = mig_layout(dev, list(plan.layout) * n)
    model = InterferenceModel(dev, plan.precision)
    work: WorkloadRef = plan.extra["work"]
    slow = model.slowdowns(parts, [(work.profile, 64 * work.per_query)] * n)
    return [float(n * lat.best() / slow[0])]


def _pred_mig_interf(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    dev = _dev(plan, devices)
    assert dev.mig is not None
    table = MIG_TABLES[dev.mig]
    one = min(table.profiles, key=lambda p: (p.compute_slices, p.memory_slices))
    n = table.compute_slices // one.compute_slices
    parts = mig_layout(dev, [one.name] * n)
    model = InterferenceModel(dev, plan.precision)
    others = ["resnet50", "bert-base", "mobilenet_v2", "googlenet", "resnet50", "bert-base"]
    running = [("resnet50", 64)] + [(others[i % len(others)], 64) for i in range(n - 1)]
    slow = model.slowdowns(parts, running)[0]
    return [(1.0 / slow - 1.0) * 100.0 for _ in plan.published]


def _pred_mps_interf(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    dev = _dev(plan, devices)
    parts = mps_layout(dev, [50, 50])
    model = InterferenceModel(dev, plan.precision)
    slow = model.slowdowns(parts, [("resnet50", 8), ("bert-base", 8)])
    return [float(np.mean(slow) - 1.0) * 100.0]


def _pred_spec(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    dev = _dev(plan, devices)
    what = plan.extra["field"]
    if what == "peak_fp16":
        return [dev.peak("fp16") / 1e12]
    return [float(getattr(dev, what))]


def _pred_reconfig(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    dev = _dev(plan, devices)
    if plan.extra["what"] == "mig_mode":  # seconds to switch MIG on (no instance yet)
        steps = ReconfigModel(dev).steps(["full"], ["7g.80gb"], [None])
        return [steps["mode"]]
    # milliseconds to move an MPS share to a standby client (GSLICE's shadow instance)
    model = ReconfigModel(dev, params={"mps_shadow": 1.0})
    return [model.mean(["mps:50", "mps:50"], ["mps:30", "mps:70"], ["resnet50", "resnet50"],
                       drain_s=0.0) * 1e3]


def _pred_power(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    dev = _dev(plan, devices)
    work = _workload(plan.model, dev)
    assert not isinstance(work, str)
    perf = Plan("offline", plan.device, plan.model, "int8", "mlperf", extra={"work": work})
    tput = _pred_perf(perf, devices)[0]
    power = PowerModel(dev, "int8", {"host_w": plan.extra["host_w"] / plan.extra["gpus"]})
    batch = work.max_batch * work.per_query
    return [power.samples_per_joule(tput, full_gpu(dev), work.profile, batch)]


def _pred_ratio(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    out = []
    for model in ("resnet50", "bert-99"):
        vals = []
        for name in (plan.device, plan.extra["other"]):
            assert name is not None
            dev = devices[name]
            work = _workload(model, dev)
            assert not isinstance(work, str)
            perf = Plan("offline", name, model, "int8", "mlperf", extra={"work": work})
            vals.append(_pred_perf(perf, devices)[0])
        out.append(vals[0] / vals[1])
    return out


_PREDICTORS: dict[str, Callable[[Plan, Mapping[str, DeviceSpec]], list[float]]] = {
    **dict.fromkeys(PERF_KINDS, _pred_perf),
    "mig_interf": _pred_mig_interf,
    "mps_interf": _pred_mps_interf,
    "spec": _pred_spec,
    "reconfig": _pred_reconfig,
    "power": _pred_power,
    "ratio": _pred_ratio,
}


def _keyed(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        if ":" in part:
            k, v = part.split(":", 1)
            num = _number(v)
            if num is not None:
                out[k.strip()] = num
    return out


def _compare_keyed(predicted: Mapping[str, float], published: str) -> tuple[str, str, float]:
    pub = _keyed(published)
    errs = [abs(predicted[k] - v) / abs(v) for k, v in pub.items() if k in predicted and v]
    missing = [k for k in pub if k not in predicted]
    err = max(errs) if errs and not missing else math.inf
    pred_text = ", ".join(f"{k}:{predicted[k]:g}" for k in pub if k in predicted)
    return pred_text, ", ".join(f"{k}:{v:g}" for k, v in pub.items()), err


def _mig_table_row(plan: Plan) -> tuple[str, str, float]:
    what = plan.extra["what"]
    errs, texts = [], []
    pub_text = ""
    for tname in plan.extra["tables"]:
        table = MIG_TABLES[tname]
        if what == "count":
            pred = {k: float(v) for k, v in max_instances(tname).items()}
        elif what == "mem":
            pred = {}
            for p in table.profiles:
                key = "1g(x2mem)" if p.short == "1g.2x" else p.short
                pred[key] = p.mem_gb * 1000.0
            pred = {k: round(v) for k, v in pred.items()}
        else:
            pred = {p.short: float(p.sms) for p in table.profiles if p.short != "1g.2x"}
        text, pub_text, err = _compare_keyed(pred, plan.extra["value"].split(";")[0])
        texts.append(text)
        errs.append(err)
    return " | ".join(texts), pub_text, max(errs)


def _model_row(plan: Plan) -> tuple[str, str, float]:
    q, value, model = plan.extra["quantity"], plan.extra["value"], plan.model
    pub = _numbers(value)
    if model in ("resnet50", "mobilenet_v2", "googlenet", "inception_v3", "vgg16"):
        prof = build_profile(model)
        pred = [prof.params / 1e6, prof.macs / 1e9]
    elif model.startswith("gpt2"):
        pred = [build_profile(n).params / 1e6
                for n in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")]
    elif model == "bert-large":
        pred = [build_profile("bert-large").params / 1e6,
                build_profile("bert-large", seq_len=512).flops / 1e9]
    elif "model size" in q and model.startswith("dlrm-v2"):
        # 204,184,588 rows x 128 x 4 B = 104.5e9 B: the published "97.31 GB" is GiB
        pred = [build_profile("dlrm-v2").weight_bytes("fp32") / 2**30]
    elif "lookups" in q:
        pred = [float(sum(DLRM_V2_MULTI_HOT))]
    elif "tables" in q:
        name = {"DeepRecSys RM1": "dlrm-rm1", "DeepRecSys RM2": "dlrm-rm2",
                "DeepRecSys RM3": "dlrm-rm3"}.get(model)
        if name is None:
            return "", value, math.nan
        emb = [lay for lay in build_profile(name).layers if lay.kind == "embedding"]
        dim = emb[0].act_out
        pred = [float(len(emb)), emb[0].params / dim, dim, emb[0].act_in / dim]
    else:
        return "", value, math.nan
    if len(pred) != len(pub):
        return " / ".join(f"{v:.4g}" for v in pred), value, math.inf
    err = max(abs(a - b) / abs(b) for a, b in zip(pred, pub, strict=True))
    return " / ".join(f"{v:.4g}" for v in pred), value, err


def _link_values(plan: Plan) -> list[float]:
    q, hw = plan.extra["quantity"], plan.extra["hardware"]
    if "NVLink" in q:
        link = LINKS["nvlink3" if "A100" in hw else "nvlink4"]
        return [link.bandwidth_gbs * 2]
    if "PCIe Gen4" in q:
        return [LINKS["pcie4"].bandwidth_gbs]
    if "PCIe Gen5" in q:
        return [LINKS["pcie5"].bandwidth_gbs * 2]
    if "InfiniBand" in q:
        return [LINKS["ib-hdr"].bandwidth_gbs * 8, LINKS["ib-ndr"].bandwidth_gbs * 8]
    if "switch ASIC" in q:
        return [LINKS["ethernet-100g"].latency_us * 1e3]
    if "TCP" in q:
        eth = LINKS["ethernet-100g"]
        return [eth.latency_us + eth.rpc_us]
    raise KeyError(q)


def _storage_values(plan: Plan) -> list[float]:
    hw = plan.extra["hardware"]
    if "Optane" in hw:
        return [1e6 / TIERS["optane-ssd"].latency_us]
    if "NAND" in hw or "MP600" in hw:
        return [1e6 / TIERS["nvme-ssd"].latency_us]
    if "DDR" in hw:
        return [TIERS["dram"].latency_us * 1e3]
    if "CXL" in hw:
        return [TIERS["cxl"].latency_us / TIERS["dram"].latency_us]
    raise KeyError(hw)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One validated target (a ``validation.csv`` row).

    Attributes:
        id: Target id.
        category: Target category.
        predicted: Predicted value(s) as text (empty when skipped).
        published: Published value as text.
        rel_error: Relative error (NaN when skipped; the worst of several numbers).
        reason: Why the row was skipped (empty when predicted).
        kind: The plan kind (empty when skipped).
        device: The device name (empty when none).
        model: The target's model.
        log_ratios: ``log(predicted / published)`` per point number (for fitting).
    """

    id: str
    category: str
    predicted: str
    published: str
    rel_error: float
    reason: str = ""
    kind: str = ""
    device: str = ""
    model: str = ""
    log_ratios: tuple[float, ...] = ()

    @property
    def skipped(self) -> bool:
        return bool(self.reason)


def _fmt(values: Sequence[float]) -> str:
    return " / ".join(f"{v:.4g}" for v in values)


def evaluate(t: Target, plan: Plan | str, devices: Mapping[str, DeviceSpec]) -> Result:
    """Predict one planned target and compare it with the published value."""
    if isinstance(plan, str):
        return Result(t.id, t.category, "", t.value, math.nan, plan, model=t.model)
    dev = plan.device or ""
    if plan.kind == "mig_table":
        pred, _, err = _mig_table_row(plan)
        return Result(t.id, t.category, pred, t.value, err, "", plan.kind, dev, t.model)
    if plan.kind == "model":
        pred, _, err = _model_row(plan)
        reason = "" if not math.isnan(err) else f"model '{t.model}' has no profile"
        return Result(t.id, t.category, pred, t.value, err, reason, plan.kind, dev, t.model)
    try:
        if plan.kind == "link":
            values = _link_values(plan)
        elif plan.kind == "storage":
            values = _storage_values(plan)
        else:
            values = predict(plan, devices)
    except KeyError as exc:
        return Result(t.id, t.category, "", t.value, math.nan, f"not modelled: {exc}",
                      model=t.model)
    pub = list(plan.published)
    if len(values) != len(pub):
        return Result(t.id, t.category, _fmt(values), t.value, math.nan,
                      f"predicted {len(values)} numbers for {len(pub)} published", plan.kind,
                      dev, t.model)
    if plan.percent:
        values_c = [1.0 + v / 100.0 for v in values]
        pub = [Bound(1.0 + b.lo / 100.0, 1.0 + b.hi / 100.0) for b in pub]
    else:
        values_c = list(values)
    err = max(b.error(v) for b, v in zip(pub, values_c, strict=True))
    if plan.percent:  # fit the change itself: -1.6% vs -0.9% is a factor, not 0.7%
        logs = tuple(math.log(v / b.lo) for b, v in zip(plan.published, values, strict=True)
                     if b.point and b.lo * v > 0)
    else:
        logs = tuple(math.log(max(v, 1e-300) / b.lo)
                     for b, v in zip(pub, values_c, strict=True) if b.point and b.lo > 0)
    return Result(t.id, t.category, _fmt(values), t.value, err, "", plan.kind, dev, t.model,
                  logs)


def validate(targets: Iterable[Target], devices: Mapping[str, DeviceSpec]) -> list[Result]:
    """Predict every target that can be predicted (the others carry a reason)."""
    return [evaluate(t, plan_target(t, devices), devices) for t in targets]


@dataclass(frozen=True)
class Summary:
    """Error statistics of a group of results."""

    group: str
    n: int
    skipped: int
    median: float
    p90: float
    max: float


def summarize(results: Sequence[Result], key: Callable[[Result], str] | None = None
              ) -> list[Summary]:
    """Median, 90th percentile and largest relative error per group (default: category)."""
    key = key or (lambda r: r.category)
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    out = []
    for g in sorted(groups):
        rs = groups[g]
        errs = np.array([r.rel_error for r in rs if not r.skipped and np.isfinite(r.rel_error)])
        n_skip = sum(r.skipped for r in rs)
        if errs.size:
            out.append(Summary(g, int(errs.size), n_skip, float(np.median(errs)),
                               float(np.percentile(errs, 90)), float(errs.max())))
        else:
            out.append(Summary(g, 0, n_skip, math.nan, math.nan, math.nan))
    return out


PERFORMANCE_CATEGORIES = ("2-MIG", "3-throughput", "3-latency", "3-batch")
"""Categories whose throughput/latency rows the calibration goal is about."""


def is_performance(r: Result) -> bool:
    """A predicted throughput or latency row (the calibration goal's population)."""
    return r.kind in PERF_KINDS and not r.skipped


# ---------------------------------------------------------------------------------------------
# Fitting to published targets
# ---------------------------------------------------------------------------------------------

GLOBAL_PARAMS: dict[str, tuple[float, float]] = {
    "eff_compute_half_mflop": (0.01, 200.0),
    "eff_memory": (0.2, 1.0),
    "launch_us": (0.1, 50.0),
    "batch_overhead_us": (1.0, 5000.0),
    "eff_precision.int8": (0.3, 1.5),
}
"""Device parameters that may be fitted (shared by all GPUs unless fitted per device)."""

PER_DEVICE_PARAMS: dict[str, tuple[float, float]] = {
    "eff_compute_max": (0.05, 1.0),
    "interference.mig": (1e-4, 0.5),
}
"""Device parameters fitted per device by default, with bounds."""

STACK_BOUNDS: dict[str, tuple[float, float]] = {
    "request_us": (1.0, 1e5),
    "us_per_mb": (1.0, 1e5),
    "server_c": (0.01, 1000.0),
    "eff_scale": (0.05, 1.5),
    "batch_us": (1.0, 1e5),
    "launch_us": (0.01, 500.0),
}
"""Bounds of the stack parameters (``stacks.<stack>.<key>``)."""

DEFAULT_PER_DEVICE = ("eff_compute_max", "interference.mig")

CPU_OWN_PARAMS = ("eff_compute_max", "eff_compute_half_mflop")
"""Parameters fitted for each CPU in a fit (the GPU-wide globals do not apply to CPUs, and a
CPU engine spreading one small batch over a hundred cores loses more than a GPU does)."""


def param_bounds(name: str) -> tuple[float, float]:
    """Bounds of a fittable parameter name (``eff_memory``, ``stacks.triton.us_per_mb``, ...).

    Raises:
        ValueError: unknown name.
    """
    if name.startswith("stacks."):
        parts = name.split(".")
        if len(parts) == 3 and parts[1] in STACK_PARAMS and parts[2] in STACK_PARAMS[parts[1]]:
            return STACK_BOUNDS[parts[2]]
    elif name in GLOBAL_PARAMS or name in PER_DEVICE_PARAMS:
        return {**GLOBAL_PARAMS, **PER_DEVICE_PARAMS}[name]
    known = [*GLOBAL_PARAMS, *PER_DEVICE_PARAMS,
             *(f"stacks.{s}.{k}" for s, kv in STACK_PARAMS.items() for k in kv)]
    raise ValueError(f"unknown fit parameter {name!r}; known: {', '.join(known)}")


@dataclass(frozen=True)
class FitParam:
    """One fitted parameter: ``scope`` is ``"global"`` (every device of the kind) or a device."""

    name: str
    scope: str
    lo: float
    hi: float
    x0: float

    @property
    def label(self) -> str:
        return f"{self.scope}.{self.name}"


@dataclass
class FitResult:
    """What :func:`fit_targets` found.

    Attributes:
        devices: Every input device with the fitted parameters applied.
        params: ``label -> value`` of the fitted parameters.
        train_ids: The target ids fitted on.
        fitted_devices: Devices whose own parameters were fitted.
        cost: Final sum of squared log errors.
        success: Whether the optimiser converged.
        message: The optimiser's message.
    """

    devices: dict[str, DeviceSpec]
    params: dict[str, float]
    train_ids: list[str]
    fitted_devices: list[str]
    cost: float
    success: bool
    message: str


def _get(device: DeviceSpec, name: str) -> float:
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        return float(stack_params(device, stack)[key])
    if "." in name:
        table, key = name.split(".", 1)
        current = dict(getattr(device, table))
        if table == "eff_precision":
            return float(current.get(key, 1.0))
        if table == "interference":
            return float(current.get(key, INTERFERENCE_DEFAULTS[key]))
        return float(current[key])
    return float(getattr(device, name))


def default_value(name: str) -> float:
    """The neutral starting value of a fittable parameter (the field's default).

    Fits start here rather than from the specs' current values, so that a fit does not depend
    on earlier fits written into ``conf/hw`` (and a held-out experiment cannot see, through its
    starting point, the rows it holds out).
    """
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        return STACK_PARAMS[stack][key]
    if name.startswith("eff_precision."):
        return 1.0
    if name.startswith("interference."):
        return INTERFERENCE_DEFAULTS[name.split(".", 1)[1]]
    field_ = next(f for f in dataclasses.fields(DeviceSpec) if f.name == name)
    return float(field_.default)  # type: ignore[arg-type]


def reset_fitted(device: DeviceSpec) -> DeviceSpec:
    """``device`` with every parameter a published-target fit may set back at its default."""
    return device.replace(
        **{n: default_value(n) for n in GLOBAL_PARAMS if "." not in n},
        eff_compute_max=default_value("eff_compute_max"),
        eff_precision={}, stacks={},
        interference={k: v for k, v in device.interference.items() if k != "mig"},
    )


def _set(device: DeviceSpec, name: str, value: float) -> DeviceSpec:
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        stacks = {k: dict(v) for k, v in device.stacks.items()}
        stacks.setdefault(stack, {})[key] = float(value)
        return device.replace(stacks=stacks)
    if "." in name:
        table, key = name.split(".", 1)
        current = dict(getattr(device, table))
        current[key] = float(value)
        return device.replace(**{table: current})
    return device.replace(**{name: float(value)})


def apply_params(devices: Mapping[str, DeviceSpec], params: Sequence[FitParam],
                 x: Sequence[float]) -> dict[str, DeviceSpec]:
    """Devices with parameter values ``x`` applied: global device parameters to every GPU,
    global stack parameters to every device, then the per-device ones."""
    out = dict(devices)
    pairs = list(zip(params, x, strict=True))
    for p, v in pairs:
        if p.scope != "global":
            continue
        for n, d in out.items():
            if d.kind == "gpu" or p.name.startswith("stacks."):
                out[n] = _set(d, p.name, v)
    for p, v in pairs:
        if p.scope != "global":
            out[p.scope] = _set(out[p.scope], p.name, v)
    return out


def _relevant(name: str, plans: Sequence[Plan]) -> bool:
    """Whether some plan's prediction depends on parameter ``name``."""
    perf = [p for p in plans if p.kind in PERF_KINDS]
    if name == "interference.mig":
        return any(p.kind == "mig_interf" for p in plans) or any(
            p.kind == "aggregate" for p in perf)
    if name == "eff_precision.int8":
        return any(p.precision == "int8" for p in perf)
    if name.startswith("stacks."):
        _, stack, key = name.split(".")
        used = [p for p in perf if p.stack == stack]
        if key == "server_c":
            return any(p.kind == "server" for p in used)
        return bool(used)
    return bool(perf)


def fit_targets(targets: Sequence[Target], devices: Mapping[str, DeviceSpec],
                train_ids: Iterable[str], *, per_device: Sequence[str] = DEFAULT_PER_DEVICE,
                prior_weight: float = 0.02, max_nfev: int = 200) -> FitResult:
    """Fit efficiencies and stack overheads to the training targets (log relative error).

    Every parameter starts from :func:`default_value`. Parameters named in ``per_device`` are
    fitted for each device that has training rows depending on them; the other
    :data:`GLOBAL_PARAMS` are shared by every GPU and the other stack parameters by every
    device. Devices without training rows get, for each per-device
    parameter, the geometric mean of the values fitted for devices of their kind (or keep
    theirs when none was fitted). A weak prior (``prior_weight`` times the log distance from
    the starting value) keeps parameters that the data cannot pin down where they were.

    Raises:
        ValueError: no training target can be predicted, or an unknown parameter name.
    """
    from scipy.optimize import least_squares

    for name in per_device:
        param_bounds(name)
    original = devices
    # Start every device from the defaults: parameters that no training row pins down must
    # not keep values an earlier fit (written into conf/hw) got from the held-out rows.
    devices = {n: reset_fitted(d) for n, d in devices.items()}
    train = set(train_ids)
    planned = [(t, plan_target(t, devices)) for t in targets if t.id in train]
    usable = [(t, p) for t, p in planned if isinstance(p, Plan) and p.fittable]
    if not usable:
        raise ValueError("no fittable target among the training ids")
    plans = [p for _, p in usable]
    used_devices = sorted({p.device for p in plans if p.device is not None})
    gpu_plans = [p for p in plans if p.device and devices[p.device].kind == "gpu"]

    def start(name: str, lo: float, hi: float) -> float:
        return _clip(default_value(name) or lo * 10, lo, hi)
    candidates = [*GLOBAL_PARAMS, *PER_DEVICE_PARAMS,
                  *(f"stacks.{s}.{k}" for s, kv in STACK_PARAMS.items() for k in kv
                    if (s, k) not in FIXED_STACK_PARAMS)]
    params: list[FitParam] = []
    for name in candidates:
        lo, hi = param_bounds(name)
        for dev in used_devices:
            if devices[dev].kind == "cpu" and name in CPU_OWN_PARAMS and name not in per_device:
                mine = [p for p in plans if p.device == dev]
                if _relevant(name, mine):
                    params.append(FitParam(name, dev, lo, hi, start(name, lo, hi)))
        if name in per_device:
            for dev in used_devices:
                mine = [p for p in plans if p.device == dev]
                if _relevant(name, mine):
                    params.append(FitParam(name, dev, lo, hi, start(name, lo, hi)))
        elif name.startswith("stacks.") and _relevant(name, plans):
            params.append(FitParam(name, "global", lo, hi, start(name, lo, hi)))
        elif name in GLOBAL_PARAMS and _relevant(name, gpu_plans):
            params.append(FitParam(name, "global", lo, hi, start(name, lo, hi)))
    x0 = np.log([p.x0 for p in params])
    lo_z = np.log([p.lo for p in params])
    hi_z = np.log([p.hi for p in params])

    def residuals(z: np.ndarray) -> np.ndarray:
        devs = apply_params(devices, params, np.exp(z))
        res: list[float] = []
        for t, p in usable:
            res.extend(evaluate(t, p, devs).log_ratios)
        res.extend(prior_weight * (z - x0))
        return np.asarray(res)

    sol = least_squares(residuals, x0, bounds=(lo_z, hi_z), method="trf", x_scale=1.0,
                        diff_step=1e-3, max_nfev=max_nfev)
    values = np.exp(sol.x)
    fitted = apply_params(devices, params, values)
    for name, d in devices.items():
        if d.kind == "cpu" and name not in used_devices:
            fitted[name] = original[name]  # CPUs are fitted from profiles, not from GPU rows
            continue
        for pname in per_device:
            if pname.startswith("interference.mig") and d.mig is None:
                continue
            own = [v for p, v in zip(params, values, strict=True)
                   if p.name == pname and p.scope != "global" and devices[p.scope].kind == d.kind]
            has_own = any(p.name == pname and p.scope == name for p in params)
            if own and not has_own:
                fitted[name] = _set(fitted[name], pname, float(np.exp(np.mean(np.log(own)))))
    return FitResult(
        devices=fitted,
        params={p.label: float(v) for p, v in zip(params, values, strict=True)},
        train_ids=sorted(t.id for t, _ in usable),
        fitted_devices=used_devices,
        cost=float(sol.cost),
        success=bool(sol.success),
        message=str(sol.message),
    )


def _clip(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo * 1.0001), hi / 1.0001)


# ---------------------------------------------------------------------------------------------
# Profiles (measured latencies on a local device)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRow:
    """One measurement of a profile CSV (see the module docstring)."""

    model: str
    batch: int
    share: float
    latency_ms: float
    corunner_model: str = ""
    corunner_batch: int = 0
    line: int = 0

    @property
    def colocated(self) -> bool:
        return bool(self.corunner_model)


def parse_model(spec: str) -> WorkloadProfile:
    """A profile from ``name`` or ``name@N`` (``seq_len``/``context_len``; see the module
    docstring).

    Raises:
        ValueError: unknown model or bad length.
    """
    name, _, n = spec.partition("@")
    if not n:
        return build_profile(name)
    try:
        length = int(n)
    except ValueError:
        raise ValueError(f"model '{spec}': the part after '@' must be an integer") from None
    if name.endswith("-decode"):
        return build_profile(name, context_len=length)
    return build_profile(name, seq_len=length)


def read_profile(path: str | Path) -> list[ProfileRow]:
    """Rows of a profile CSV.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column or a malformed row, naming the file and line.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty file; expected a header {','.join(PROFILE_COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in PROFILE_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path} line 1: missing column(s) {', '.join(missing)}")
    out = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{path} line {lineno}: expected {len(header)} fields, got {len(row)}")
        rec = {h: c.strip() for h, c in zip(header, row, strict=True)}
        try:
            item = ProfileRow(
                rec["model"], int(rec["batch"]), float(rec["share"]), float(rec["latency_ms"]),
                rec["corunner_model"], int(rec["corunner_batch"] or 0), lineno)
            parse_model(item.model)
            if item.corunner_model:
                parse_model(item.corunner_model)
        except ValueError as exc:
            raise ValueError(f"{path} line {lineno}: {exc}") from None
        if item.batch < 1 or not 0 < item.share <= 1 or not item.latency_ms > 0:
            raise ValueError(f"{path} line {lineno}: need batch >= 1, 0 < share <= 1, "
                             "latency_ms > 0")
        if item.corunner_model and item.corunner_batch < 1:
            raise ValueError(f"{path} line {lineno}: corunner_batch must be >= 1")
        out.append(item)
    if not out:
        raise ValueError(f"{path}: no measurements")
    return out


def write_profile(path: str | Path, rows: Iterable[ProfileRow]) -> str:
    """The CSV text of ``rows`` (also written to ``path`` unless it is empty)."""
    lines = [",".join(PROFILE_COLUMNS)]
    for r in rows:
        lines.append(f"{r.model},{r.batch},{r.share:g},{r.latency_ms:.4f},{r.corunner_model},"
                     f"{r.corunner_batch if r.corunner_model else ''}")
    text = "\n".join(lines) + "\n"
    if str(path):
        Path(path).write_text(text, encoding="utf-8")
    return text


def share_partitions(device: DeviceSpec, share: float, colocated: bool
                     ) -> tuple[Partition, Partition]:
    """The measured job's partition and its co-runner's for a profile row."""
    total = device.sm_count
    mine = max(1, round(share * total))
    other = total - mine if mine < total else total
    mode = "mps" if colocated or mine < total else "exclusive"
    bw = 1.0
    a = Partition(f"share-{mine}", mine, bw, device.mem_gb * mine / total, mode != "mps", mode)
    b = Partition(f"share-{other}", other, bw, device.mem_gb * other / total, False, "mps")
    return a, b


def predict_profile(rows: Sequence[ProfileRow], device: DeviceSpec,
                    precision: str = "fp32") -> np.ndarray:
    """Predicted ``latency_ms`` of every profile row on ``device``."""
    model = LatencyModel(device, precision)
    intf = InterferenceModel(device, precision) if any(r.colocated for r in rows) else None
    out = np.empty(len(rows))
    for i, r in enumerate(rows):
        prof = parse_model(r.model)
        mine, other = share_partitions(device, r.share, r.colocated)
        t = float(model.latency_s(prof, r.batch, mine))
        if r.colocated and intf is not None:
            co = parse_model(r.corunner_model)
            t *= float(intf.slowdowns([mine, other], [(prof, r.batch),
                                                      (co, r.corunner_batch)])[0])
        out[i] = t * 1e3
    return out


PROFILE_PARAMS: dict[str, tuple[float, float]] = {
    "sm_contention": (1e-3, 10.0),
    "eff_compute_max": (0.02, 1.0),
    "eff_compute_half_mflop": (0.001, 500.0),
    "eff_memory": (0.05, 1.0),
    "launch_us": (0.1, 2000.0),
    "batch_overhead_us": (1.0, 1e5),
}
"""Device parameters fitted to solo profile rows. On a CPU running eager PyTorch,
``eff_memory`` also absorbs the traffic of the unfused operators (batch norm, activations and
adds run as separate passes over memory; the profiles count fused engines), so it comes out
far below the fraction of the bandwidth a single stream reaches."""

PROFILE_INTERFERENCE: dict[str, tuple[float, float]] = {
    "interference.mps_sm": (0.05, 3.0),
    "interference.mps_bw": (1e-3, 10.0),
    "interference.mps_cache": (1e-3, 3.0),
}
"""Interference parameters fitted to co-located profile rows."""


@dataclass
class ProfileFit:
    """What :func:`fit_profile` found: the fitted device, parameters, and per-row results."""

    device: DeviceSpec
    params: dict[str, float]
    train: np.ndarray
    predicted_ms: np.ndarray
    measured_ms: np.ndarray
    cost: float
    success: bool


def fit_profile(rows: Sequence[ProfileRow], device: DeviceSpec, train: np.ndarray,
                precision: str = "fp32", *, prior_weight: float = 0.02) -> ProfileFit:
    """Fit the device's efficiencies (solo rows) and interference (co-located rows).

    Args:
        rows: Profile measurements.
        device: The device to fit (the fitted parameters start from :func:`default_value`).
        train: Boolean mask of the rows to fit on; the others are held out.
        precision: Precision of the measurements.
        prior_weight: Weight of the log distance from the starting values.

    Raises:
        ValueError: no solo row in the training mask.
    """
    from scipy.optimize import least_squares

    train = np.asarray(train, dtype=bool)
    solo = [r for r, m in zip(rows, train, strict=True) if m and not r.colocated]
    if not solo:
        raise ValueError("profile fit needs at least one training row measured alone")
    names = list(PROFILE_PARAMS)
    if any(r.colocated for r, m in zip(rows, train, strict=True) if m):
        names += list(PROFILE_INTERFERENCE)
    bounds = {**PROFILE_PARAMS, **PROFILE_INTERFERENCE}
    x0 = np.log([_clip(default_value(n) or 0.1, *bounds[n]) for n in names])
    lo = np.log([bounds[n][0] for n in names])
    hi = np.log([bounds[n][1] for n in names])
    fit_rows = [r for r, m in zip(rows, train, strict=True) if m]
    measured = np.array([r.latency_ms for r in fit_rows])

    def with_params(z: np.ndarray) -> DeviceSpec:
        d = device
        for n, v in zip(names, np.exp(z), strict=True):
            d = _set(d, n, float(v))
        return d

    def residuals(z: np.ndarray) -> np.ndarray:
        pred = predict_profile(fit_rows, with_params(z), precision)
        return np.concatenate([np.log(pred / measured), prior_weight * (z - x0)])

    sol = least_squares(residuals, x0, bounds=(lo, hi), method="trf", diff_step=1e-3,
                        max_nfev=300)
    fitted = with_params(sol.x)
    return ProfileFit(
        device=fitted,
        params={n: float(v) for n, v in zip(names, np.exp(sol.x), strict=True)},
        train=train,
        predicted_ms=predict_profile(rows, fitted, precision),
        measured_ms=np.array([r.latency_ms for r in rows]),
        cost=float(sol.cost),
        success=bool(sol.success),
    )
