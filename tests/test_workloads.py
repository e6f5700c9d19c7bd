"""Tests of hwmodels.workloads: totals against published figures, scaling laws, invariants."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from hwmodels.workloads import (
    BYTES_PER_ELEMENT,
    DLRM_V2_MULTI_HOT,
    DLRM_V2_ROWS,
    KINDS,
    MODEL_NAMES,
    Layer,
    WorkloadProfile,
    build_profile,
)

REPO = Path(__file__).resolve().parents[1]
TARGETS = REPO.parent / "shared" / "calibration" / "published_targets.csv"

# Published totals (published_targets.csv row in the comment) and exact framework counts.
# name: (published params, rel. tol., published GMACs or None, rel. tol.)
PUBLISHED: dict[str, tuple[float, float, float | None, float]] = {
    "resnet50": (25.56e6, 0.01, 4.12, 0.03),  # T103
    "mobilenet_v2": (3.5e6, 0.02, 0.315, 0.05),  # T104: 0.30 (torchvision) .. 0.33 (thop)
    "googlenet": (6.62e6, 0.01, 1.5, 0.03),  # T105
    "inception_v3": (23.83e6, 0.01, 5.75, 0.03),  # T106
    "vgg16": (138.36e6, 0.01, 15.5, 0.03),  # T107
    "bert-base": (110e6, 0.01, None, 0.0),  # Devlin et al. 2019
    "bert-large": (335e6, 0.01, None, 0.0),  # T109 says 330 M; HF BertModel: 335.1 M
    "gpt2": (124e6, 0.01, None, 0.0),  # T108
    "gpt2-medium": (350e6, 0.02, None, 0.0),  # T108 (HF: 354.8 M)
    "gpt2-large": (774e6, 0.01, None, 0.0),  # T108
    "gpt2-xl": (1558e6, 0.01, None, 0.0),  # T108
}

# Exact trainable-parameter counts of torchvision / Hugging Face implementations.
EXACT_PARAMS = {
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "googlenet": 6_624_904,
    "inception_v3": 23_834_568,  # without AuxLogits (27,161,264 with)
    "vgg16": 138_357_544,
    "bert-base": 109_482_240,
    "bert-large": 335_141_888,
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
}

GPT2_SHAPES = {  # name: (layers, d, heads)
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_totals_match_published(name: str) -> None:
    params, p_tol, gmacs, m_tol = PUBLISHED[name]
    prof = build_profile(name)
    assert _rel(prof.params, params) <= p_tol, prof.params
    if gmacs is not None:
        assert _rel(prof.macs / 1e9, gmacs) <= m_tol, prof.macs
    assert prof.params == EXACT_PARAMS[name]


def test_cnn_macs_close_to_torchvision() -> None:
    # torchvision's documented GFLOPS (= GMACs of conv + linear); ours add pools and adds.
    torchvision_gmacs = {"resnet50": 4.09, "mobilenet_v2": 0.30, "googlenet": 1.50,
                         "inception_v3": 5.71, "vgg16": 15.47}
    for name, gmacs in torchvision_gmacs.items():
        assert _rel(build_profile(name).macs / 1e9, gmacs) < 0.015, name


def test_published_numbers_above_come_from_the_targets_csv() -> None:
    if not TARGETS.exists():
        pytest.skip("shared/calibration/published_targets.csv not present")
    with TARGETS.open(newline="") as fh:
        rows = {r["id"]: r for r in csv.DictReader(fh)}

    def values(row_id: str) -> list[float]:
        return [float(v) for v in rows[row_id]["value"].split("/")]

    for row_id, name in [("T103", "resnet50"), ("T104", "mobilenet_v2"), ("T105", "googlenet"),
                         ("T106", "inception_v3"), ("T107", "vgg16")]:
        params_m, gmacs = values(row_id)
        assert PUBLISHED[name][0] == pytest.approx(params_m * 1e6)
        assert _rel(build_profile(name).params, params_m * 1e6) < 0.01, name
        assert _rel(build_profile(name).macs / 1e9, gmacs) < 0.1, name
    for params_m, name in zip(values("T108"), GPT2_SHAPES, strict=True):
        assert PUBLISHED[name][0] == pytest.approx(params_m * 1e6)
    params_m, gflop = values("T109")
    assert _rel(build_profile("bert-large").params, params_m * 1e6) < 0.02
    assert _rel(build_profile("bert-large", seq_len=512).flops / 1e9, gflop) < 0.03
    assert float(rows["T111"]["value"]) == sum(DLRM_V2_MULTI_HOT)
    assert float(rows["T110"]["value"]) == pytest.approx(97.31)


def test_bert_large_flops_at_512_tokens() -> None:
    # T109 (ai_and_memory_wall): about 340 GFLOP per 512-token inference
    assert _rel(build_profile("bert-large", seq_len=512).flops, 340e9) < 0.03


@pytest.mark.parametrize("name", ["bert-base", "gpt2"])
def test_transformer_flops_scale_with_seq_len(name: str) -> None:
    def by_kind(seq_len: int) -> dict[str, float]:
        out: dict[str, float] = {}
        for lay in build_profile(name, seq_len=seq_len).layers:
            out[lay.kind] = out.get(lay.kind, 0.0) + lay.flops
        return out

    short, long = by_kind(128), by_kind(256)
    assert long["attention"] == pytest.approx(4 * short["attention"])  # quadratic
    assert long["softmax"] == pytest.approx(4 * short["softmax"])
    # linear, except the pooler / lm_head that see one token
    assert 1.95 < long["gemm"] / short["gemm"] <= 2.0
    assert build_profile(name, seq_len=256).flops > build_profile(name, seq_len=128).flops


def test_bert_attention_flops_formula() -> None:
    s, d, layers = 384, 1024, 24
    att = sum(lay.flops for lay in build_profile("bert-large").layers if lay.kind == "attention")
    assert att == 2 * 2 * s * s * d * layers


def test_default_lengths_share_the_cached_profile() -> None:
    assert build_profile("bert-base") is build_profile("bert-base", seq_len=384)
    assert build_profile("gpt2") is build_profile("gpt2", seq_len=512)
    assert build_profile("gpt2-decode") is build_profile("gpt2-decode", context_len=512)
    assert build_profile("bert-base").description == "seq_len=384"


def _bytes_per_flop(prof: WorkloadProfile, batch: int = 1) -> float:
    arr = prof.arrays()
    return float((arr.streamed_params.sum() + batch * arr.act.sum()) / (batch * arr.flops.sum()))


@pytest.mark.parametrize("name", list(GPT2_SHAPES))
def test_decode_is_memory_bound(name: str) -> None:
    prefill, decode = build_profile(name), build_profile(f"{name}-decode")
    assert decode.params == prefill.params
    assert _bytes_per_flop(decode) > 50 * _bytes_per_flop(prefill)
    assert _bytes_per_flop(decode) > 0.4  # ~2 FLOPs per weight element read
    # one decode token costs about 2 FLOPs per parameter
    assert decode.flops == pytest.approx(2 * decode.params, rel=0.25)


@pytest.mark.parametrize("name", list(GPT2_SHAPES))
def test_decode_reads_the_kv_cache(name: str) -> None:
    layers, d, heads = GPT2_SHAPES[name]

    def act(ctx: int) -> float:
        return float(build_profile(f"{name}-decode", context_len=ctx).arrays().act.sum())

    # per layer and cached position: K and V (2 d) plus the probabilities of every head
    # (scores write, softmax read + write, context read: 4 heads)
    assert act(1024) - act(512) == 512 * layers * (2 * d + 4 * heads)
    kv = sum(lay.act_in for lay in build_profile(f"{name}-decode", context_len=700).layers
             if lay.kind == "attention")
    q_and_probs = layers * (d + heads * 700)
    assert kv - q_and_probs == 2 * layers * 700 * d


def test_gpt2_tied_embedding_counted_once_and_streamed_by_lm_head() -> None:
    prof = build_profile("gpt2-decode")
    by_name = {lay.name: lay for lay in prof.layers}
    assert by_name["wte"].params == 0
    assert by_name["lm_head"].params == 50257 * 768
    arr = prof.arrays()
    names = [lay.name for lay in prof.layers]
    assert arr.streamed_params[names.index("lm_head")] == 50257 * 768


def test_dlrm_v2_tables() -> None:
    prof = build_profile("dlrm-v2")
    emb = [lay for lay in prof.layers if lay.kind == "embedding"]
    assert len(emb) == 26
    assert sum(DLRM_V2_ROWS) == 204_184_588  # T110
    assert sum(lay.params for lay in emb) == 204_184_588 * 128
    assert sum(lay.act_in for lay in emb) / 128 == 214  # T111: lookups per sample
    assert sum(lay.flops for lay in emb) == 214 * 128  # sum pooling
    assert sum(lay.kernels for lay in emb) == 1  # one table-batched kernel
    # T110: 97.31 GB of fp32 tables (GiB); MLPs add ~16 M params
    assert _rel(prof.weight_bytes("fp32") / 2**30, 97.31) < 0.002
    # bottom 13-512-256-128, 3 low-rank (512) cross layers on 27*128, top 1024-1024-512-256-1
    dense = prof.params - sum(lay.params for lay in emb)
    f = 27 * 128
    bottom = 13 * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128
    cross = 3 * (2 * f * 512 + f)
    top = (f * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 512 + 512 + 512 * 256 + 256
           + 256 + 1)
    assert dense == bottom + cross + top


@pytest.mark.parametrize(
    ("name", "tables", "rows", "dim", "pooling", "bottom", "top"),
    [
        ("dlrm-rm1", 8, 4_000_000, 32, 80, (128, 64, 32), (9 * 32, 256, 64, 1)),
        ("dlrm-rm2", 32, 500_000, 64, 120, (256, 128, 64), (33 * 64, 128, 64, 1)),
        ("dlrm-rm3", 10, 2_000_000, 32, 20, (2560, 1024, 256, 32), (11 * 32, 512, 256, 1)),
    ],
)
def test_deeprecsys_models(name: str, tables: int, rows: int, dim: int, pooling: int,
                           bottom: tuple[int, ...], top: tuple[int, ...]) -> None:
    prof = build_profile(name)
    emb = [lay for lay in prof.layers if lay.kind == "embedding"]
    assert len(emb) == tables  # T112-T114
    for lay in emb:
        assert (lay.params, lay.act_in, lay.flops, lay.act_out) == (
            rows * dim, pooling * dim, pooling * dim, dim)
    gemm_shapes = [(lay.act_in, lay.act_out) for lay in prof.layers if lay.kind == "gemm"]
    expect = [*itertools.pairwise(bottom), *itertools.pairwise(top)]
    assert gemm_shapes == expect
    assert prof.family == "recsys"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_layers_valid_and_arrays_agree(name: str) -> None:
    prof = build_profile(name)
    assert prof.family in ("cnn", "transformer", "recsys")
    assert prof.description and prof.source
    n = len(prof.layers)
    assert len({lay.name for lay in prof.layers}) == n
    for lay in prof.layers:
        assert lay.kind in KINDS
        assert min(lay.flops, lay.params, lay.act_in, lay.act_out, lay.kernels) >= 0
    arr = prof.arrays()
    assert arr is prof.arrays()
    for a in (arr.flops, arr.streamed_params, arr.act, arr.kernels, arr.is_matmul):
        assert a.shape == (n,)
        assert not a.flags.writeable
    assert arr.flops.dtype == np.float64 and arr.is_matmul.dtype == np.bool_
    assert arr.flops.sum() == pytest.approx(prof.flops)
    assert arr.kernels.sum() == prof.kernels
    assert prof.macs == prof.flops / 2
    emb = np.array([lay.kind == "embedding" for lay in prof.layers])
    assert np.all(arr.streamed_params[emb] == 0)
    assert arr.streamed_params.sum() == sum(lay.params for lay in prof.layers
                                            if lay.kind != "embedding")
    assert arr.act == pytest.approx([lay.act_in + lay.act_out for lay in prof.layers])
    for p, b in BYTES_PER_ELEMENT.items():
        assert prof.weight_bytes(p) == prof.params * b
    assert prof.flops > 0 and prof.params > 0 and prof.kernels > 0


def test_is_matmul_by_kind() -> None:
    prof = build_profile("mobilenet_v2")
    arr = prof.arrays()
    kinds = [lay.kind for lay in prof.layers]
    assert "dwconv" in kinds
    for kind, mm in zip(kinds, arr.is_matmul, strict=True):
        assert mm == (kind in ("conv", "gemm", "attention"))


def test_unknown_names_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet51'; known: .*resnet50.*dlrm-v2"):
        build_profile("resnet51")
    with pytest.raises(ValueError, match="seq_len"):
        build_profile("resnet50", seq_len=128)
    with pytest.raises(ValueError, match="seq_len"):
        build_profile("gpt2-decode", seq_len=128)
    with pytest.raises(ValueError, match="context_len"):
        build_profile("gpt2", context_len=128)
    with pytest.raises(ValueError, match="seq_len=513"):
        build_profile("bert-base", seq_len=513)
    with pytest.raises(ValueError, match="context_len=0"):
        build_profile("gpt2-xl-decode", context_len=0)
    with pytest.raises(TypeError):
        build_profile("bert-base", seq_len=12.5)
    with pytest.raises(ValueError, match="precision"):
        build_profile("resnet50").weight_bytes("fp64")


def test_layer_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Layer("x", "lstm", 1.0, 1, 1.0, 1.0)
    with pytest.raises(ValueError, match="flops"):
        Layer("x", "gemm", -1.0, 1, 1.0, 1.0)
    with pytest.raises(ValueError, match="duplicate"):
        lay = Layer("x", "gemm", 1.0, 1, 1.0, 1.0)
        WorkloadProfile("m", "cnn", (lay, lay), "d", "s")


# torchvision.models documentation (pytorch.org/vision/stable/models.html), "Params" column.
TORCHVISION_PARAMS = {
    "vgg19": 143_667_240,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "mobilenet_v2": 3_504_872,
    "inception_v3": 23_834_568,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_equal_torchvision(name: str) -> None:
    assert build_profile(name).params == TORCHVISION_PARAMS[name]


def test_deeper_variants_cost_more() -> None:
    macs = {n: build_profile(n).macs / 1e9 for n in TORCHVISION_PARAMS}
    # torchvision's GFLOPS (multiply-adds) column: 19.63, 2.83, 3.36, 4.29, 7.80, 11.51;
    # the profiles add pooling and batch-norm work (< 1%).
    for name, published in [("vgg19", 19.63), ("densenet121", 2.83), ("densenet169", 3.36),
                            ("densenet201", 4.29), ("resnet101", 7.80), ("resnet152", 11.51)]:
        assert macs[name] == pytest.approx(published, rel=0.01), name
    assert macs["resnet50"] < macs["resnet101"] < macs["resnet152"]
    assert macs["vgg16"] < macs["vgg19"]


def test_eager_operator_counts() -> None:
    """PyTorch eager dispatches conv, batch norm, activation and add separately."""
    r50 = build_profile("resnet50").arrays()
    # 53 convs + 53 BNs + 49 ReLUs + 16 adds + 2 pools + 1 linear
    assert r50.eager_ops.sum() == 174
    assert build_profile("resnet50").kernels == 56  # the fused engine's count is unchanged
    dense = build_profile("densenet121")
    cats = [lay for lay in dense.layers if lay.name.endswith("norm1")]
    assert len(cats) == 58 and all(lay.eager_ops == 3 for lay in cats)
    assert dense.arrays().eager_act.sum() > 0
    mob = build_profile("mobilenet_v2").arrays()
    assert mob.is_depthwise.sum() == 17
