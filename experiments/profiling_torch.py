"""Measure DNN latencies on the local device with PyTorch (imported only by ``mode=profile``).

It lives in ``experiments/`` because :mod:`hwmodels` imports no torch;
``experiments.calibrate`` imports it inside ``mode=profile`` only. The architectures
are built here from their definitions with random weights (the same shapes as
:mod:`hwmodels.workloads`, so that measurements and profiles describe the same network):
``resnet50``, ``mobilenet_v2`` and ``bert-base``/``bert-large`` (``@N`` sets the sequence
length).

On a GPU nothing about the device is changed (no MPS daemon, no clocks, no MIG): a co-runner
either runs in a second process, so the driver time-slices the two contexts
(``colocation="processes"``), or on a second CUDA stream of the measuring process, so their
kernels may run concurrently (``colocation="streams"``). Rows record how they were measured
(GPU: ``stack="eager"``, ``precision``), so that ``experiments.calibrate mode=validate
profile=...`` checks them as they are.

Measurements run in worker processes (``multiprocessing`` with ``spawn``), each with its own
thread count and, on Linux, its own CPU cores, so that a co-runner occupies the cores the
measured model does not (the CPU analogue of an MPS share) or the same ones (time slicing,
when both use every core). The default plan co-locates on disjoint cores only: when two
OpenMP pools oversubscribe the same cores their spinning threads slow each other several
times more than time slicing would (6x measured on the 2-vCPU machine), a property of the
thread pools rather than of the hardware; and making the threads block instead
(``OMP_WAIT_POLICY=PASSIVE``) removes the benefit of a second thread for eager PyTorch.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hwmodels.calibration import ProfileRow

# ---------------------------------------------------------------------------------------------
# Architectures (torchvision / Hugging Face definitions, random weights)
# ---------------------------------------------------------------------------------------------


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                   nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


def resnet50() -> nn.Module:
    """ResNet-50 v1.5 (stride on the 3x3 conv), as torchvision's ``resnet50``."""
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                               nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for i in range(blocks):
            layers.append(_Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        mods: list[nn.Module] = []
        if t != 1:
            mods += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(True)]
        mods += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                 nn.BatchNorm2d(hidden), nn.ReLU6(True),
                 nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*mods)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet_v2() -> nn.Module:
    """MobileNetV2 (width 1.0), as torchvision's ``mobilenet_v2``."""
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                               nn.ReLU6(True)]
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(True),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    return nn.Sequential(*layers)


class _EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.ln2 = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(
            2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d)
        x = self.ln1(x + self.out(ctx))
        return self.ln2(x + self.fc2(torch.nn.functional.gelu(self.fc1(x))))


class Bert(nn.Module):
    """BERT encoder (post-LN) with embeddings and pooler, as Hugging Face ``BertModel``."""

    def __init__(self, layers: int, d: int, heads: int, ffn: int, vocab: int = 30522,
                 positions: int = 512) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(positions, d)
        self.seg = nn.Embedding(2, d)
        self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList(_EncoderLayer(d, heads, ffn) for _ in range(layers))
        self.pooler = nn.Linear(d, d)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.ln(self.word(ids) + self.pos(pos) + self.seg(torch.zeros_like(ids)))
        for layer in self.layers:
            x = layer(x)
        return torch.tanh(self.pooler(x[:, 0]))


BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "bert-base": lambda: Bert(12, 768, 12, 3072),
    "bert-large": lambda: Bert(24, 1024, 16, 4096),
}
"""Model builders by :mod:`hwmodels.workloads` name."""


def build(spec: str) -> tuple[nn.Module, Callable[[int], torch.Tensor]]:
    """A model and a function giving its input for a batch size, from ``name[@seq_len]``.

    Raises:
        ValueError: a model without a torch builder.
    """
    name, _, n = spec.partition("@")
    if name not in BUILDERS:
        raise ValueError(f"no torch builder for '{name}'; have: {', '.join(BUILDERS)}")
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    if name.startswith("bert"):
        seq = int(n) if n else 384
        return model, lambda b: torch.randint(0, 30522, (b, seq))
    return model, lambda b: torch.randn(b, 3, 224, 224)


# ---------------------------------------------------------------------------------------------
# Measurement workers
# ---------------------------------------------------------------------------------------------


def _setup(threads: int, cores: Sequence[int] | None, device: str) -> None:
    torch.set_num_threads(max(1, threads))
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))
    if device == "cuda":
        torch.backends.cudnn.benchmark = True


def _runner(spec: str, batch: int, device: str, half: bool) -> Callable[[], None]:
    model, make = build(spec)
    x = make(batch)
    if device == "cuda":
        model, x = model.cuda(), x.cuda()
        if half and not spec.startswith("bert"):
            model, x = model.half(), x.half()
        elif half:
            model = model.half()

    def run() -> None:
        with torch.inference_mode():
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def _time(run: Callable[[], None], repeats: int, min_time_s: float) -> float:
    run()  # warm-up (allocations, oneDNN/cuDNN kernel selection)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time_s and len(times) < 50):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    # The fastest run: on a shared machine the others were disturbed by unrelated load
    # (timeit's convention); a co-runner's interference is there in every run.
    return min(times) * 1e3


def _measure_worker(conn: Any, device: str, half: bool) -> None:
    """Serve ``(spec, batch, threads, cores, repeats, min_time_s)`` requests on a pipe."""
    cache: dict[tuple[str, int], Callable[[], None]] = {}
    while True:
        msg = conn.recv()
        if msg is None:
            break
        spec, batch, threads, cores, repeats, min_time_s = msg
        _setup(threads, cores, device)
        key = (spec, batch)
        if key not in cache:
            cache.clear()  # keep memory bounded: one model at a time
            cache[key] = _runner(spec, batch, device, half)
        conn.send(_time(cache[key], repeats, min_time_s))


def _stream_pair_worker(conn: Any, half: bool) -> None:
    """Serve ``(spec, batch, co_spec, co_batch, repeats, min_time_s)`` on a pipe: time ``spec``
    on one CUDA stream while a thread runs ``co_spec`` back to back on another stream of the
    same process (both contend for the GPU and for the interpreter, as two models served by
    one process do)."""
    import threading

    _setup(1, None, "cuda")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        spec, batch, co_spec, co_batch, repeats, min_time_s = msg
        mine, theirs = torch.cuda.Stream(), torch.cuda.Stream()
        with torch.cuda.stream(mine):
            run = _runner(spec, batch, "cuda", half)
        with torch.cuda.stream(theirs):
            co_run = _runner(co_spec, co_batch, "cuda", half)
        stop = threading.Event()

        def loop(co_run: Callable[[], None] = co_run, theirs: Any = theirs,
                 stop: threading.Event = stop) -> None:
            with torch.cuda.stream(theirs):
                while not stop.is_set():
                    co_run()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            with torch.cuda.stream(mine):
                ms = _time(run, repeats, min_time_s)
        finally:
            stop.set()
            thread.join()
        conn.send(ms)
        del run, co_run
        torch.cuda.empty_cache()


def _corunner_worker(conn: Any, device: str, half: bool, stop: Any) -> None:
    """Run ``(spec, batch, threads, cores)`` back to back from "ready" until ``stop`` is set."""
    cache: dict[tuple[str, int], Callable[[], None]] = {}
    while True:
        msg = conn.recv()
        if msg is None:
            break
        spec, batch, threads, cores = msg
        _setup(threads, cores, device)
        key = (spec, batch)
        if key not in cache:
            cache.clear()
            cache[key] = _runner(spec, batch, device, half)
        run = cache[key]
        run()
        conn.send("ready")
        while not stop.is_set():
            run()
        conn.send("stopped")


@dataclass(frozen=True)
class ProfilePlan:
    """What to measure.

    Attributes:
        models: Model specs (``name`` or ``name@seq_len``).
        batches: Batch sizes per model spec (or one list for all under ``"*"``).
        shares: Device shares to measure alone (fractions of the cores).
        pairs: ``(model, batch, corunner, corunner_batch)`` co-located measurements, each
            run at every share in ``colocated_shares`` and in both directions.
        colocated_shares: Shares for the co-located runs.
        repeats: Timed runs per measurement (at least).
        min_time_s: Keep timing until this much time has passed (up to 50 runs).
        passes: Measure everything this many times, spread over time, and keep the fastest
            (unrelated load on a shared machine comes and goes).
    """

    models: tuple[str, ...]
    batches: dict[str, tuple[int, ...]]
    shares: tuple[float, ...] = (1.0, 0.5)
    pairs: tuple[tuple[str, int, str, int], ...] = ()
    colocated_shares: tuple[float, ...] = (0.5, 1.0)
    repeats: int = 3
    min_time_s: float = 0.5
    passes: int = 2


def _cores_for(share: float, n: int) -> tuple[list[int], list[int]]:
    k = max(1, round(share * n))
    mine = list(range(k))
    other = list(range(k, n)) if k < n else list(range(n))
    return mine, other


def measured_precision(device: str, half: bool) -> str:
    """How the rows of :func:`run_profile` computed: ``fp16``, else ``tf32`` on a GPU that
    PyTorch lets use TF32 for its convolutions, else ``fp32``."""
    if half:
        return "fp16"
    if device == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "fp32"


COLOCATION = ("processes", "streams")
"""How a GPU co-runner runs (see the module docstring)."""


def run_profile(plan: ProfilePlan, device: str = "cpu", *, half: bool | None = None,
                colocation: str = "processes",
                log: Callable[[str], None] = print) -> list[ProfileRow]:
    """Measure the plan; returns profile rows (see :data:`hwmodels.calibration.PROFILE_COLUMNS`).

    Args:
        plan: What to measure.
        device: ``"cpu"`` or ``"cuda"``.
        half: FP16 on CUDA (default: True on CUDA, False on CPU).
        colocation: ``"processes"`` or, on CUDA only, ``"streams"`` (see the module docstring).
        log: Progress messages.

    Raises:
        ValueError: an unknown ``colocation``, or streams without CUDA.
    """
    if colocation not in COLOCATION:
        raise ValueError(f"colocation must be one of {COLOCATION}, got {colocation!r}")
    if colocation == "streams" and device != "cuda":
        raise ValueError("colocation='streams' needs device='cuda'")
    half = device == "cuda" if half is None else half
    precision = measured_precision(device, half)
    ncores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    if device == "cuda":
        ncores = 1  # shares are not enforced on a GPU without MPS: measure whole-device only
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    worker = ctx.Process(target=_measure_worker, args=(child, device, half), daemon=True)
    co_parent, co_child = ctx.Pipe()
    stop = ctx.Event()
    co = ctx.Process(target=_corunner_worker, args=(co_child, device, half, stop), daemon=True)
    pair_parent, pair_child = ctx.Pipe()
    pair = (ctx.Process(target=_stream_pair_worker, args=(pair_child, half), daemon=True)
            if colocation == "streams" else None)
    worker.start()
    co.start()
    if pair is not None:
        pair.start()
    best: dict[tuple[str, int, float, str, int], float] = {}

    def measure(spec: str, batch: int, share: float) -> float:
        mine, _ = _cores_for(share, ncores)
        parent.send((spec, batch, len(mine), mine if device == "cpu" else None, plan.repeats,
                     plan.min_time_s))
        return float(parent.recv())

    def keep(key: tuple[str, int, float, str, int], ms: float) -> None:
        best[key] = min(ms, best.get(key, math.inf))
        extra = f" with {key[3]} b={key[4]}" if key[3] else ""
        log(f"{key[0]} b={key[1]} share={key[2]:g}{extra}: {ms:.2f} ms")

    shares = plan.shares if device == "cpu" else (1.0,)
    co_shares = plan.colocated_shares if device == "cpu" else (1.0,)
    try:
        for _ in range(max(1, plan.passes)):
            for spec in plan.models:
                for batch in plan.batches.get(spec, plan.batches.get("*", (1,))):
                    for share in shares:
                        keep((spec, batch, share, "", 0), measure(spec, batch, share))
            for spec, batch, other, obatch in plan.pairs:
                for share in co_shares:
                    for a, ab, b, bb in ((spec, batch, other, obatch),
                                         (other, obatch, spec, batch)):
                        if pair is not None:
                            pair_parent.send((a, ab, b, bb, plan.repeats, plan.min_time_s))
                            keep((a, ab, share, b, bb), float(pair_parent.recv()))
                            continue
                        _, theirs = _cores_for(share, ncores)
                        stop.clear()
                        co_parent.send((b, bb, len(theirs),
                                        theirs if device == "cpu" else None))
                        co_parent.recv()  # "ready": the co-runner is running
                        try:
                            ms = measure(a, ab, share)
                        finally:
                            stop.set()
                            co_parent.recv()  # "stopped"
                        keep((a, ab, share, b, bb), ms)
    finally:
        procs = [(parent, worker), (co_parent, co)]
        if pair is not None:
            procs.append((pair_parent, pair))
        for conn, proc in procs:
            conn.send(None)
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
    # GPU rows say how they were measured; CPU rows keep the defaults (the cpu spec's own
    # parameters describe eager PyTorch there).
    stack, prec = ("eager", precision) if device == "cuda" else ("", "")
    return [ProfileRow(m, b, s, ms, c, cb, stack=stack, precision=prec)
            for (m, b, s, c, cb), ms in best.items()]


def microbenchmarks(threads: int | None = None) -> dict[str, float]:
    """Peak-ish numbers of this CPU: FP32 GEMM GFLOP/s and copy bandwidth GB/s."""
    import numpy as np

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(20):
        a @ b
    gflops = 2 * 1024**3 * 20 / (time.perf_counter() - t0) / 1e9
    x = np.ones(32 * 1024 * 1024)
    y = np.empty_like(x)
    np.copyto(y, x)
    t0 = time.perf_counter()
    for _ in range(5):
        np.copyto(y, x)
    gbs = 2 * x.nbytes * 5 / (time.perf_counter() - t0) / 1e9
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"gemm_gflops": gflops, "copy_gbs": gbs, "loadavg_1min": load,
            "threads": float(torch.get_num_threads())}
