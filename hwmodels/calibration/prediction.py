"""Predictions: the hardware models' numbers for a plan, in the units of its published numbers.

Serving stacks (:data:`STACK_PARAMS`, fitted, stored in each spec's ``stacks``):
``mlperf`` (TensorRT/OpenVINO under LoadGen: a per-query overhead ``request_us``; in the
Server scenario, Poisson arrivals queue behind batches of latency ``T``, and the p99 bound
``L`` leaves room for a waiting time of about ``server_c * (L / T - 1)`` service times, so
the load may reach ``rho = g / (1 + g)`` with ``g = server_c * (L / T - 1)`` as in an
M/D/1 queue: the throughput is the best ``rho * b / T(b)`` over batches with ``T(b) < L``),
``triton`` (end to end through a Triton client:
``request_us`` per request plus ``us_per_mb`` per MB of input, for the serialisation and
copy of the tensors), ``eager`` (PyTorch eager: efficiency scaled by ``eff_scale``, a
framework cost ``batch_us`` per batch and ``launch_us`` per kernel; with ``host_us > 0`` the
eager operators of :class:`~hwmodels.latency.LatencyModel` with ``eager=True``, the host
dispatching each in ``host_us``, overlapped with the GPU (fitted on measured eager
latencies, ``experiments.calibrate mode=fit profile=...``); with ``host_us = 0``, as the
published-target fits have it, the fused kernels with additive costs) and ``cudagraph``
(PyTorch AMP with CUDA graphs: ``eff_scale`` and ``batch_us``).

Predictions by kind: Offline throughput = best samples/s over batch sizes (the engine chooses
its batch); Server throughput as above; SingleStream latency = batch-1 latency plus the
query overhead; DeepLearningExamples batch rows = throughput and latency at the given batch;
MIG rows = the same on the slice's partition, ``n x`` one slice divided by the MIG
interference factor for aggregates; interference rows = the throughput change from
:class:`~hwmodels.interference.InterferenceModel`; spec, MIG-table, model, link, storage,
reconfiguration and power rows compare with the corresponding model or spec number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from hwmodels.calibration.plans import PERF_KINDS, Plan, WorkloadRef, workload_ref
from hwmodels.calibration.targets import parse_number, parse_numbers
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
    build_profile,
)

STACK_PARAMS: dict[str, dict[str, float]] = {
    "engine": {},
    "mlperf": {"request_us": 30.0, "server_c": 2.0},
    "triton": {"request_us": 400.0, "us_per_mb": 400.0},
    "eager": {"eff_scale": 0.5, "batch_us": 10000.0, "launch_us": 10.0, "host_us": 0.0},
    "cudagraph": {"eff_scale": 0.5, "batch_us": 100.0},
}
"""Serving-stack parameters and their starting values (see the module docstring)."""


def stack_params(device: DeviceSpec, stack: str) -> dict[str, float]:
    """The serving-stack parameters of ``device`` (its ``stacks`` over the defaults)."""
    if stack not in STACK_PARAMS:
        raise ValueError(f"unknown serving stack {stack!r}; known: {', '.join(STACK_PARAMS)}")
    return {**STACK_PARAMS[stack], **device.stacks.get(stack, {})}


def stack_latency(device: DeviceSpec, precision: str, stack: str) -> LatencyModel:
    """The latency model of engines of ``precision`` served by ``stack`` on ``device`` (its
    per-batch request overheads, ``request_us``/``us_per_mb``, aside)."""
    st = stack_params(device, stack)
    d = device.replace(
        eff_compute_max=min(1.0, device.eff_compute_max * st.get("eff_scale", 1.0)),
        batch_overhead_us=device.batch_overhead_us + st.get("batch_us", 0.0),
        launch_us=device.launch_us + st.get("launch_us", 0.0),
        # PyTorch eager: no L2-resident activations. The 4,095 measured eager A100 rows
        # (gpulet) are fitted worse with them (held-out slowdown median 7.4% -> 8.5%,
        # calibration/FIDELITY.md), so only compiled engines keep activations in the L2.
        l2_act_fraction=0.0 if stack == "eager" else device.l2_act_fraction,
    )
    host_us = st.get("host_us", 0.0)
    return LatencyModel(d, precision, eager=stack == "eager" and host_us > 0, host_us=host_us)


def _partition(device: DeviceSpec, layout: Sequence[str]) -> Partition:
    return full_gpu(device) if list(layout) == ["full"] else mig_layout(device, layout)[0]


class _Latency:
    """Batch latency (s) of one plan, as a function of samples per batch."""

    def __init__(self, device: DeviceSpec, plan: Plan) -> None:
        self.stack = stack_params(device, plan.stack)
        self.work: WorkloadRef = plan.extra["work"]
        self.model = stack_latency(device, plan.precision, plan.stack)
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
    if plan.extra["what"] == "mig_ops":  # create 7 x 1g, destroy 7 x 1g, 7 x 1g -> 2 x 3g
        rc = ReconfigModel(dev)
        seven, two = ["1g.10gb"] * 7, ["3g.40gb"] * 2
        create = rc.steps(two, seven, [None] * 7)["create"]
        switch = rc.steps(seven, two, [None] * 2)
        return [create, switch["destroy"], switch["destroy"] + switch["create"]]
    # milliseconds to move an MPS share to a standby client (GSLICE's shadow instance)
    model = ReconfigModel(dev, params={"mps_shadow": 1.0})
    return [model.mean(["mps:50", "mps:50"], ["mps:30", "mps:70"], ["resnet50", "resnet50"],
                       drain_s=0.0) * 1e3]


def _pred_power(plan: Plan, devices: Mapping[str, DeviceSpec]) -> list[float]:
    dev = _dev(plan, devices)
    work = workload_ref(plan.model, dev)
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
            work = workload_ref(model, dev)
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
            num = parse_number(v)
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


def mig_table_row(plan: Plan) -> tuple[str, str, float]:
    """A MIG-table row: predicted and published text and the relative error."""
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


def model_row(plan: Plan) -> tuple[str, str, float]:
    """A model row: predicted and published text and the relative error (NaN: no profile)."""
    q, value, model = plan.extra["quantity"], plan.extra["value"], plan.model
    pub = parse_numbers(value)
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


def link_values(plan: Plan) -> list[float]:
    """The interconnect numbers of a link row (KeyError: not modelled)."""
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


def storage_values(plan: Plan) -> list[float]:
    """The tier numbers of a storage row (KeyError: not modelled)."""
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
