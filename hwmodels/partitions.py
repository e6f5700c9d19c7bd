"""GPU partitions: MIG profiles with their real placement rules, MPS shares, time slicing.

A *layout* is a list of partitions that can coexist on one GPU. For MIG the rules are NVIDIA's:
the GPU has ``compute_slices`` compute slices and ``memory_slices`` memory slices; a profile
occupies a contiguous run of memory slices starting at one of its allowed positions, and the
compute slices in use may not exceed the total. Sources: ``published_targets.csv`` T059-T062
(NVIDIA go-nvml mock tables and the MIG user guide's supported-profiles tables).

Checks against NVIDIA's documentation (tests/test_hwmodels_partitions.py):

* SMs per profile and SMs lost in MIG mode: A100 1g = 14 SMs, 7g = 98 of 108 (10 SMs, 9.3%,
  are unused in MIG mode; T059); H100 SXM5 1g = 16, 7g = 112 of 132 (T062).
* Instances per profile (T061): 1g x7, 1g double-memory x4, 2g x3, 3g x2, 4g x1, 7g x1.
* Valid layouts: counted as *placements* (profile and start position), the maximal A100
  configurations without the later double-memory 1g profile number 19, as in the MIG user
  guide's A100 configuration figure; A30 has 5 (4g; 2g+2g; 2g+1g+1g either way; 4 x 1g).
  As multisets of profile names (what :func:`enumerate_layouts` returns, since a scheduler
  only cares which slices exist), A100 has 12 maximal layouts without and 28 with ``1g.20gb``.
* MPS (:func:`mps_layout`): active-thread percentages cap the SMs a client may use; memory
  bandwidth and L2 are shared, so co-runners interfere (:mod:`hwmodels.interference`). Volta+
  MPS serves at most :data:`MPS_MAX_CLIENTS` clients per GPU (fewer per MIG compute instance,
  in proportion to its size), and a client's percentage cannot change while it runs
  (published_targets T066: a restart is needed; see :mod:`hwmodels.reconfig`).
* Time slicing (:func:`time_slice_layout`): every context may use the whole GPU but only one
  runs at a time; each partition sees all SMs and the full bandwidth, and the interference
  model divides progress among the busy ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from hwmodels.specs import DeviceSpec

MPS_MAX_CLIENTS = 48
"""Most MPS clients per GPU on Volta and later (NVIDIA MPS documentation; the limit shrinks in
proportion to a MIG compute instance's size when MPS runs inside MIG)."""

SHARING_MODES = ("exclusive", "mig", "mps", "time")
"""How a partition shares its GPU: alone on it, a MIG slice, an MPS share, a time slice."""


@dataclass(frozen=True, slots=True)
class MigProfile:
    """One MIG GPU-instance profile, e.g. ``3g.40gb``."""

    name: str
    compute_slices: int
    memory_slices: int
    sms: int
    mem_gb: float
    starts: tuple[int, ...]

    @property
    def short(self) -> str:
        """``"3g"`` for ``"3g.40gb"``; ``"1g.2x"`` for the double-memory 1g profile."""
        return self.name.split(".")[0] + (".2x" if self.memory_slices == 2 and
                                          self.compute_slices == 1 else "")


@dataclass(frozen=True, slots=True)
class MigTable:
    """Every MIG profile of one GPU model."""

    name: str
    compute_slices: int
    memory_slices: int
    profiles: tuple[MigProfile, ...]
    source: str

    def profile(self, name: str) -> MigProfile:
        """Look a profile up by full (``3g.40gb``) or short (``3g``) name."""
        for p in self.profiles:
            if name in (p.name, p.short):
                return p
        known = ", ".join(p.name for p in self.profiles)
        raise ValueError(f"MIG profile '{name}' does not exist on {self.name}; known: {known}")


def _table(name: str, mem: Sequence[float], sms: Sequence[int], source: str) -> MigTable:
    """The A100/H100-style 7-compute/8-memory-slice table with per-profile memory and SMs.

    ``mem`` and ``sms`` list values for 1g, 1g(double memory), 2g, 3g, 4g, 7g.
    """
    shapes = (  # (prefix, compute, memory slices, starts)
        ("1g", 1, 1, (0, 1, 2, 3, 4, 5, 6)),
        ("1g", 1, 2, (0, 2, 4, 6)),
        ("2g", 2, 2, (0, 2, 4)),
        ("3g", 3, 4, (0, 4)),
        ("4g", 4, 4, (0,)),
        ("7g", 7, 8, (0,)),
    )
    profiles = tuple(
        MigProfile(f"{prefix}.{round(m)}gb", c, ms, s, float(m), starts)
        for (prefix, c, ms, starts), m, s in zip(shapes, mem, sms, strict=True)
    )
    return MigTable(name, 7, 8, profiles, source)


MIG_TABLES: dict[str, MigTable] = {
    "a100-80gb": _table(
        "A100-80GB", (9.856, 19.968, 19.968, 40.192, 40.192, 80.384), (14, 14, 28, 42, 56, 98),
        "published_targets T059-T061: go-nvml mock a100.go; NVIDIA MIG user guide",
    ),
    "a100-40gb": _table(
        "A100-40GB", (4.864, 9.856, 9.856, 19.968, 19.968, 40.192), (14, 14, 28, 42, 56, 98),
        "published_targets T059-T061: go-nvml mock a100.go (40GB memory column)",
    ),
    "h100-80gb": _table(
        "H100-80GB", (10.0, 20.0, 20.0, 40.0, 40.0, 80.0), (16, 16, 32, 48, 64, 112),
        "published_targets T062: go-nvml mock h100.go; NVIDIA MIG user guide",
    ),
    "h200-141gb": _table(
        "H200-141GB", (18.0, 35.0, 35.0, 71.0, 71.0, 141.0), (16, 16, 32, 48, 64, 112),
        "published_targets T062: go-nvml mock h200.go; NVIDIA MIG user guide",
    ),
    "a30-24gb": MigTable(
        "A30-24GB", 4, 4,
        (
            MigProfile("1g.6gb", 1, 1, 14, 6.0, (0, 1, 2, 3)),
            MigProfile("2g.12gb", 2, 2, 28, 12.0, (0, 2)),
            MigProfile("4g.24gb", 4, 4, 56, 24.0, (0,)),
        ),
        "NVIDIA MIG user guide, A30 supported profiles (56 SMs, 4 slices)",
    ),
}


def mig_table(name: str) -> MigTable:
    """The MIG table called ``name`` (a :attr:`DeviceSpec.mig` value)."""
    try:
        return MIG_TABLES[name]
    except KeyError:
        raise ValueError(f"no MIG table '{name}'; known: {', '.join(MIG_TABLES)}") from None


def place(table: MigTable, names: Sequence[str]) -> tuple[int, ...] | None:
    """Start positions for ``names`` (in order) that satisfy the placement rules, or ``None``."""
    profiles = [table.profile(n) for n in names]
    if sum(p.compute_slices for p in profiles) > table.compute_slices:
        return None
    # Place big profiles first: fewer choices, so backtracking stays tiny.
    order = sorted(range(len(profiles)), key=lambda i: -profiles[i].memory_slices)
    starts = [0] * len(profiles)
    used = [False] * table.memory_slices

    def fits(p: MigProfile, s: int) -> bool:
        return s + p.memory_slices <= table.memory_slices and not any(
            used[s : s + p.memory_slices]
        )

    def solve(k: int) -> bool:
        if k == len(order):
            return True
        p = profiles[order[k]]
        for s in p.starts:
            if fits(p, s):
                used[s : s + p.memory_slices] = [True] * p.memory_slices
                starts[order[k]] = s
                if solve(k + 1):
                    return True
                used[s : s + p.memory_slices] = [False] * p.memory_slices
        return False

    return tuple(starts) if solve(0) else None


@lru_cache(maxsize=16)
def enumerate_layouts(table_name: str, maximal_only: bool = True) -> tuple[tuple[str, ...], ...]:
    """Every valid MIG layout of a GPU as sorted tuples of profile names (largest first).

    Args:
        table_name: A key of :data:`MIG_TABLES`.
        maximal_only: Keep only layouts to which no further profile can be added.
    """
    table = mig_table(table_name)
    by_size = sorted(table.profiles, key=lambda p: (-p.compute_slices, -p.memory_slices))
    found: set[tuple[str, ...]] = set()

    def grow(current: list[str], min_idx: int) -> Iterator[tuple[str, ...]]:
        yield tuple(current)
        for i in range(min_idx, len(by_size)):
            cand = [*current, by_size[i].name]
            if place(table, cand) is not None:
                yield from grow(cand, i)

    for layout in grow([], 0):
        if layout:
            found.add(layout)
    if maximal_only:
        found = {
            lay for lay in found
            if not any(place(table, [*lay, p.name]) is not None for p in table.profiles)
        }
    return tuple(sorted(found, key=lambda lay: ([-table.profile(n).compute_slices for n in lay],
                                                lay)))


@dataclass(frozen=True, slots=True)
class Partition:
    """A share of one GPU that a model instance runs on.

    Attributes:
        name: ``"3g.40gb"``, ``"mps-50%"`` or ``"full"``.
        sms: Streaming multiprocessors it may use.
        bw_fraction: Fraction of the device's memory bandwidth it may use.
        mem_gb: Memory it owns.
        isolated: True for MIG (own SMs, L2 and memory controllers); False for MPS/time slicing,
            where co-runners interfere.
        sharing: One of :data:`SHARING_MODES`; empty means "infer": ``exclusive`` for the
            partition named ``full``, ``mig`` for other isolated ones, ``mps`` otherwise.
    """

    name: str
    sms: int
    bw_fraction: float
    mem_gb: float
    isolated: bool = True
    sharing: str = ""

    @property
    def mode(self) -> str:
        """The sharing mode (see :attr:`sharing`)."""
        if self.sharing:
            return self.sharing
        if self.isolated:
            return "exclusive" if self.name == "full" else "mig"
        return "mps"


def mig_layout(device: DeviceSpec, names: Sequence[str]) -> tuple[Partition, ...]:
    """Partitions for a MIG layout on ``device``.

    Raises:
        ValueError: the device has no MIG, a profile is unknown, or the profiles cannot be
            placed together (naming the layout and why).
    """
    if device.mig is None:
        raise ValueError(f"hw '{device.name}' does not support MIG; use layout: [full] or MPS")
    table = mig_table(device.mig)
    if not names:
        raise ValueError("layout is empty; give at least one MIG profile")
    profiles = [table.profile(n) for n in names]
    if place(table, names) is None:
        used = sum(p.compute_slices for p in profiles)
        why = (
            f"uses {used} compute slices, more than the {table.compute_slices} available"
            if used > table.compute_slices
            else "has no non-overlapping placement of its memory slices"
        )
        raise ValueError(f"layout {list(names)} is impossible on {table.name}: it {why}")
    return tuple(
        Partition(p.name, p.sms, p.memory_slices / table.memory_slices, p.mem_gb, True, "mig")
        for p in profiles
    )


def full_gpu(device: DeviceSpec) -> Partition:
    """The whole device as one partition (MIG off)."""
    return Partition("full", device.sm_count, 1.0, device.mem_gb, True, "exclusive")


def mps_layout(device: DeviceSpec, percentages: Sequence[float]) -> tuple[Partition, ...]:
    """MPS shares given as active-thread percentages (memory bandwidth is shared).

    Raises:
        ValueError: a share is outside (0, 100] or the shares sum to more than 100.
    """
    if any(not 0 < p <= 100 for p in percentages) or sum(percentages) > 100 + 1e-9:
        raise ValueError(f"MPS shares {list(percentages)} must each be in (0, 100] and sum <= 100")
    if len(percentages) > MPS_MAX_CLIENTS:
        raise ValueError(f"{len(percentages)} MPS clients exceed the limit of {MPS_MAX_CLIENTS}")
    return tuple(
        Partition(f"mps-{p:g}%", max(1, round(device.sm_count * p / 100)), 1.0,
                  device.mem_gb * p / 100, False, "mps")
        for p in percentages
    )


def time_slice_layout(device: DeviceSpec, n: int) -> tuple[Partition, ...]:
    """``n`` time-sliced contexts: each may use the whole device, one runs at a time.

    Memory is split evenly (each context must hold its own weights). The slowdown when several
    are busy comes from :class:`hwmodels.interference.InterferenceModel`.

    Raises:
        ValueError: ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"time slicing needs at least one context, got {n}")
    return tuple(
        Partition(f"ts-{i}", device.sm_count, 1.0, device.mem_gb / n, False, "time")
        for i in range(n)
    )


def enumerate_placements(table_name: str, *, include: Sequence[str] | None = None,
                         maximal_only: bool = True) -> tuple[tuple[tuple[str, int], ...], ...]:
    """Every valid MIG configuration as sorted ``(profile name, start slice)`` pairs.

    This counts what NVIDIA's configuration figures draw: the same profiles at different
    positions are different configurations.

    Args:
        table_name: A key of :data:`MIG_TABLES`.
        include: Profile names to consider (default: all of the table's profiles).
        maximal_only: Keep only configurations to which no further instance fits.
    """
    table = mig_table(table_name)
    profiles = [table.profile(n) for n in include] if include is not None else list(
        table.profiles)
    cands = [(p, s) for p in profiles for s in p.starts
             if s + p.memory_slices <= table.memory_slices]
    found: list[tuple[tuple[str, int], ...]] = []

    def fits(used: int, compute: int, p: MigProfile, s: int) -> bool:
        mask = ((1 << p.memory_slices) - 1) << s
        return not used & mask and compute + p.compute_slices <= table.compute_slices

    def grow(i: int, used: int, compute: int, chosen: list[tuple[str, int]]) -> None:
        if i == len(cands):
            if chosen and (not maximal_only or not any(
                    fits(used, compute, p, s) for p, s in cands)):
                found.append(tuple(sorted(chosen)))
            return
        grow(i + 1, used, compute, chosen)
        p, s = cands[i]
        if fits(used, compute, p, s):
            mask = ((1 << p.memory_slices) - 1) << s
            grow(i + 1, used | mask, compute + p.compute_slices, [*chosen, (p.name, s)])

    grow(0, 0, 0, [])
    return tuple(sorted(set(found)))


def max_instances(table_name: str) -> dict[str, int]:
    """How many instances of each profile alone fit on the GPU (by its short name)."""
    table = mig_table(table_name)
    out = {}
    for p in table.profiles:
        n = 0
        while place(table, [p.name] * (n + 1)) is not None:
            n += 1
        out[p.short] = n
    return out


def make_layout(device: DeviceSpec, layout: Sequence[str]) -> tuple[Partition, ...]:
    """Partitions from a layout spec: ``["full"]``, MIG profile names, ``["mps:50", ...]`` or
    ``["ts:3"]`` (three time-sliced contexts)."""
    if list(layout) == ["full"]:
        return (full_gpu(device),)
    if len(layout) == 1 and str(layout[0]).startswith("ts:"):
        try:
            n = int(str(layout[0])[3:])
        except ValueError:
            raise ValueError(f"layout {list(layout)}: time slicing looks like 'ts:3'") from None
        return time_slice_layout(device, n)
    if all(str(x).startswith("mps:") for x in layout):
        try:
            pcts = [float(str(x)[4:]) for x in layout]
        except ValueError:
            raise ValueError(f"layout {list(layout)}: MPS shares look like 'mps:50'") from None
        return mps_layout(device, pcts)
    return mig_layout(device, layout)
