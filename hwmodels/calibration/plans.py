"""Plans: what each published target means to the hardware models, or why it is skipped.

:func:`plan_target` maps each row of a targets CSV (:mod:`hwmodels.calibration.targets`) to a
prediction plan (:class:`Plan`: kind, device, layout, precision, serving stack, the parsed
published numbers), or to the reason it is skipped:

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
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hwmodels.calibration.targets import Bound, Target, parse_published
from hwmodels.specs import DeviceSpec
from hwmodels.workloads import (
    DLRM_V2_ROWS,
    Layer,
    WorkloadProfile,
    build_profile,
)

MLPERF_BERT_SEQ_LEN = 172
"""Average real tokens of an MLPerf SQuAD v1.1 sample (see the module docstring)."""

MLPERF_DLRM_PAIRS = 270
"""Mean user-item pairs per MLPerf DLRM sample (see the module docstring)."""

MLPERF_SLA_MS = {"resnet50": 15.0, "bert-99": 130.0, "dlrm-99": 30.0}
"""MLPerf Inference Server-scenario p99 latency bounds (inference rules; rows T003, T019, T033)."""


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


def workload_ref(model: str, device: DeviceSpec) -> WorkloadRef | str:
    """The workload a target's model string runs on ``device``, or why there is none."""
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


HARDWARE: tuple[tuple[str, str], ...] = ()
"""``(regular expression, conf/hw name)`` for hardware strings that are not a device name with
a suffix (:func:`device_name` finds the others by the ``name`` and ``aliases`` of the
``conf/hw`` YAMLs)."""

_SUFFIXES = (re.compile(r"\s*\(per GPU of \d+\)$"), re.compile(r"\s+(MIG|\dx\dg)\b.*$"),
             re.compile(r"(?<=[0-9A-Za-z])x\d+(_[0-9A-Za-z]+)*$"))
"""A per-GPU note, a MIG layout (``"A100-SXM4-80GB MIG 1g.10gb"``) or an MLPerf system count and
stack (``"H100-SXM-80GBx8_TRT"``) after the device name."""

_PREFIX = re.compile(r"^(NVIDIA|Tesla)\s+", re.IGNORECASE)
"""A vendor or product-line word before the device name, as ``nvidia-smi`` and
``torch.cuda.get_device_name`` report it (``"NVIDIA H100 80GB HBM3"``)."""


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


@functools.cache
def _published_names() -> dict[str, str]:
    """Normalised published name -> ``conf/hw`` name, from every YAML's name and aliases.

    Raises:
        ValueError: two devices claim the same name.
    """
    from hwmodels.specs import DEFAULT_HW_DIR, load_device

    out: dict[str, str] = {}
    for path in sorted(DEFAULT_HW_DIR.glob("*.yaml")):
        spec = load_device(str(path))
        for name in (spec.name, *spec.aliases):
            key = _key(name)
            if out.get(key, path.stem) != path.stem:
                raise ValueError(f"published name {name!r} is claimed by both "
                                 f"{out[key]} and {path.stem}")
            out[key] = path.stem
    return out


def device_name(hardware: str) -> str | None:
    """The ``conf/hw`` name for a targets CSV hardware string, or None.

    A string names a device by its YAML ``name`` or one of its ``aliases`` (case, spaces and
    underscores aside), optionally after ``NVIDIA``/``Tesla`` and followed by ``(per GPU of 8)``,
    a MIG layout or an MLPerf system count (``x8_TRT``).
    """
    text = hardware.strip()
    for pattern, name in HARDWARE:
        if re.match(pattern, text):
            return name
    names = _published_names()
    bare = _PREFIX.sub("", text)
    for candidate in (text, bare, *(rx.sub("", bare) for rx in _SUFFIXES)):
        hit = names.get(_key(candidate))
        if hit is not None:
            return hit
    return None


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
        stack: Serving stack (a key of :data:`~hwmodels.calibration.prediction.STACK_PARAMS`).
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
    work = workload_ref(t.model, dev)
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
        if "MIG instance operations" in q and len(published) == 3:
            return Plan("reconfig", "a100-80gb", "-", published=tuple(published),
                        extra={"what": "mig_ops"})
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

def _plan_colocation(t: Target, devices: Mapping[str, DeviceSpec]) -> Plan | str:
    """gpulet samples (PyTorch eager on an A100 under MPS): the whole data set is the check."""
    return ("a sample of the gpulet co-location measurements (PyTorch eager, TF32): checked "
            "with all 4,095 rows by experiments.calibrate profile=gpulet:PATH hw=a100-40gb "
            "(calibration/FIDELITY.md, Interference) and by the hwmodels tests")


_PLANNERS: dict[str, Callable[[Target, Mapping[str, DeviceSpec]], Plan | str]] = {
    "throughput": _plan_perf,
    "latency": _plan_perf,
    "batch": _plan_perf,
    "mig": _plan_mig,
    "mps": _plan_mig,
    "interf": _plan_interf,
    "colocation": _plan_colocation,
    "spec": _plan_spec,
    "model": _plan_model,
    "rec": _plan_rec,
    "link": _plan_link,
    "storage": _plan_storage,
    "power": _plan_power,
}
