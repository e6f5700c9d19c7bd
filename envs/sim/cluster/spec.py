"""What a cluster is made of, and its static tables (built once per environment).

A cluster is a list of :class:`DeviceGroup` (``count`` devices of one kind: a ``conf/hw`` name, a
layout of MIG slices, MPS shares or the whole GPU, a network link from the router, a price).
:func:`build_tables` turns it into :class:`ClusterTables`: per device its latency tables and
power (:meth:`envs.sim.device.tables.PartitionTables.build`, the same as the single-GPU
environments), an interference callable for MPS shares; per *slot* (a partition of a device,
the router's unit of choice) its memory; per model its weights and request bytes; per (device,
model) the network hop; per device the cost of loading weights.

Sources of the numbers that are not in ``conf/hw``:

* **Weight loads** reuse :mod:`hwmodels.reconfig`: the copy crosses the device's host link at
  ``pcie_gbs x pcie_eff`` (0.8 of the peak, published_targets T126/T127 for the peaks) and
  each load adds ``load_s`` (0.5 s engine deserialisation, an assumption stated there). Loads
  of one device share its host link (they queue).
* **Network hop** from the router to a device: :mod:`hwmodels.links` (``latency + rpc +
  bytes / payload bandwidth``), request bytes from the model's input (an image as 8-bit RGB,
  a token as a 4-byte id).
* **Prices** (US$ per device-hour): assumptions, rounded on-demand list prices of public
  clouds per GPU (2024): T4 0.35, L4 0.80, A10 1.00, A100-80GB 3.70, H100-SXM 6.50.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.sim.device.tables import CoRunnerSlowdowns, PartitionTables, normalise_layout
from hwmodels.interference import InterferenceModel
from hwmodels.links import get_link
from hwmodels.reconfig import DEFAULTS as RECONFIG_DEFAULTS
from hwmodels.specs import DeviceSpec, load_device
from hwmodels.workloads import WorkloadProfile

#: A model's footprint in memory: its weights plus 20% workspace (as ``PartitionTables.fits``).
WORKSPACE = 1.2


@dataclass(frozen=True)
class DeviceGroup:
    """``count`` devices of one kind.

    Attributes:
        hw: Device name (``conf/hw``), or its spec.
        layout: Its partitions: ``("full",)``, MIG profiles, ``("mps:50", ...)``.
        price_per_hour: US$ per device-hour (see the module docstring).
        link: Network link from the router (:data:`hwmodels.links.LINKS`).
        count: How many.
    """

    hw: str | DeviceSpec
    layout: tuple[str, ...] = ("full",)
    price_per_hour: float = 1.0
    link: str = "ethernet-25g"
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"device group {self.label}: count must be >= 1, got {self.count}")
        if self.price_per_hour < 0:
            raise ValueError(f"device group {self.label}: price_per_hour must be >= 0")

    @property
    def label(self) -> str:
        """The device's name as given (a ``conf/hw`` name, or the spec's name)."""
        return self.hw if isinstance(self.hw, str) else self.hw.name


def _groups(*rows: tuple[str, tuple[str, ...], float, str, int]) -> tuple[DeviceGroup, ...]:
    return tuple(DeviceGroup(hw, layout, price, link, n) for hw, layout, price, link, n in rows)


_MIG = ("3g", "2g", "1g", "1g")
_MPS = ("mps:50", "mps:30", "mps:20")
_ETH25, _ETH100 = "ethernet-25g", "ethernet-100g"

#: Cluster presets by name (devices; slots: a slot per partition).
CLUSTER_PRESETS: dict[str, tuple[DeviceGroup, ...]] = {
    # 8 devices, 13 slots.
    "8": _groups(("t4", ("full",), 0.35, _ETH25, 2), ("l4", ("full",), 0.80, _ETH25, 2),
                 ("a10", ("full",), 1.00, _ETH25, 1), ("a100-80gb", _MIG, 3.70, _ETH100, 1),
                 ("a100-80gb", _MPS, 3.70, _ETH100, 1), ("h100-sxm", ("full",), 6.50, _ETH100, 1)),
    # 16 devices, 26 slots.
    "16": _groups(("t4", ("full",), 0.35, _ETH25, 4), ("l4", ("full",), 0.80, _ETH25, 4),
                  ("a10", ("full",), 1.00, _ETH25, 2), ("a100-80gb", _MIG, 3.70, _ETH100, 2),
                  ("a100-80gb", _MPS, 3.70, _ETH100, 2),
                  ("h100-sxm", ("full",), 6.50, _ETH100, 2)),
    # 64 devices, 104 slots (the 16-device mix four times; not registered as an id yet).
    "64": _groups(("t4", ("full",), 0.35, _ETH25, 16), ("l4", ("full",), 0.80, _ETH25, 16),
                  ("a10", ("full",), 1.00, _ETH25, 8), ("a100-80gb", _MIG, 3.70, _ETH100, 8),
                  ("a100-80gb", _MPS, 3.70, _ETH100, 8),
                  ("h100-sxm", ("full",), 6.50, _ETH100, 8)),
    # 1,024 devices, 1,664 slots (the 16-device mix 64 times), for scale (not registered; a
    # step costs ~1.7x an 8-device one on the compiled path, see the README's bench notes).
    "1024": _groups(("t4", ("full",), 0.35, _ETH25, 256), ("l4", ("full",), 0.80, _ETH25, 256),
                    ("a10", ("full",), 1.00, _ETH25, 128),
                    ("a100-80gb", _MIG, 3.70, _ETH100, 128),
                    ("a100-80gb", _MPS, 3.70, _ETH100, 128),
                    ("h100-sxm", ("full",), 6.50, _ETH100, 128)),
}


def request_bytes(profile: WorkloadProfile) -> float:
    """Bytes of one request on the wire: an image as 8-bit RGB (``224x224x3``), a transformer
    query as 4-byte token ids (``seq_len=384``; a decode step sends one token), a recsys
    query as its float32 dense features and int32 lookups (approximately: 4 bytes per
    number in its description)."""
    d = profile.description
    if profile.family == "cnn":
        m = re.search(r"(\d+)x(\d+)x(\d+)", d)
        if m:
            return float(int(m[1]) * int(m[2]) * int(m[3]))
    if "decode step" in d:
        return 4.0
    m = re.search(r"seq_len=(\d+)", d)
    if m:
        return 4.0 * int(m[1])
    return 4.0 * sum(int(x) for x in re.findall(r"\d+", d))


@dataclass
class ClusterTables:
    """Everything static about a cluster serving a mix (see the module docstring).

    Attributes:
        device_names: Per device, ``<hw>#<k>``.
        latency, fits, power_w: Per device, its :class:`PartitionTables` entries.
        slowdowns: Per device, its interference callable (None: isolated partitions).
        slots: Per slot, ``(device, partition)``.
        slot_mem_bytes: Per slot, its partition's memory.
        slot_share: Per slot, the fraction of its device's SMs (for per-slot prices).
        footprint_bytes: Per model, weights x :data:`WORKSPACE`.
        weight_bytes: Per model, its weights.
        hop_s: Per (device, model), the router-to-device time of one request.
        copy_bps: Per device, the bytes/s of a weight copy over its host link.
        load_fixed_s: Per device, the fixed cost of a load (engine deserialisation).
        price_per_s: Per device, US$ per second.
        idle_w: Per device, its idle power.
        per_item_s: Per slot and model, seconds per item at full batches (inf: does not fit).
        capacity_qps: Queries/s the cluster sustains for the mix at full batches: the sum of
            its devices' :func:`~envs.sim.device.tables.capacity_qps`.
    """

    device_names: list[str]
    latency: list[list[list[list[float]]]]
    fits: list[list[list[bool]]]
    power_w: list[list[tuple[float, float]]]
    slowdowns: list[CoRunnerSlowdowns | None]
    slots: list[tuple[int, int]]
    slot_mem_bytes: list[float]
    slot_share: list[float]
    footprint_bytes: list[float]
    weight_bytes: list[float]
    hop_s: list[list[float]]
    copy_bps: list[float]
    load_fixed_s: list[float]
    price_per_s: list[float]
    idle_w: list[float]
    per_item_s: np.ndarray
    capacity_qps: float

    def load_time_s(self, d: int, m: int) -> float:
        """Seconds to load model ``m`` onto device ``d`` with its host link free."""
        return self.weight_bytes[m] / self.copy_bps[d] + self.load_fixed_s[d]


def build_tables(groups: Sequence[DeviceGroup], profiles: Sequence[WorkloadProfile],
                 probabilities: np.ndarray, max_batch: int, precision: str = "fp16",
                 interference: bool = True) -> ClusterTables:
    """The tables of a cluster of ``groups`` serving ``profiles`` (see :class:`ClusterTables`).

    Args:
        groups: The devices.
        profiles: The mix's models (fine-tuned copies of one architecture share a profile).
        probabilities: The mix's popularity (for the capacity).
        max_batch: Largest batch.
        precision: Engine precision.
        interference: Co-runner slowdowns on MPS shares and time slices (MIG is isolated).

    Raises:
        ValueError: a layout is invalid, a device has no host link, or a model fits nowhere.
    """
    names: list[str] = []
    latency, fits, power, slow = [], [], [], []
    slots: list[tuple[int, int]] = []
    mem, share, per_item_rows = [], [], []
    hop, copy_bps, fixed, price, idle = [], [], [], [], []
    capacity = 0.0
    lat_cache: dict[tuple[Any, ...], np.ndarray] = {}
    built: dict[tuple[str, str, tuple[str, ...]],
                tuple[PartitionTables, CoRunnerSlowdowns | None]] = {}
    req_bytes = [request_bytes(p) for p in profiles]
    for g in groups:
        device = load_device(g.hw)
        layout, sharing = normalise_layout(g.layout)
        key = (g.label, repr(device), tuple(layout))
        if key not in built:
            tab = PartitionTables.build(device, layout, profiles, probabilities, max_batch,
                                        precision, cache=lat_cache)
            sd = None
            if interference and sharing != "mig":
                sd = CoRunnerSlowdowns(InterferenceModel(device, precision), profiles,
                                       {0: tab.partitions}, isolated_mig=True)
            built[key] = (tab, sd)
        tab, sd = built[key]
        if device.pcie_gbs <= 0:
            raise ValueError(f"hw '{g.label}': no host link (pcie_gbs = 0) to load weights over")
        params = {**RECONFIG_DEFAULTS, **device.reconfig}
        link = get_link(g.link)
        for k in range(g.count):
            d = len(names)
            names.append(f"{g.label}#{k}")
            latency.append(tab.latency)
            fits.append(tab.fits)
            power.append(list(tab.power_w))
            slow.append(sd)
            for p, part in enumerate(tab.partitions):
                slots.append((d, p))
                mem.append(part.mem_gb * 1e9)
                share.append(part.sms / device.sm_count if part.mode != "time" else 1.0)
                per_item_rows.append(tab.per_item_s[p])
            hop.append([float(link.transfer_s(b)) for b in req_bytes])
            copy_bps.append(device.pcie_gbs * 1e9 * params["pcie_eff"])
            fixed.append(float(params["load_s"]))
            price.append(g.price_per_hour / 3600.0)
            idle.append(sum(i for i, _ in tab.power_w))
            capacity += tab.capacity_qps
    per_item = np.array(per_item_rows)
    if not np.isfinite(per_item).any(axis=0).all():
        bad = [profiles[m].name for m in range(len(profiles))
               if not np.isfinite(per_item[:, m]).any()]
        raise ValueError(f"model(s) {bad} fit on no device of the cluster")
    weights = [p.weight_bytes(precision) for p in profiles]
    return ClusterTables(names, latency, fits, power, slow, slots, mem, share,
                         [w * WORKSPACE for w in weights], weights, hop, copy_bps, fixed,
                         price, idle, per_item, capacity)


#: Separates a model's architecture from its variant in a workload's model names:
#: ``bert-base@ft2`` is a fine-tuned copy of ``bert-base`` (the same profile, its own weights).
VARIANT_SEP = "@"


def base_model(name: str) -> str:
    """The architecture of a model name (``bert-base@ft2`` -> ``bert-base``)."""
    return name.split(VARIANT_SEP, 1)[0]


def warm_residents(tables: ClusterTables, order: Sequence[int]) -> list[list[int]]:
    """Per slot, the models loaded at the start: in ``order`` (most popular first), each
    that fits the partition while the slot's memory lasts (least popular ends up least
    recently used)."""
    out: list[list[int]] = []
    for s, (d, p) in enumerate(tables.slots):
        free = tables.slot_mem_bytes[s]
        here: list[int] = []
        for m in order:
            need = tables.footprint_bytes[m]
            if tables.fits[d][p][m] and need <= free:
                here.append(m)
                free -= need
        out.append(here[::-1])
    return out
