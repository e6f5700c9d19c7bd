"""Links (fair share, transfer times) and storage tiers with the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest

from hwmodels.links import LINKS, fair_share, get_link
from hwmodels.storage import (
    TIERS,
    EmbeddingCache,
    TieredEmbeddingStore,
    get_tier,
    hit_rate,
    static_hit_rate,
    zipf_ids,
)


def test_fair_share_water_filling() -> None:
    alloc = fair_share([1, 2, 10, 10], 12)
    np.testing.assert_allclose(alloc, [1, 2, 4.5, 4.5])
    np.testing.assert_allclose(fair_share([1, 2], 10), [1, 2])  # under-subscribed
    np.testing.assert_allclose(fair_share([5, 5, 5], 6), [2, 2, 2])
    assert fair_share([], 3).size == 0
    with pytest.raises(ValueError):
        fair_share([-1], 1)


def test_concurrent_flows_share_a_link() -> None:
    link = get_link("ethernet-100g")
    one = float(link.transfer_s(1e6))
    times = link.concurrent_times([1e6, 1e6])
    # Two equal flows each get half: both finish at twice the serialisation time.
    serial = 1e6 / link.payload_bps
    np.testing.assert_allclose(times, 2 * serial + (one - serial))
    t = link.concurrent_times([3e6, 1e6, 2e6])
    assert t[1] < t[2] < t[0]
    assert t[0] == pytest.approx(6e6 / link.payload_bps + (one - serial))


def test_link_presets_match_targets() -> None:
    assert LINKS["nvlink3"].bandwidth_gbs * 2 == 600  # T124
    assert LINKS["nvlink4"].bandwidth_gbs * 2 == 900  # T125
    assert LINKS["pcie4"].bandwidth_gbs == 31.5  # T126
    assert LINKS["ib-ndr"].bandwidth_gbs * 8 == 400  # T128
    eth = LINKS["ethernet-25g"]
    assert eth.latency_us + eth.rpc_us == pytest.approx(50, rel=0.05)  # T130
    # RPC-dominated small messages: InfiniBand beats Ethernet by an order of magnitude.
    assert LINKS["ib-hdr"].transfer_s(512) * 10 < eth.transfer_s(512)
    with pytest.raises(ValueError, match="unknown link"):
        get_link("carrier-pigeon")


def test_storage_tiers() -> None:
    assert 1e6 / TIERS["optane-ssd"].latency_us == pytest.approx(74875, rel=0.01)  # T132
    assert 1e6 / TIERS["nvme-ssd"].latency_us == pytest.approx(20176, rel=0.01)  # T133
    assert TIERS["dram"].latency_us < 0.1  # T134
    assert 2 <= TIERS["cxl"].latency_us / TIERS["dram"].latency_us <= 5  # T135
    ssd = get_tier("nvme-ssd")
    # Deeper queues hide latency until the IOPS limit binds.
    assert ssd.read_s(1000, 256, 1) > ssd.read_s(1000, 256, 32) >= 1000 / ssd.iops
    # Rows smaller than a flash page still move a whole page.
    assert ssd.read_s(1e6, 128, 1e6) == pytest.approx(ssd.read_s(1e6, 4096, 1e6))
    latencies = [TIERS[n].latency_us for n in ("hbm", "dram", "cxl", "optane-ssd", "nvme-ssd")]
    assert latencies[1] < latencies[0] or latencies[0] < latencies[3]
    with pytest.raises(ValueError):
        get_tier("tape")


@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_cache_hit_rate_rises_with_skew_and_size(policy: str) -> None:
    rng = np.random.default_rng(0)
    rates = [hit_rate(zipf_ids(rng, 20000, a, 20000), 1000, policy, warmup=0.2)
             for a in (0.6, 0.9, 1.2)]
    assert rates[0] < rates[1] < rates[2]
    ids = zipf_ids(rng, 20000, 1.0, 20000)
    assert hit_rate(ids, 200, policy) < hit_rate(ids, 2000, policy)
    assert hit_rate(ids, 0, policy) == 0.0


def test_lfu_beats_lru_on_static_zipf_and_ideal_bounds_both() -> None:
    rng = np.random.default_rng(1)
    ids = zipf_ids(rng, 50000, 0.9, 40000)
    lru, lfu = hit_rate(ids, 2000, "lru", 0.25), hit_rate(ids, 2000, "lfu", 0.25)
    assert lru < lfu <= static_hit_rate(50000, 0.9, 2000) + 0.02


def test_cache_basics_and_tiered_store() -> None:
    c = EmbeddingCache(2, "lru")
    np.testing.assert_array_equal(c.access([1, 2, 1, 3, 2]), [0, 0, 1, 0, 0])
    f = EmbeddingCache(2, "lfu")
    np.testing.assert_array_equal(f.access([1, 1, 2, 3, 1, 2]), [0, 1, 0, 0, 1, 0])
    with pytest.raises(ValueError):
        EmbeddingCache(2, "fifo")
    store = TieredEmbeddingStore(TIERS["hbm"], TIERS["nvme-ssd"], 1000, 256)
    rng = np.random.default_rng(0)
    first, _ = store.lookup_s(zipf_ids(rng, 5000, 1.1, 2000))
    later, hits = store.lookup_s(zipf_ids(rng, 5000, 1.1, 2000))
    assert later < first and hits > 0.5
