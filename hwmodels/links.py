"""Interconnects: latency, bandwidth, fair-share contention and RPC overhead (pure numpy).

A message of ``n`` bytes over a link takes::

    t = latency_us + rpc_us + n / (bandwidth_gbs * efficiency)

where ``latency_us`` is the wire/switch latency, ``rpc_us`` the software cost per message
(kernel TCP stack, RPC framework; 0 for load/store fabrics) and ``efficiency`` the share of the
signalling rate left after encoding and protocol headers. Flows that share a link split its
bandwidth max-min fairly (:func:`fair_share`); flows that all start together finish as under
processor sharing (:meth:`LinkSpec.concurrent_times`).

Presets (:data:`LINKS`), bandwidths per direction:

==============  ========  ===========  =======  ==================================================
name            GB/s      latency us   rpc us   source
==============  ========  ===========  =======  ==================================================
ethernet-10g    1.25      0.3          50       802.3; kernel TCP ~50 us (published_targets T130)
ethernet-25g    3.125     0.3          50       as above
ethernet-100g   12.5      0.3          50       as above; NIC-NIC via a switch 0.1-0.3 us (T129)
ib-hdr          25        0.6          2        HDR 200 Gb/s (T128); RDMA verbs, 1 switch hop
ib-ndr          50        0.6          2        NDR 400 Gb/s (T128)
nvlink3         300       2.0          0        A100 NVLink3 600 GB/s total (T124)
nvlink4         450       2.0          0        H100 NVLink4 900 GB/s total (T125)
pcie3           15.75     1.0          0        Gen3 x16 (8 GT/s, 128b/130b)
pcie4           31.5      1.0          0        Gen4 x16 (T126)
pcie5           64        1.0          0        Gen5 x16, 128 GB/s bidirectional (T127)
==============  ========  ===========  =======  ==================================================

Ethernet latencies are NIC-to-NIC through one switch (T129: 100-300 ns; the upper end is
used); the 50 us RPC overhead is the kernel-to-kernel TCP latency of T130, which dominates
("about 95% of the latency is inside the servers"). InfiniBand with RDMA skips the kernel:
0.6 us NIC-to-NIC and 2 us of verbs/RPC software are assumptions.
Efficiencies: 0.9 for Ethernet/InfiniBand payload after headers, 0.85 for NVLink/PCIe
(TLP/flit overhead) - assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinkSpec:
    """One link type.

    Attributes:
        name: Preset name.
        bandwidth_gbs: Signalling bandwidth per direction (GB/s).
        latency_us: One-way latency of an empty message (wire, switch, NIC).
        rpc_us: Software overhead per message (0 for load/store fabrics).
        efficiency: Fraction of ``bandwidth_gbs`` left for payload.
        source: Where the numbers come from.
    """

    name: str
    bandwidth_gbs: float
    latency_us: float
    rpc_us: float = 0.0
    efficiency: float = 0.9
    source: str = ""

    def __post_init__(self) -> None:
        if self.bandwidth_gbs <= 0 or self.latency_us < 0 or self.rpc_us < 0:
            raise ValueError(f"link {self.name!r}: bandwidth must be > 0, latencies >= 0")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"link {self.name!r}: efficiency must be in (0, 1]")

    @property
    def payload_bps(self) -> float:
        """Payload bytes per second."""
        return self.bandwidth_gbs * 1e9 * self.efficiency

    def transfer_s(self, nbytes: float | np.ndarray, share: float | np.ndarray = 1.0
                   ) -> np.ndarray:
        """Seconds to send ``nbytes`` with a fraction ``share`` of the bandwidth."""
        n = np.asarray(nbytes, dtype=np.float64)
        return (self.latency_us + self.rpc_us) * 1e-6 + n / (self.payload_bps * np.asarray(share))

    def concurrent_times(self, nbytes: np.ndarray | list[float]) -> np.ndarray:
        """Completion times of flows that all start at 0 and share the link fairly.

        Under processor sharing the ``k``-th smallest flow finishes when the ``k`` smallest are
        done and everyone still running got the same rate: ``t_k = t_{k-1} + (n - k + 1) *
        (s_k - s_{k-1}) / C``. Fixed per-message latencies are added to every flow.
        """
        sizes = np.asarray(nbytes, dtype=np.float64)
        if sizes.size == 0:
            return sizes.copy()
        order = np.argsort(sizes, kind="stable")
        s = sizes[order]
        n = s.size
        steps = np.diff(np.concatenate(([0.0], s))) * (n - np.arange(n))
        done = np.cumsum(steps) / self.payload_bps
        out = np.empty(n)
        out[order] = done
        return out + (self.latency_us + self.rpc_us) * 1e-6


def fair_share(demands: np.ndarray | list[float], capacity: float) -> np.ndarray:
    """Max-min fair allocation of ``capacity`` among flows asking for ``demands``.

    Flows asking less than an equal share get what they ask; the rest split what is left
    equally (water filling). The allocations sum to ``min(capacity, sum(demands))``.
    """
    d = np.asarray(demands, dtype=np.float64)
    if np.any(d < 0) or capacity < 0:
        raise ValueError("demands and capacity must be >= 0")
    alloc = np.zeros_like(d)
    left = float(capacity)
    active = np.ones(d.shape, dtype=bool)
    while active.any() and left > 1e-15 * max(1.0, capacity):
        share = left / active.sum()
        small = active & (d - alloc <= share)
        if small.any():
            left -= float((d[small] - alloc[small]).sum())
            alloc[small] = d[small]
            active &= ~small
        else:
            alloc[active] += share
            left = 0.0
    return alloc


_ETH = "IEEE 802.3; NIC-to-NIC through one switch 0.1-0.3 us (published_targets T129); " \
       "kernel TCP/RPC 50 us (published_targets T130)"

LINKS: dict[str, LinkSpec] = {
    "ethernet-10g": LinkSpec("ethernet-10g", 1.25, 0.3, 50.0, 0.9, _ETH),
    "ethernet-25g": LinkSpec("ethernet-25g", 3.125, 0.3, 50.0, 0.9, _ETH),
    "ethernet-100g": LinkSpec("ethernet-100g", 12.5, 0.3, 50.0, 0.9, _ETH),
    "ib-hdr": LinkSpec("ib-hdr", 25.0, 0.6, 2.0, 0.9,
                       "HDR 200 Gb/s (published_targets T128); RDMA latency assumption 0.6 us + "
                       "2 us verbs/RPC"),
    "ib-ndr": LinkSpec("ib-ndr", 50.0, 0.6, 2.0, 0.9,
                       "NDR 400 Gb/s (published_targets T128); as HDR otherwise"),
    "nvlink3": LinkSpec("nvlink3", 300.0, 2.0, 0.0, 0.85,
                        "A100 NVLink3 600 GB/s total = 300 per direction (published_targets T124)"),
    "nvlink4": LinkSpec("nvlink4", 450.0, 2.0, 0.0, 0.85,
                        "H100/H200 NVLink4 900 GB/s total (published_targets T125)"),
    "pcie3": LinkSpec("pcie3", 15.75, 1.0, 0.0, 0.85, "PCIe Gen3 x16: 8 GT/s x 16, 128b/130b"),
    "pcie4": LinkSpec("pcie4", 31.5, 1.0, 0.0, 0.85,
                      "PCIe Gen4 x16 per direction (published_targets T126)"),
    "pcie5": LinkSpec("pcie5", 64.0, 1.0, 0.0, 0.85,
                      "PCIe Gen5 x16, 128 GB/s bidirectional (published_targets T127)"),
}
"""Link presets (see the module docstring)."""


def get_link(name: str) -> LinkSpec:
    """A preset link by name.

    Raises:
        ValueError: unknown name (listing the known ones).
    """
    try:
        return LINKS[name]
    except KeyError:
        raise ValueError(f"unknown link {name!r}; known: {', '.join(LINKS)}") from None
