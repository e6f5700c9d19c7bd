"""Layer-by-layer compute and memory profiles of DNN inference workloads.

Every profile is derived from the architecture's definition (layer shapes written out below as
loops over stages and blocks), never from hard-coded totals; the tests compare the totals with
published figures (``calibration/published_targets.csv``, rows T103-T114). The roofline latency
model (:mod:`hwmodels.latency`) consumes :meth:`WorkloadProfile.arrays`.

Conventions (all counts are *per sample*, weights aside):

* ``flops`` counts 2 per multiply-accumulate. Convolutions and GEMMs count only their MACs
  (bias, batch norm and activation are folded into the kernel's epilogue at inference); a
  residual add fused into a kernel adds one FLOP per output element. Layer norm is counted as
  :data:`LAYERNORM_FLOPS_PER_ELEMENT`, softmax as :data:`SOFTMAX_FLOPS_PER_ELEMENT`, pooling as
  one operation per window element.
* ``params`` is the framework's trainable-parameter count (so batch norm contributes
  ``2 * channels``, as in torchvision's totals). Tied weights are counted once, on the layer
  that streams them: GPT-2's token embedding table is counted on ``lm_head`` (which reads the
  whole table every batch), and its ``wte`` gather layer has ``params == 0``.
* ``act_in``/``act_out`` are the activation elements a layer reads and writes; concatenation
  (Inception) is free, because engines write branch outputs straight into the concatenated
  buffer.
* ``kernels`` models a TensorRT-like fused engine: one launch per layer listed here (conv + BN +
  ReLU (+ residual add) is one kernel; attention is unfused: scores, softmax and context are
  three kernels). TorchRec fuses all DLRMv2 table lookups into one FBGEMM table-batched kernel,
  so only the first table's layer carries the launch there; DeepRecSys' Caffe2 models run one
  ``SparseLengthsSum`` per table.
* ``is_matmul``: ``conv``, ``gemm`` and ``attention`` layers run on tensor cores. ``dwconv``
  (depthwise) does *not*: it has about ``k*k`` FLOPs per element loaded, no reduction over
  channels to map onto an MMA, and cuDNN/TensorRT run it on CUDA cores.

Models (:data:`MODEL_NAMES`):

* CNNs at batch-1 image shapes: ``resnet50`` (v1.5), ``mobilenet_v2``, ``googlenet`` (no
  auxiliary heads), ``inception_v3`` (299x299, no auxiliary head), ``vgg16``, ``vgg19``,
  ``resnet101``, ``resnet152``, ``densenet121``, ``densenet169``, ``densenet201``; all as in
  torchvision (parameter counts equal torchvision's, checked by the tests).
* Transformers: ``bert-base``, ``bert-large`` (encoder with embeddings and pooler, default
  ``seq_len`` 384 as in MLPerf SQuAD); ``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``
  are *prefill* of ``seq_len`` tokens (default 512), and the same names with a ``-decode``
  suffix (``gpt2-decode``, ...) are *one decode step* of one new token attending over a KV
  cache of ``context_len`` positions (default 512). Phases are separate model names rather than
  a ``phase=`` argument so that every profile is named by one string (configs, traces and
  observation encodings carry model names) and the cache key is just the arguments.
* Recommendation: ``dlrm-rm1``, ``dlrm-rm2``, ``dlrm-rm3`` (DeepRecSys configs) and
  ``dlrm-v2`` (MLPerf DLRMv2 with DCNv2 interaction).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

KINDS: tuple[str, ...] = (
    "conv",
    "dwconv",
    "gemm",
    "attention",
    "elementwise",
    "norm",
    "pool",
    "softmax",
    "embedding",
)
"""Valid :attr:`Layer.kind` values."""

MATMUL_KINDS: frozenset[str] = frozenset({"conv", "gemm", "attention"})
"""Kinds that run on tensor cores (see the module docstring for why ``dwconv`` is not one)."""

BYTES_PER_ELEMENT: dict[str, int] = {
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "int8": 1,
    "fp8": 1,
}
"""Storage bytes of one element at each precision."""

LAYERNORM_FLOPS_PER_ELEMENT = 5
"""Mean, variance, normalise, scale, shift (a residual add fused in front adds one more)."""

SOFTMAX_FLOPS_PER_ELEMENT = 5
"""Max, subtract, exp, sum, divide."""


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer (one kernel or a small fused group) of a workload, per sample.

    Attributes:
        name: Layer name, unique within its profile (e.g. ``"layer1.0.conv3"``).
        kind: One of :data:`KINDS`.
        flops: FLOPs per sample (2 per multiply-accumulate).
        params: Weight elements. For ``"embedding"`` layers, the whole table's elements
            (``rows * dim``), of which only the gathered rows are read.
        act_in: Activation elements read per sample. For ``"embedding"`` layers, the gathered
            elements (``rows gathered per sample * dim``).
        act_out: Activation elements written per sample.
        kernels: GPU kernel launches this layer takes (fused conv + BN + ReLU = 1; 0 for a
            layer whose work is done by another layer's launch).
        eager_ops: Operators a framework running eagerly dispatches for this layer, one
            kernel each (PyTorch eager: conv, batch norm, activation and residual add are
            four); None: the same as ``kernels``.
        eager_act: Activation elements the unfused operators read and write on top of
            ``act_in + act_out`` (batch norm and activation: 2 per output element each, an
            add: 2 more, a concatenation: 2 per element copied).
    """

    name: str
    kind: str
    flops: float
    params: int
    act_in: float
    act_out: float
    kernels: int = 1
    eager_ops: int | None = None
    eager_act: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"layer {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if self.eager_ops is not None and self.eager_ops < 0:
            raise ValueError(f"layer {self.name!r}: eager_ops must be >= 0")
        for attr in ("flops", "params", "act_in", "act_out", "kernels", "eager_act"):
            value = getattr(self, attr)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"layer {self.name!r}: {attr}={value!r} must be finite and >= 0")


@dataclass(frozen=True)
class LayerArrays:
    """Per-layer numbers of a profile as read-only float64 arrays (one entry per layer).

    Attributes:
        flops: FLOPs per sample.
        streamed_params: Weight elements read from memory once per batch (0 for embedding
            layers: only the gathered rows are read, and those are counted in ``act``).
        act: Activation elements read and written per sample (``act_in + act_out``).
        kernels: Kernel launches per batch.
        is_matmul: Whether the layer runs on tensor cores (kinds in :data:`MATMUL_KINDS`).
        eager_ops: Operators dispatched per batch by an eager framework
            (:attr:`Layer.eager_ops`).
        eager_act: Extra activation elements per sample of the unfused operators
            (:attr:`Layer.eager_act`).
        is_depthwise: Whether the layer is a depthwise convolution.
        act_in: Activation elements read per sample (:attr:`Layer.act_in`).
        act_out: Activation elements written per sample (:attr:`Layer.act_out`).
    """

    flops: np.ndarray
    streamed_params: np.ndarray
    act: np.ndarray
    kernels: np.ndarray
    is_matmul: np.ndarray
    eager_ops: np.ndarray
    eager_act: np.ndarray
    is_depthwise: np.ndarray
    act_in: np.ndarray
    act_out: np.ndarray

    @classmethod
    def from_layers(cls, layers: Sequence[Layer]) -> LayerArrays:
        """Builds the arrays of ``layers`` (made read-only, since profiles are shared)."""
        flops = np.array([lay.flops for lay in layers], dtype=np.float64)
        streamed = np.array(
            [0.0 if lay.kind == "embedding" else lay.params for lay in layers], dtype=np.float64
        )
        act = np.array([lay.act_in + lay.act_out for lay in layers], dtype=np.float64)
        kernels = np.array([lay.kernels for lay in layers], dtype=np.float64)
        is_matmul = np.array([lay.kind in MATMUL_KINDS for lay in layers], dtype=bool)
        eager_ops = np.array([lay.kernels if lay.eager_ops is None else lay.eager_ops
                              for lay in layers], dtype=np.float64)
        eager_act = np.array([lay.eager_act for lay in layers], dtype=np.float64)
        depthwise = np.array([lay.kind == "dwconv" for lay in layers], dtype=bool)
        act_in = np.array([lay.act_in for lay in layers], dtype=np.float64)
        act_out = np.array([lay.act_out for lay in layers], dtype=np.float64)
        for arr in (flops, streamed, act, kernels, is_matmul, eager_ops, eager_act, depthwise,
                    act_in, act_out):
            arr.flags.writeable = False
        return cls(flops, streamed, act, kernels, is_matmul, eager_ops, eager_act, depthwise,
                   act_in, act_out)


@dataclass(frozen=True)
class WorkloadProfile:
    """A DNN workload as an ordered tuple of layers, with per-sample totals.

    Attributes:
        name: Model name as given to :func:`build_profile`.
        family: ``"cnn"``, ``"transformer"`` or ``"recsys"``.
        layers: The layers in execution order.
        description: The input of one sample (e.g. ``"224x224x3 image"``, ``"seq_len=384"``).
        source: Where the architecture definition and the published totals come from.
    """

    name: str
    family: str
    layers: tuple[Layer, ...]
    description: str
    source: str
    _arrays: LayerArrays = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.family not in ("cnn", "transformer", "recsys"):
            raise ValueError(f"profile {self.name!r}: unknown family {self.family!r}")
        if not self.layers:
            raise ValueError(f"profile {self.name!r} has no layers")
        names = [lay.name for lay in self.layers]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"profile {self.name!r}: duplicate layer names {dup}")
        object.__setattr__(self, "_arrays", LayerArrays.from_layers(self.layers))

    @property
    def flops(self) -> float:
        """FLOPs per sample."""
        return float(sum(lay.flops for lay in self.layers))

    @property
    def macs(self) -> float:
        """Multiply-accumulates per sample (``flops / 2``)."""
        return self.flops / 2.0

    @property
    def params(self) -> int:
        """Weight elements (tied weights counted once)."""
        return sum(lay.params for lay in self.layers)

    @property
    def kernels(self) -> int:
        """Kernel launches per batch."""
        return sum(lay.kernels for lay in self.layers)

    def weight_bytes(self, precision: str = "fp16") -> float:
        """Memory footprint of all weights at ``precision``.

        Raises:
            ValueError: ``precision`` is not in :data:`BYTES_PER_ELEMENT`.
        """
        if precision not in BYTES_PER_ELEMENT:
            raise ValueError(
                f"unknown precision {precision!r}; known: {', '.join(BYTES_PER_ELEMENT)}"
            )
        return float(self.params) * BYTES_PER_ELEMENT[precision]

    def arrays(self) -> LayerArrays:
        """The per-layer numbers as read-only numpy arrays (computed once per profile)."""
        return self._arrays


# ---------------------------------------------------------------------------------------------
# Building blocks shared by the families
# ---------------------------------------------------------------------------------------------


def _gemm(name: str, tokens: float, k: int, n: int, *, bias: bool = True,
          residual: bool = False, kernels: int = 1) -> Layer:
    """A linear layer applied to ``tokens`` rows per sample: ``[tokens, k] @ [k, n]``.

    Args:
        name: Layer name.
        tokens: Rows per sample (1 for an MLP on a feature vector, seq_len for a transformer).
        k: Input features.
        n: Output features.
        bias: Whether the layer has a bias vector.
        residual: Whether a residual add (reading another ``tokens * n`` input) is fused in.
        kernels: Kernel launches.
    """
    out = tokens * n
    return Layer(
        name,
        "gemm",
        flops=2.0 * tokens * k * n + (out if residual else 0.0),
        params=k * n + (n if bias else 0),
        act_in=tokens * k + (out if residual else 0.0),
        act_out=out,
        kernels=kernels,
    )


def _mlp(prefix: str, sizes: Sequence[int]) -> list[Layer]:
    """Fully connected layers (with bias, activation fused) ``sizes[0] -> ... -> sizes[-1]``."""
    return [
        _gemm(f"{prefix}.{i}", 1, k, n) for i, (k, n) in enumerate(itertools.pairwise(sizes))
    ]


class _FMap(NamedTuple):
    """A CHW feature map of one sample."""

    c: int
    h: int
    w: int

    @property
    def elements(self) -> int:
        return self.c * self.h * self.w


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


def _out_size(size: int, k: int, stride: int, pad: int, ceil_mode: bool = False) -> int:
    """Output length of a convolution/pooling window along one axis (PyTorch's rule)."""
    span = size + 2 * pad - k
    if span < 0:
        raise ValueError(f"window {k} larger than padded input {size + 2 * pad}")
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad:  # the last window may not start in the padding
        out -= 1
    return out


class _CnnBuilder:
    """Accumulates the layers of a CNN while tracking feature-map shapes."""

    def __init__(self) -> None:
        self.layers: list[Layer] = []

    def conv(
        self,
        name: str,
        x: _FMap,
        cout: int,
        k: int | tuple[int, int],
        stride: int = 1,
        pad: int | tuple[int, int] = 0,
        *,
        groups: int = 1,
        bias: bool = False,
        bn: bool = True,
        residual: bool = False,
        act: bool = True,
    ) -> _FMap:
        """Conv (+ BN + activation, + residual add if ``residual``) as one fused kernel.

        ``act``: an activation follows (False: a projection or a shortcut); it only changes the
        eager operator count (``eager_ops``, ``eager_act``), as engines fuse it for free.

        Returns:
            The output feature map.
        """
        kh, kw = _pair(k)
        ph, pw = _pair(pad)
        if x.c % groups or cout % groups:
            raise ValueError(f"{name}: channels {x.c}->{cout} not divisible by groups {groups}")
        y = _FMap(cout, _out_size(x.h, kh, stride, ph), _out_size(x.w, kw, stride, pw))
        macs = kh * kw * (x.c // groups) * y.elements
        depthwise = groups > 1 and groups == x.c == cout
        self.layers.append(
            Layer(
                name,
                "dwconv" if depthwise else "conv",
                flops=2.0 * macs + (y.elements if residual else 0),
                params=kh * kw * (x.c // groups) * cout
                + (cout if bias else 0)
                + (2 * cout if bn else 0),
                act_in=float(x.elements + (y.elements if residual else 0)),
                act_out=float(y.elements),
                eager_ops=1 + int(bn) + int(act) + int(residual),
                eager_act=2.0 * y.elements * (int(bn) + int(act) + int(residual)),
            )
        )
        return y

    def norm_act(self, name: str, x: _FMap, *, concat: bool = False) -> _FMap:
        """Batch norm + ReLU in front of a convolution (pre-activation, as in DenseNet): one
        kernel in an engine (it cannot be folded into the next conv's weights across the ReLU);
        eagerly two operators, plus a ``torch.cat`` of the block's features if ``concat``."""
        self.layers.append(
            Layer(name, "norm", flops=2.0 * x.elements, params=2 * x.c,
                  act_in=float(x.elements), act_out=float(x.elements),
                  eager_ops=2 + int(concat),
                  eager_act=2.0 * x.elements * (1 + int(concat))))
        return x

    def pool(self, name: str, x: _FMap, k: int, stride: int, pad: int = 0, *,
             ceil_mode: bool = False) -> _FMap:
        """Max or average pooling with a ``k x k`` window (one op per window element)."""
        y = _FMap(x.c, _out_size(x.h, k, stride, pad, ceil_mode),
                  _out_size(x.w, k, stride, pad, ceil_mode))
        self.layers.append(Layer(name, "pool", flops=float(k * k * y.elements), params=0,
                                 act_in=float(x.elements), act_out=float(y.elements)))
        return y

    def global_pool(self, name: str, x: _FMap, out_hw: int = 1) -> _FMap:
        """Adaptive average pooling to ``out_hw x out_hw`` (one add per input element)."""
        y = _FMap(x.c, out_hw, out_hw)
        self.layers.append(Layer(name, "pool", flops=float(x.elements), params=0,
                                 act_in=float(x.elements), act_out=float(y.elements)))
        return y

    def fc(self, name: str, x: _FMap, n: int, *, act: bool = False) -> _FMap:
        """A fully connected layer over the flattened feature map (+ a ReLU if ``act``)."""
        layer = _gemm(name, 1, x.elements, n)
        if act:
            layer = dataclasses.replace(layer, eager_ops=2, eager_act=2.0 * n)
        self.layers.append(layer)
        return _FMap(n, 1, 1)


def _image(size: int) -> _FMap:
    return _FMap(3, size, size)


# ---------------------------------------------------------------------------------------------
# CNNs (torchvision definitions)
# ---------------------------------------------------------------------------------------------

_TORCHVISION = "torchvision.models ({}) definition"


_RESNET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}
"""Bottleneck blocks per stage (He et al. 2016, Table 1; torchvision ``resnet.py``)."""

_RESNET_SOURCES: dict[str, str] = {
    "resnet50": "; published 25.56 M params / 4.12 GMAC: published_targets.csv T103 "
    "(mmclassification model_zoo)",
    "resnet101": "; torchvision reports 44,549,160 params",
    "resnet152": "; torchvision reports 60,192,808 params",
}


def _resnet(name: str) -> WorkloadProfile:
    """ResNet v1.5 (50/101/152 layers): the stride of a downsampling bottleneck sits on its 3x3
    conv."""
    b = _CnnBuilder()
    x = b.conv("conv1", _image(224), 64, 7, 2, 3)
    x = b.pool("maxpool", x, 3, 2, 1)
    for stage, (width, blocks, stride) in enumerate(
        zip((64, 128, 256, 512), _RESNET_BLOCKS[name], (1, 2, 2, 2), strict=True), start=1
    ):
        for i in range(blocks):
            s = stride if i == 0 else 1
            p = f"layer{stage}.{i}"
            y = b.conv(f"{p}.conv1", x, width, 1)
            y = b.conv(f"{p}.conv2", y, width, 3, s, 1)
            if i == 0:  # projection shortcut
                b.conv(f"{p}.downsample", x, width * 4, 1, s, act=False)
            x = b.conv(f"{p}.conv3", y, width * 4, 1, residual=True)
    x = b.global_pool("avgpool", x)
    b.fc("fc", x, 1000)
    return WorkloadProfile(
        name, "cnn", tuple(b.layers), "224x224x3 image",
        _TORCHVISION.format(f"{name}, v1.5") + _RESNET_SOURCES[name],
    )


def _mobilenet_v2() -> WorkloadProfile:
    """MobileNetV2 (width 1.0): inverted residuals with depthwise 3x3 convs and ReLU6."""
    b = _CnnBuilder()
    x = b.conv("features.0", _image(224), 32, 3, 2, 1)
    idx = 1
    # (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}"
            hidden = x.c * t
            y = b.conv(f"{p}.expand", x, hidden, 1) if t != 1 else x
            y = b.conv(f"{p}.dw", y, hidden, 3, stride, 1, groups=hidden)
            x = b.conv(f"{p}.project", y, c, 1, residual=stride == 1 and x.c == c, act=False)
            idx += 1
    x = b.conv(f"features.{idx}", x, 1280, 1)
    x = b.global_pool("avgpool", x)
    b.fc("classifier", x, 1000)
    return WorkloadProfile(
        "mobilenet_v2", "cnn", tuple(b.layers), "224x224x3 image",
        _TORCHVISION.format("mobilenet_v2")
        + "; published 3.5 M params (Keras 3,538,984) / 0.30-0.33 GMAC: published_targets.csv "
        "T104",
    )


def _googlenet() -> WorkloadProfile:
    """GoogLeNet (Inception v1) with BN, as in torchvision, without the auxiliary heads.

    torchvision's "5x5" branch uses a 3x3 conv (kept for weight compatibility); so does this.
    """
    b = _CnnBuilder()
    x = b.conv("conv1", _image(224), 64, 7, 2, 3)
    x = b.pool("maxpool1", x, 3, 2, ceil_mode=True)
    x = b.conv("conv2", x, 64, 1)
    x = b.conv("conv3", x, 192, 3, 1, 1)
    x = b.pool("maxpool2", x, 3, 2, ceil_mode=True)

    def inception(p: str, x: _FMap, c1: int, c3r: int, c3: int, c5r: int, c5: int,
                  pool_proj: int) -> _FMap:
        b.conv(f"{p}.branch1", x, c1, 1)
        b.conv(f"{p}.branch2.1", b.conv(f"{p}.branch2.0", x, c3r, 1), c3, 3, 1, 1)
        b.conv(f"{p}.branch3.1", b.conv(f"{p}.branch3.0", x, c5r, 1), c5, 3, 1, 1)
        y = b.pool(f"{p}.branch4.pool", x, 3, 1, 1, ceil_mode=True)
        b.conv(f"{p}.branch4.1", y, pool_proj, 1)
        return _FMap(c1 + c3 + c5 + pool_proj, x.h, x.w)

    # (name, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj); None marks a max pool
    blocks: list[tuple[str, int, int, int, int, int, int] | None] = [
        ("inception3a", 64, 96, 128, 16, 32, 32),
        ("inception3b", 128, 128, 192, 32, 96, 64),
        None,
        ("inception4a", 192, 96, 208, 16, 48, 64),
        ("inception4b", 160, 112, 224, 24, 64, 64),
        ("inception4c", 128, 128, 256, 24, 64, 64),
        ("inception4d", 112, 144, 288, 32, 64, 64),
        ("inception4e", 256, 160, 320, 32, 128, 128),
        None,
        ("inception5a", 256, 160, 320, 32, 128, 128),
        ("inception5b", 384, 192, 384, 48, 128, 128),
    ]
    pools = iter([("maxpool3", 3), ("maxpool4", 2)])
    for blk in blocks:
        if blk is None:
            pname, k = next(pools)
            x = b.pool(pname, x, k, 2, ceil_mode=True)
        else:
            x = inception(blk[0], x, *blk[1:])
    x = b.global_pool("avgpool", x)
    b.fc("fc", x, 1000)
    return WorkloadProfile(
        "googlenet", "cnn", tuple(b.layers), "224x224x3 image",
        _TORCHVISION.format("googlenet, aux_logits=False")
        + "; published 6.62 M params / 1.5 GMAC: published_targets.csv T105 "
        "(pytorch.org/vision googlenet weights page)",
    )


def _inception_v3() -> WorkloadProfile:
    """Inception v3 at 299x299, as in torchvision, without the auxiliary classifier."""
    b = _CnnBuilder()
    x = b.conv("Conv2d_1a_3x3", _image(299), 32, 3, 2)
    x = b.conv("Conv2d_2a_3x3", x, 32, 3)
    x = b.conv("Conv2d_2b_3x3", x, 64, 3, 1, 1)
    x = b.pool("maxpool1", x, 3, 2)
    x = b.conv("Conv2d_3b_1x1", x, 80, 1)
    x = b.conv("Conv2d_4a_3x3", x, 192, 3)
    x = b.pool("maxpool2", x, 3, 2)

    def chain(p: str, x: _FMap, convs: Sequence[tuple[int, int | tuple[int, int], int,
                                                      int | tuple[int, int]]]) -> _FMap:
        """A branch of convs given as (cout, kernel, stride, padding)."""
        for j, (cout, k, s, pad) in enumerate(convs, start=1):
            x = b.conv(f"{p}_{j}", x, cout, k, s, pad)
        return x

    def inception_a(p: str, x: _FMap, pool_features: int) -> _FMap:
        b.conv(f"{p}.branch1x1", x, 64, 1)
        chain(f"{p}.branch5x5", x, [(48, 1, 1, 0), (64, 5, 1, 2)])
        chain(f"{p}.branch3x3dbl", x, [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 1, 1)])
        y = b.pool(f"{p}.branch_pool.avg", x, 3, 1, 1)
        b.conv(f"{p}.branch_pool", y, pool_features, 1)
        return _FMap(64 + 64 + 96 + pool_features, x.h, x.w)

    def inception_b(p: str, x: _FMap) -> _FMap:
        y = b.conv(f"{p}.branch3x3", x, 384, 3, 2)
        chain(f"{p}.branch3x3dbl", x, [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 2, 0)])
        b.pool(f"{p}.branch_pool", x, 3, 2)
        return _FMap(384 + 96 + x.c, y.h, y.w)

    def inception_c(p: str, x: _FMap, c7: int) -> _FMap:
        b.conv(f"{p}.branch1x1", x, 192, 1)
        chain(f"{p}.branch7x7", x, [(c7, 1, 1, 0), (c7, (1, 7), 1, (0, 3)),
                                    (192, (7, 1), 1, (3, 0))])
        chain(f"{p}.branch7x7dbl", x, [(c7, 1, 1, 0), (c7, (7, 1), 1, (3, 0)),
                                       (c7, (1, 7), 1, (0, 3)), (c7, (7, 1), 1, (3, 0)),
                                       (192, (1, 7), 1, (0, 3))])
        y = b.pool(f"{p}.branch_pool.avg", x, 3, 1, 1)
        b.conv(f"{p}.branch_pool", y, 192, 1)
        return _FMap(4 * 192, x.h, x.w)

    def inception_d(p: str, x: _FMap) -> _FMap:
        y = chain(f"{p}.branch3x3", x, [(192, 1, 1, 0), (320, 3, 2, 0)])
        chain(f"{p}.branch7x7x3", x, [(192, 1, 1, 0), (192, (1, 7), 1, (0, 3)),
                                      (192, (7, 1), 1, (3, 0)), (192, 3, 2, 0)])
        b.pool(f"{p}.branch_pool", x, 3, 2)
        return _FMap(320 + 192 + x.c, y.h, y.w)

    def inception_e(p: str, x: _FMap) -> _FMap:
        b.conv(f"{p}.branch1x1", x, 320, 1)
        y = b.conv(f"{p}.branch3x3_1", x, 384, 1)
        b.conv(f"{p}.branch3x3_2a", y, 384, (1, 3), 1, (0, 1))
        b.conv(f"{p}.branch3x3_2b", y, 384, (3, 1), 1, (1, 0))
        y = chain(f"{p}.branch3x3dbl", x, [(448, 1, 1, 0), (384, 3, 1, 1)])
        b.conv(f"{p}.branch3x3dbl_3a", y, 384, (1, 3), 1, (0, 1))
        b.conv(f"{p}.branch3x3dbl_3b", y, 384, (3, 1), 1, (1, 0))
        y = b.pool(f"{p}.branch_pool.avg", x, 3, 1, 1)
        b.conv(f"{p}.branch_pool", y, 192, 1)
        return _FMap(320 + 2 * 384 + 2 * 384 + 192, x.h, x.w)

    x = inception_a("Mixed_5b", x, 32)
    x = inception_a("Mixed_5c", x, 64)
    x = inception_a("Mixed_5d", x, 64)
    x = inception_b("Mixed_6a", x)
    for name, c7 in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)]:
        x = inception_c(name, x, c7)
    x = inception_d("Mixed_7a", x)
    x = inception_e("Mixed_7b", x)
    x = inception_e("Mixed_7c", x)
    x = b.global_pool("avgpool", x)
    b.fc("fc", x, 1000)
    return WorkloadProfile(
        "inception_v3", "cnn", tuple(b.layers), "299x299x3 image",
        _TORCHVISION.format("inception_v3, aux_logits=False")
        + "; published 23.83 M params / 5.75 GMAC at 299x299: published_targets.csv T106",
    )


_VGG_CONVS: dict[str, tuple[int, ...]] = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
"""3x3 convs per stage: configurations D and E (Simonyan & Zisserman 2015, Table 1)."""

_VGG_SOURCES: dict[str, str] = {
    "vgg16": "; published 138.36 M params / 15.5 GMAC: published_targets.csv T107 "
    "(mmclassification model_zoo)",
    "vgg19": "; torchvision reports 143,667,240 params / 19.63 GFLOPS (multiply-adds)",
}


def _vgg(name: str) -> WorkloadProfile:
    """VGG-16/19 (configurations D/E, no batch norm): biased 3x3 convs and three FC layers."""
    b = _CnnBuilder()
    x = _image(224)
    conv_idx, pool_idx = 0, 0
    for stage_width, convs in zip((64, 128, 256, 512, 512), _VGG_CONVS[name], strict=True):
        for _ in range(convs):
            conv_idx += 1
            x = b.conv(f"conv{conv_idx}", x, stage_width, 3, 1, 1, bias=True, bn=False)
        pool_idx += 1
        x = b.pool(f"pool{pool_idx}", x, 2, 2)
    if (x.h, x.w) != (7, 7):  # torchvision's AdaptiveAvgPool2d((7, 7)) is an identity at 224
        x = b.global_pool("avgpool", x, 7)
    for i, n in enumerate((4096, 4096, 1000), start=1):
        x = b.fc(f"fc{i}", x, n, act=i < 3)
    return WorkloadProfile(
        name, "cnn", tuple(b.layers), "224x224x3 image",
        _TORCHVISION.format(name) + _VGG_SOURCES[name],
    )


_DENSENET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
}
"""Dense layers per block (Huang et al. 2017, Table 1; torchvision ``densenet.py``)."""

_DENSENET_PARAMS = {"densenet121": "7,978,856", "densenet169": "14,149,480",
                    "densenet201": "20,013,928"}


def _densenet(name: str) -> WorkloadProfile:
    """DenseNet-BC (growth rate 32, bottleneck width 4 x 32, compression 0.5), as torchvision:
    every dense layer is BN-ReLU-conv1x1(128)-BN-ReLU-conv3x3(32) on the concatenation of the
    block's features (an engine writes each layer's 32 new channels into the block's buffer;
    eagerly, ``torch.cat`` copies the features every layer)."""
    growth, width = 32, 4 * 32
    b = _CnnBuilder()
    x = b.conv("features.conv0", _image(224), 64, 7, 2, 3)
    x = b.pool("features.pool0", x, 3, 2, 1)
    blocks = _DENSENET_BLOCKS[name]
    for bi, layers in enumerate(blocks, start=1):
        c = x.c
        for li in range(1, layers + 1):
            p = f"features.denseblock{bi}.denselayer{li}"
            inp = _FMap(c, x.h, x.w)
            b.norm_act(f"{p}.norm1", inp, concat=True)
            y = b.conv(f"{p}.conv1", inp, width, 1)
            b.conv(f"{p}.conv2", y, growth, 3, 1, 1, bn=False, act=False)
            c += growth
        x = _FMap(c, x.h, x.w)
        if bi < len(blocks):
            p = f"features.transition{bi}"
            b.norm_act(f"{p}.norm", x)
            x = b.conv(f"{p}.conv", x, x.c // 2, 1, bn=False, act=False)
            x = b.pool(f"{p}.pool", x, 2, 2)
    b.norm_act("features.norm5", x)
    x = b.global_pool("avgpool", x)
    b.fc("classifier", x, 1000)
    return WorkloadProfile(
        name, "cnn", tuple(b.layers), "224x224x3 image",
        _TORCHVISION.format(name) + f"; torchvision reports {_DENSENET_PARAMS[name]} params",
    )


# ---------------------------------------------------------------------------------------------
# Transformers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TransformerConfig:
    """Shape of a transformer stack (Hugging Face config names in comments)."""

    layers: int  # num_hidden_layers / n_layer
    d: int  # hidden_size / n_embd
    heads: int  # num_attention_heads / n_head
    ffn: int  # intermediate_size / 4 * n_embd
    vocab: int  # vocab_size
    max_positions: int  # max_position_embeddings / n_positions
    type_vocab: int = 0  # type_vocab_size (BERT segment embeddings)
    default_seq_len: int = 512
    source: str = ""


_BERT_CONFIGS: dict[str, _TransformerConfig] = {
    "bert-base": _TransformerConfig(
        12, 768, 12, 3072, 30522, 512, 2, 384,
        "Hugging Face bert-base-uncased config (BertModel with pooler; Devlin et al. 2019: "
        "110 M params); seq_len 384 as in MLPerf Inference SQuAD",
    ),
    "bert-large": _TransformerConfig(
        24, 1024, 16, 4096, 30522, 512, 2, 384,
        "Hugging Face bert-large-uncased config (BertModel with pooler; Devlin et al. 2019: "
        "340 M params); published 330 M params / 340 GFLOP at 512 tokens: "
        "published_targets.csv T109 (ai_and_memory_wall); seq_len 384 as in MLPerf Inference "
        "SQuAD",
    ),
}

_GPT2_CONFIGS: dict[str, _TransformerConfig] = {
    name: _TransformerConfig(
        n_layer, d, heads, 4 * d, 50257, 1024, 0, 512,
        f"Hugging Face {name} config (GPT2LMHeadModel, lm_head tied to wte); published "
        f"{published} M params: published_targets.csv T108 (nanoGPT transformer_sizing)",
    )
    for name, n_layer, d, heads, published in [
        ("gpt2", 12, 768, 12, 124),
        ("gpt2-medium", 24, 1024, 16, 350),
        ("gpt2-large", 36, 1280, 20, 774),
        ("gpt2-xl", 48, 1600, 25, 1558),
    ]
}

_DECODE_SUFFIX = "-decode"


def _embedding(name: str, rows: int, dim: int, gathered_rows: float, out: float,
               *, params: bool = True, kernels: int = 1) -> Layer:
    """A table lookup: ``gathered_rows`` rows of ``dim`` are read and summed into ``out``.

    Args:
        name: Layer name.
        rows: Rows of the table.
        dim: Elements per row.
        gathered_rows: Rows read per sample (the pooling factor, or tokens).
        out: Elements written per sample.
        params: Whether the table counts as this layer's parameters (False for a table that
            another layer streams and counts, i.e. tied weights).
        kernels: Kernel launches.
    """
    gathered = gathered_rows * dim
    return Layer(name, "embedding", flops=gathered, params=rows * dim if params else 0,
                 act_in=gathered, act_out=out, kernels=kernels)


def _norm(name: str, elements: float, d: int, *, residual: bool) -> Layer:
    """LayerNorm over ``elements`` (with a fused residual add in front if ``residual``)."""
    per_elem = LAYERNORM_FLOPS_PER_ELEMENT + (1 if residual else 0)
    return Layer(name, "norm", flops=per_elem * elements, params=2 * d,
                 act_in=(2 if residual else 1) * elements, act_out=elements)


def _attention(p: str, q_tokens: int, kv_tokens: int, d: int, heads: int) -> list[Layer]:
    """Unfused multi-head attention of ``q_tokens`` queries over ``kv_tokens`` keys/values.

    Scores ``Q K^T`` and context ``P V`` each cost ``2 * q * kv * d`` FLOPs; the K and V read
    by the scores/context kernels are the KV cache in a decode step.
    """
    probs = float(heads * q_tokens * kv_tokens)
    return [
        Layer(f"{p}.scores", "attention", flops=2.0 * q_tokens * kv_tokens * d, params=0,
              act_in=float(q_tokens * d + kv_tokens * d), act_out=probs),
        Layer(f"{p}.softmax", "softmax", flops=SOFTMAX_FLOPS_PER_ELEMENT * probs, params=0,
              act_in=probs, act_out=probs),
        Layer(f"{p}.context", "attention", flops=2.0 * q_tokens * kv_tokens * d, params=0,
              act_in=probs + kv_tokens * d, act_out=float(q_tokens * d)),
    ]


def _bert(name: str, cfg: _TransformerConfig, s: int) -> WorkloadProfile:
    """BERT encoder (post-LN) on ``s`` tokens: embeddings, encoder layers, pooler."""
    d = cfg.d
    tok = float(s * d)
    layers = [
        _embedding("embeddings.word", cfg.vocab, d, s, tok),
        _embedding("embeddings.position", cfg.max_positions, d, s, tok),
        _embedding("embeddings.token_type", cfg.type_vocab, d, s, tok),
        _norm("embeddings.layernorm", tok, d, residual=False),
    ]
    for i in range(cfg.layers):
        p = f"encoder.{i}"
        layers.append(_gemm(f"{p}.attention.qkv", s, d, 3 * d))
        layers.extend(_attention(f"{p}.attention", s, s, d, cfg.heads))
        layers.append(_gemm(f"{p}.attention.output", s, d, d))
        layers.append(_norm(f"{p}.attention.add_layernorm", tok, d, residual=True))
        layers.append(_gemm(f"{p}.intermediate", s, d, cfg.ffn))  # GELU fused
        layers.append(_gemm(f"{p}.output", s, cfg.ffn, d))
        layers.append(_norm(f"{p}.output.add_layernorm", tok, d, residual=True))
    layers.append(_gemm("pooler", 1, d, d))  # tanh(W h_[CLS] + b), on the first token only
    return WorkloadProfile(name, "transformer", tuple(layers), f"seq_len={s}", cfg.source)


def _gpt2(name: str, cfg: _TransformerConfig, *, new_tokens: int, kv_tokens: int,
          description: str) -> WorkloadProfile:
    """GPT-2 (pre-LN decoder) on ``new_tokens`` tokens attending over ``kv_tokens`` positions.

    Prefill has ``new_tokens == kv_tokens == seq_len``; a decode step has ``new_tokens == 1``
    and reads the K and V of ``kv_tokens`` cached positions in every layer. The causal mask is
    not exploited (full score matrix, as unfused kernels compute). Logits are computed for the
    last token only, as serving engines do.
    """
    d, s = cfg.d, new_tokens
    tok = float(s * d)
    layers = [
        # wte is tied to lm_head, which streams (and counts) the whole table
        _embedding("wte", cfg.vocab, d, s, tok, params=False),
        _embedding("wpe", cfg.max_positions, d, s, tok),
    ]
    for i in range(cfg.layers):
        p = f"h.{i}"
        layers.append(_norm(f"{p}.ln_1", tok, d, residual=False))
        layers.append(_gemm(f"{p}.attn.c_attn", s, d, 3 * d))  # also appends K, V to the cache
        layers.extend(_attention(f"{p}.attn", s, kv_tokens, d, cfg.heads))
        layers.append(_gemm(f"{p}.attn.c_proj", s, d, d, residual=True))
        layers.append(_norm(f"{p}.ln_2", tok, d, residual=False))
        layers.append(_gemm(f"{p}.mlp.c_fc", s, d, cfg.ffn))  # GELU fused
        layers.append(_gemm(f"{p}.mlp.c_proj", s, cfg.ffn, d, residual=True))
    layers.append(_norm("ln_f", tok, d, residual=False))
    layers.append(_gemm("lm_head", 1, d, cfg.vocab, bias=False))
    return WorkloadProfile(name, "transformer", tuple(layers), description, cfg.source)


# ---------------------------------------------------------------------------------------------
# Recommendation models (DLRM)
# ---------------------------------------------------------------------------------------------

_DEEPRECSYS = (
    "harvard-acc/DeepRecSys models/configs/dlrm_{}.json (arch_mlp_bot {}, arch_mlp_top {}, "
    "interaction 'cat': top MLP input = (tables + 1) * dim); tables x rows x dim, pooling: "
    "published_targets.csv {}"
)

# name: (bottom MLP incl. dense input, top MLP after the interaction, tables, rows, dim,
#        pooling, published_targets row)
_DEEPRECSYS_CONFIGS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, int, int, int, str]] = {
    "dlrm-rm1": ((128, 64, 32), (256, 64, 1), 8, 4_000_000, 32, 80, "T112"),
    "dlrm-rm2": ((256, 128, 64), (128, 64, 1), 32, 500_000, 64, 120, "T113"),
    "dlrm-rm3": ((2560, 1024, 256, 32), (512, 256, 1), 10, 2_000_000, 32, 20, "T114"),
}

DLRM_V2_ROWS: tuple[int, ...] = (
    40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10,
    2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36,
)
"""Rows of the 26 DLRMv2 tables (Criteo 1TB, ids hashed to at most 40M), MLPerf reference."""

DLRM_V2_MULTI_HOT: tuple[int, ...] = (
    3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1,
)
"""Lookups per sample in each DLRMv2 table (synthetic multi-hot Criteo), MLPerf reference."""


def _deeprecsys(name: str) -> WorkloadProfile:
    bot, top, tables, rows, dim, pooling, target = _DEEPRECSYS_CONFIGS[name]
    if bot[-1] != dim:
        raise ValueError(f"{name}: bottom MLP output {bot[-1]} != embedding dim {dim}")
    layers = _mlp("bot_mlp", bot)
    layers += [_embedding(f"emb.{t}", rows, dim, pooling, dim) for t in range(tables)]
    features = (tables + 1) * dim
    layers.append(Layer("interaction.cat", "elementwise", flops=0.0, params=0,
                        act_in=float(features), act_out=float(features)))
    layers += _mlp("top_mlp", (features, *top))  # sigmoid fused into the last layer
    fmt = "-".join
    return WorkloadProfile(
        name, "recsys", tuple(layers),
        f"{bot[0]} dense features + {tables} sparse features x {pooling} lookups",
        _DEEPRECSYS.format(name.removeprefix("dlrm-"), fmt(map(str, bot)),
                           fmt(map(str, top)), target),
    )


def _dlrm_v2() -> WorkloadProfile:
    """MLPerf DLRMv2: DCNv2 (low-rank cross net) interaction over 26 multi-hot tables."""
    dim, dense_in, cross_layers, low_rank = 128, 13, 3, 512
    layers = _mlp("dense_arch", (dense_in, 512, 256, dim))
    layers += [
        # TorchRec/FBGEMM looks up all tables in one table-batched kernel
        _embedding(f"emb.t{t}", rows, dim, hot, dim, kernels=1 if t == 0 else 0)
        for t, (rows, hot) in enumerate(zip(DLRM_V2_ROWS, DLRM_V2_MULTI_HOT, strict=True))
    ]
    features = (len(DLRM_V2_ROWS) + 1) * dim  # dense output concatenated with pooled sparse
    layers.append(Layer("interaction.cat", "elementwise", flops=0.0, params=0,
                        act_in=float(features), act_out=float(features)))
    for i in range(cross_layers):
        # x_{l+1} = x_0 * (W (V x_l) + b) + x_l (torchrec LowRankCrossNet)
        layers.append(_gemm(f"crossnet.{i}.V", 1, features, low_rank, bias=False))
        down_up = _gemm(f"crossnet.{i}.W", 1, low_rank, features)
        layers.append(Layer(down_up.name, "gemm", flops=down_up.flops + 2.0 * features,
                            params=down_up.params, act_in=down_up.act_in + 2.0 * features,
                            act_out=down_up.act_out))
    layers += _mlp("over_arch", (features, 1024, 1024, 512, 256, 1))
    return WorkloadProfile(
        "dlrm-v2", "recsys", tuple(layers),
        f"{dense_in} dense features + {len(DLRM_V2_ROWS)} multi-hot sparse features "
        f"({sum(DLRM_V2_MULTI_HOT)} lookups)",
        "mlcommons/inference recommendation/dlrm_v2 and mlcommons/training "
        "recommendation_v2/torchrec_dlrm (num_embeddings_per_feature, multi_hot_sizes, "
        "dense_arch 512-256-128, DCN 3 layers low rank 512, over_arch 1024-1024-512-256-1); "
        "published 97.31 GB fp32 / 214 lookups per sample: published_targets.csv T110, T111",
    )


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

_CNN_BUILDERS: dict[str, Callable[[], WorkloadProfile]] = {
    "resnet50": functools.partial(_resnet, "resnet50"),
    "mobilenet_v2": _mobilenet_v2,
    "googlenet": _googlenet,
    "inception_v3": _inception_v3,
    "vgg16": functools.partial(_vgg, "vgg16"),
    "vgg19": functools.partial(_vgg, "vgg19"),
    "resnet101": functools.partial(_resnet, "resnet101"),
    "resnet152": functools.partial(_resnet, "resnet152"),
    "densenet121": functools.partial(_densenet, "densenet121"),
    "densenet169": functools.partial(_densenet, "densenet169"),
    "densenet201": functools.partial(_densenet, "densenet201"),
}

_RECSYS_BUILDERS: dict[str, Callable[[], WorkloadProfile]] = {
    **{name: functools.partial(_deeprecsys, name) for name in _DEEPRECSYS_CONFIGS},
    "dlrm-v2": _dlrm_v2,
}

MODEL_NAMES: tuple[str, ...] = (
    *_CNN_BUILDERS,
    *_BERT_CONFIGS,
    *_GPT2_CONFIGS,
    *(n + _DECODE_SUFFIX for n in _GPT2_CONFIGS),
    *_RECSYS_BUILDERS,
)
"""Every name :func:`build_profile` accepts."""


def _check_length(arg: str, value: int | None, name: str, cfg: _TransformerConfig) -> int:
    if value is None:
        return cfg.default_seq_len
    n = operator.index(value)
    if not 1 <= n <= cfg.max_positions:
        raise ValueError(f"{arg}={n} for {name!r} must be in [1, {cfg.max_positions}]")
    return n


@functools.cache
def build_profile(name: str, *, seq_len: int | None = None,
                  context_len: int | None = None) -> WorkloadProfile:
    """The layer profile of a model (cached: equal arguments return the same object).

    Args:
        name: One of :data:`MODEL_NAMES`.
        seq_len: Tokens per sample for ``bert-*`` (default 384) and GPT-2 prefill (default
            512); at most the model's position table (512 for BERT, 1024 for GPT-2).
        context_len: Positions in the KV cache attended by a GPT-2 decode step (``*-decode``
            names; default 512, at most 1024), including the new token.

    Returns:
        The profile.

    Raises:
        ValueError: ``name`` is unknown, a length is out of range, or a length is given for a
            model that has no such input.
        TypeError: A length is not an integer.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
    base = name.removesuffix(_DECODE_SUFFIX)
    decode = name != base
    takes_seq = name in _BERT_CONFIGS or (name in _GPT2_CONFIGS and not decode)
    if seq_len is not None and not takes_seq:
        raise ValueError(f"seq_len does not apply to {name!r}")
    if context_len is not None and not decode:
        raise ValueError(f"context_len applies to GPT-2 decode steps (*{_DECODE_SUFFIX}) only, "
                         f"not to {name!r}")
    if name in _BERT_CONFIGS:
        cfg = _BERT_CONFIGS[name]
        return _build_transformer(name, _check_length("seq_len", seq_len, name, cfg), 0)
    if base in _GPT2_CONFIGS:
        cfg = _GPT2_CONFIGS[base]
        if decode:
            return _build_transformer(name, 0, _check_length("context_len", context_len, name,
                                                             cfg))
        return _build_transformer(name, _check_length("seq_len", seq_len, name, cfg), 0)
    return _build_fixed(name)


@functools.cache
def _build_fixed(name: str) -> WorkloadProfile:
    builder = _CNN_BUILDERS.get(name) or _RECSYS_BUILDERS[name]
    return builder()


@functools.cache
def _build_transformer(name: str, seq_len: int, context_len: int) -> WorkloadProfile:
    """Cached on resolved lengths, so defaults and explicit equal values share one object."""
    if name in _BERT_CONFIGS:
        return _bert(name, _BERT_CONFIGS[name], seq_len)
    base = name.removesuffix(_DECODE_SUFFIX)
    cfg = _GPT2_CONFIGS[base]
    if name != base:
        return _gpt2(name, cfg, new_tokens=1, kv_tokens=context_len,
                     description=f"decode step: 1 new token, context_len={context_len}")
    return _gpt2(name, cfg, new_tokens=seq_len, kv_tokens=seq_len,
                 description=f"prefill: seq_len={seq_len}")
