"""Energy of a sharded embedding cluster: nodes, memory and storage tiers, links, dense devices.

Used by ``ldsgym/ShardRouting`` and ``ldsgym/ShardPlacement`` (:class:`ClusterEnergy`) to
account joules from the simulator's counters; it never changes what the simulator does.

Over an elapsed time ``t`` the cluster spends (``fast``, ``slow``: node ``n``'s tiers)::

    E = sum over nodes (node_idle_w + fast.idle_w_per_gb * fast_gb + slow.idle_w) * t  # idle
        + sum over nodes node_dynamic_w[n] * node n's busy seconds          # serving
        + sum over nodes fast_reads[n] * fast.pj_per_bit * 8e-12 * fast_bytes_per_read
        + sum over nodes slow_reads[n] * slow.j_per_read * pages_per_read   # SSD reads
        + sum over nodes (2 * link.port_idle_w) * t                         # NIC + switch port
        + sum over nodes link_bytes[n] * link[n].pj_per_bit * 8e-12          # bytes moved
        + dense_servers * dense_idle_w * t + (dense_busy_w - dense_idle_w) * dense busy seconds

``node_dynamic_w = (tdp_w - idle_w) * memory_weight`` of the node's host device (by default the
4-socket Xeon 8380H of ``conf/hw/xeon-8380h-4s.yaml``, the CPU system MLPerf Inference v1.1 ran
DLRM on; embedding lookups are memory-bound, so they draw ``memory_weight`` of the dynamic range,
as :class:`hwmodels.power.PowerModel`). The dense devices' busy power is
:meth:`hwmodels.power.PowerModel.busy_w` of the DLRM's MLPs.

Per-access energies (:data:`TIER_ENERGY`, :data:`LINK_ENERGY`) with their sources; rows of
``calibration/published_targets.csv`` (category ``8-energy``) hold the published ones the tests
check against:

==========  ==========  ==========  ==========  =================================================
tier        pJ/bit      J/read      idle        source
==========  ==========  ==========  ==========  =================================================
hbm         3.9         -           0 W/GB      O'Connor et al., MICRO'17 (HBM2 3.9 pJ/bit; T163)
dram        20.3        -           0.04 W/GB   Horowitz ISSCC'14: 1.3 nJ per 64-bit access (T164)
cxl         30          -           0.04 W/GB   assumption: DRAM + about 10 pJ/bit of CXL SerDes
optane-ssd  -           8.0e-6      5 W         assumption: 17 W active at 1.5 M IOPS, 5 W idle
nvme-ssd    -           15.0e-6     5 W         assumption: 20 W active at 1 M IOPS, 5 W idle
sata-ssd    -           20.0e-6     1.5 W       assumption: 3.5 W active at 98 k IOPS, 1.5 W idle
==========  ==========  ==========  ==========  =================================================

DRAM idle power per GB (0.04 W/GB, about 2.5 W for a 64 GB RDIMM) is an assumption of the
order vendor power calculators give; HBM's idle draw is in its GPU's ``idle_w``. Links: per-bit
energy of the NIC and switch datapath and a constant per-port draw (datacenter networks are far
from energy proportional, Abts et al., ISCA'10: most of a link's power is spent whether it
carries traffic or not); both numbers are assumptions of the right order (a 25G NIC draws about
10 W, a 12.8 Tb/s switch about 400 W, i.e. about 30 pJ/bit):

==============  ==========  ============
link            pJ/bit      port idle W
==============  ==========  ============
ethernet-*      30          6 (x2: NIC and switch port)
ib-*            20          6
nvlink*         1.5         0.5
pcie*           5           0.5
==============  ==========  ============
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwmodels.links import LinkSpec
from hwmodels.storage import StorageTier


@dataclass(frozen=True)
class TierEnergy:
    """Energy of one memory or storage tier.

    Attributes:
        pj_per_bit: Dynamic energy per bit moved by a read (memory tiers; 0 for block devices).
        j_per_read: Dynamic energy per access unit read (block devices; 0 for memory tiers).
        idle_w_per_gb: Background power per GB of capacity (memory tiers).
        idle_w: Background power of one device (block devices).
        source: Where the numbers come from.
    """

    pj_per_bit: float = 0.0
    j_per_read: float = 0.0
    idle_w_per_gb: float = 0.0
    idle_w: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if min(self.pj_per_bit, self.j_per_read, self.idle_w_per_gb, self.idle_w) < 0:
            raise ValueError("tier energy: every number must be >= 0")


@dataclass(frozen=True)
class LinkEnergy:
    """Energy of one link type: per payload bit and a constant draw per port (two per link)."""

    pj_per_bit: float
    port_idle_w: float
    source: str = ""

    def __post_init__(self) -> None:
        if self.pj_per_bit < 0 or self.port_idle_w < 0:
            raise ValueError("link energy: every number must be >= 0")


TIER_ENERGY: dict[str, TierEnergy] = {
    "hbm": TierEnergy(pj_per_bit=3.9, source="O'Connor et al., Fine-Grained DRAM, MICRO'17: "
                      "HBM2 3.9 pJ/bit (published_targets T163); idle in the GPU's idle_w"),
    "dram": TierEnergy(pj_per_bit=1.3e3 / 64, idle_w_per_gb=0.04,
                       source="Horowitz, ISSCC'14: 1.3-2.6 nJ per 64-bit DRAM access, the low "
                       "end (published_targets T164); idle per GB an assumption"),
    "cxl": TierEnergy(pj_per_bit=30.0, idle_w_per_gb=0.04,
                      source="assumption: DRAM plus about 10 pJ/bit of CXL link"),
    "optane-ssd": TierEnergy(j_per_read=(17.0 - 5.0) / 1.5e6, idle_w=5.0,
                             source="assumption: 17 W active at 1.5 M IOPS, 5 W idle"),
    "nvme-ssd": TierEnergy(j_per_read=(20.0 - 5.0) / 1.0e6, idle_w=5.0,
                           source="assumption: PCIe4 data-center NVMe, 20 W active at 1 M IOPS, "
                           "5 W idle"),
    "sata-ssd": TierEnergy(j_per_read=(3.5 - 1.5) / 9.8e4, idle_w=1.5,
                           source="assumption: SATA drive, 3.5 W active at 98 k IOPS, 1.5 W idle"),
}
"""Per-tier energy (see the module docstring)."""

LINK_ENERGY: dict[str, LinkEnergy] = {
    "ethernet": LinkEnergy(30.0, 6.0, "assumption: 25-100G NIC about 10 W, switch about 30 "
                           "pJ/bit; Abts et al. ISCA'10 for the constant share"),
    "ib": LinkEnergy(20.0, 6.0, "assumption: as Ethernet, leaner switch datapath"),
    "nvlink": LinkEnergy(1.5, 0.5, "assumption: on-board SerDes about 1-2 pJ/bit"),
    "pcie": LinkEnergy(5.0, 0.5, "assumption: PCIe SerDes about 5 pJ/bit"),
}
"""Per link family (the preset name's prefix up to the first dash, or its letters)."""


def tier_energy(tier: StorageTier | str) -> TierEnergy:
    """The energy of a tier preset.

    Raises:
        ValueError: no energy figures for that tier.
    """
    name = tier if isinstance(tier, str) else tier.name
    try:
        return TIER_ENERGY[name]
    except KeyError:
        raise ValueError(f"no energy figures for tier {name!r}; known: "
                         f"{', '.join(TIER_ENERGY)}") from None


def link_energy(link: LinkSpec | str) -> LinkEnergy:
    """The energy of a link preset (by family: ``ethernet-25g`` -> ``ethernet``).

    Raises:
        ValueError: no energy figures for that link family.
    """
    name = link if isinstance(link, str) else link.name
    family = name.split("-")[0].rstrip("0123456789")
    try:
        return LINK_ENERGY[family]
    except KeyError:
        raise ValueError(f"no energy figures for link {name!r}; known families: "
                         f"{', '.join(LINK_ENERGY)}") from None


def _groups(values: Sequence[float]) -> tuple[tuple[float, tuple[int, ...]], ...]:
    """The distinct ``values`` with the indices holding each, in order of first appearance."""
    out: dict[float, list[int]] = {}
    for i, v in enumerate(values):
        out.setdefault(v, []).append(i)
    return tuple((v, tuple(ix)) for v, ix in out.items())


def _per_group(groups: tuple[tuple[float, tuple[int, ...]], ...],
               counts: Sequence[float]) -> float:
    """``sum(value * sum(counts[i] for i in its indices))`` over ``groups`` (one product per
    distinct value: a uniform cluster gives ``value * sum(counts)``)."""
    total = 0.0
    for v, ix in groups:
        n = 0.0
        for i in ix:
            n += counts[i]
        total += v * n
    return total


@dataclass(frozen=True)
class ClusterEnergy:
    """Joules of a sharded cluster from its activity counters (see the module docstring).

    Attributes:
        idle_w: Power of the whole cluster doing nothing (nodes, tiers, link ports, dense).
        node_dynamic_w: Extra power of each node while it serves a sub-request.
        fast_j_per_read: Joules per row read from each node's fast tier.
        slow_j_per_read: Joules per row read from each node's slow tier.
        link_j_per_byte: Joules per byte sent over each node's link (both directions).
        dense_dynamic_w: Extra power of a dense device while it runs an MLP.
    """

    idle_w: float
    node_dynamic_w: tuple[float, ...]
    fast_j_per_read: tuple[float, ...]
    slow_j_per_read: tuple[float, ...]
    link_j_per_byte: tuple[float, ...]
    dense_dynamic_w: float

    def __post_init__(self) -> None:
        # Nodes with equal per-read energies priced together (their reads are integers, so
        # summing them first is exact).
        object.__setattr__(self, "_fast_groups", _groups(self.fast_j_per_read))
        object.__setattr__(self, "_slow_groups", _groups(self.slow_j_per_read))
        object.__setattr__(self, "_busy_groups", _groups(self.node_dynamic_w))

    @classmethod
    def build(cls, *, n_nodes: int, node_idle_w: float | Sequence[float],
              node_dynamic_w: float | Sequence[float],
              fast: StorageTier | Sequence[StorageTier],
              slow: StorageTier | Sequence[StorageTier], row_bytes: int,
              links: Sequence[LinkSpec], dense_servers: int, dense_idle_w: float,
              dense_busy_w: float,
              overrides: Mapping[str, float] | None = None) -> ClusterEnergy:
        """The cluster's constants from its parts (``node_idle_w``, ``node_dynamic_w``,
        ``fast`` and ``slow``: one for every node or one per node; ``overrides`` replaces any
        field, per-node ones on every node).

        Raises:
            ValueError: unknown override or negative value, no figures for a tier or link,
                per-node values not one per node.
        """
        fasts = [fast] * n_nodes if isinstance(fast, StorageTier) else list(fast)
        slows = [slow] * n_nodes if isinstance(slow, StorageTier) else list(slow)
        if len(fasts) != n_nodes or len(slows) != n_nodes:
            raise ValueError(f"energy: {len(fasts)} fast and {len(slows)} slow tiers for "
                             f"{n_nodes} nodes")
        idles = ([float(node_idle_w)] * n_nodes if isinstance(node_idle_w, (int, float))
                 else [float(w) for w in node_idle_w])
        dyns = ([float(node_dynamic_w)] * n_nodes if isinstance(node_dynamic_w, (int, float))
                else [float(w) for w in node_dynamic_w])
        if len(idles) != n_nodes or len(dyns) != n_nodes:
            raise ValueError(f"energy: {len(idles)} idle and {len(dyns)} dynamic node powers "
                             f"for {n_nodes} nodes")
        le = [link_energy(lk) for lk in links]
        per_node_idle: list[float] = []
        fast_j: list[float] = []
        slow_j: list[float] = []
        for ft, st, host_w in zip(fasts, slows, idles, strict=True):
            fe, se = tier_energy(ft), tier_energy(st)
            fast_moved = math.ceil(row_bytes / ft.access_bytes) * ft.access_bytes
            slow_pages = math.ceil(row_bytes / st.access_bytes)
            per_node_idle.append(host_w + fe.idle_w_per_gb * ft.capacity_gb + fe.idle_w
                                 + se.idle_w_per_gb * st.capacity_gb + se.idle_w)
            fast_j.append(fe.pj_per_bit * 8e-12 * fast_moved + fe.j_per_read)
            slow_j.append(se.j_per_read * slow_pages
                          + se.pj_per_bit * 8e-12 * slow_pages * st.access_bytes)
        # Nodes of equal idle power counted together (n * w for a uniform cluster).
        nodes_idle = sum(len(ix) * w for w, ix in _groups(per_node_idle))
        idle = (nodes_idle + sum(2.0 * e.port_idle_w for e in le)
                + dense_servers * dense_idle_w)
        values: dict[str, Any] = {
            "idle_w": idle,
            "node_dynamic_w": tuple(dyns),
            "fast_j_per_read": tuple(fast_j),
            "slow_j_per_read": tuple(slow_j),
            "link_j_per_byte": tuple(e.pj_per_bit * 8e-12 for e in le),
            "dense_dynamic_w": max(dense_busy_w - dense_idle_w, 0.0),
        }
        per_node = {"link_j_per_byte": len(le), "fast_j_per_read": n_nodes,
                    "slow_j_per_read": n_nodes, "node_dynamic_w": n_nodes}
        for k, v in (overrides or {}).items():
            if k not in values:
                raise ValueError(f"energy: unknown key {k!r}; known: {', '.join(values)}")
            if not float(v) >= 0:
                raise ValueError(f"energy: {k} must be >= 0, got {v}")
            values[k] = (float(v),) * per_node[k] if k in per_node else float(v)
        return cls(**values)

    def reads_j(self, fast_reads: Sequence[float], slow_reads: Sequence[float]
                ) -> tuple[float, float]:
        """Joules of the fast-tier and of the slow-tier reads, given the rows read on each
        node (integer counts)."""
        return (_per_group(self._fast_groups, fast_reads),  # type: ignore[attr-defined]
                _per_group(self._slow_groups, slow_reads))  # type: ignore[attr-defined]

    def busy_j(self, node_busy_s: Sequence[float]) -> float:
        """Joules of the nodes' service above idle, given each node's busy seconds."""
        return _per_group(self._busy_groups, node_busy_s)  # type: ignore[attr-defined]

    def breakdown_j(self, elapsed_s: float, node_busy_s: Sequence[float],
                    fast_reads: Sequence[float], slow_reads: Sequence[float],
                    link_bytes: Sequence[float], dense_busy_s: float) -> dict[str, float]:
        """Joules by part: ``idle``, ``nodes``, ``fast``, ``slow``, ``links``, ``dense``
        (``node_busy_s``, ``fast_reads``, ``slow_reads``, ``link_bytes``: per node)."""
        fast_j, slow_j = self.reads_j(fast_reads, slow_reads)
        return {
            "idle": self.idle_w * elapsed_s,
            "nodes": self.busy_j(node_busy_s),
            "fast": fast_j,
            "slow": slow_j,
            "links": sum(j * b for j, b in zip(self.link_j_per_byte, link_bytes, strict=True)),
            "dense": self.dense_dynamic_w * dense_busy_s,
        }

    def energy_j(self, elapsed_s: float, node_busy_s: Sequence[float],
                 fast_reads: Sequence[float], slow_reads: Sequence[float],
                 link_bytes: Sequence[float], dense_busy_s: float) -> float:
        """Total joules (the sum of :meth:`breakdown_j`)."""
        return sum(self.breakdown_j(elapsed_s, node_busy_s, fast_reads, slow_reads,
                                    link_bytes, dense_busy_s).values())
