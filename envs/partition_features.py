"""PartitionPlacement's observation, from one table of features.

Every feature is written once below, as an expression (Python source) over the pending query
and, for the per-partition ones, over one partition's state. From the table,
:func:`compile_features` makes two things for one simulator variant, both evaluating the same
expression text, so they agree bit for bit:

- the **fused values** that ``PartitionPlacementEnv._obs`` asks for every step: every
  feature in one call (one loop over the partitions, no call per feature), which the env
  packs as float32;
- one **builder per key** for ``PartitionPlacementEnv.rollout`` (the fast path of the
  heuristics), which computes only the keys a heuristic reads.

Names an expression may use. Per query: ``m`` (its model), ``now``, ``sla`` (seconds to its
deadline), ``inv_sla`` (``1 / sla``; ``1e3`` when the deadline has passed), ``lev`` (its
priority level, 0 most important), ``L1`` (levels - 1), ``inv_b`` (``1 / max_batch``),
``inv_cap`` (``1 / capacity``), ``self`` (the env). Per partition: ``wt`` (time left in its running
batch, 0 when idle), ``ww`` (its queued work, s), ``wp`` (its queued work at least as
important as the query), ``z`` (the query's batch-1 latency there), ``g`` (the predicted
slowdown of the query's batch there; 1 without interference), ``q`` (items queued), ``qm``
(items queued per model), ``r`` (the model it runs, -1 idle), and ``v_<key>`` (the unclipped
value of a feature computed before it in the row).

Adding an observation feature: one row in :data:`PER_PARTITION` (or :data:`PER_QUERY`) and
one in :data:`OBSERVATION` (its place, shape and bounds); the fused values, the builders,
the observation space and the observation's order follow.

The generated functions are methods of ``PartitionPlacementEnv`` written from the table
(their first argument, ``self``, is the env; they read its attributes as its other methods
do); the env binds them for its variant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Where every feature is clipped (above; ``slack`` also below, at ``-CLIP``).
CLIP = 10.0

#: Per-partition features: key -> (expression, clip): ``"hi"`` clips at ``CLIP``, ``"lo"`` at
#: ``-CLIP``, ``None`` not at all. In the observation's order of computation.
PER_PARTITION: dict[str, tuple[str, str | None]] = {
    "queue": ("q * inv_b", "hi"),
    "queue_same": ("qm[m] * inv_b", "hi"),
    "busy": ("wt * inv_sla", "hi"),
    "finish": ("(wt + ww + z) * inv_sla", "hi"),
    "slowdown": ("g - 1.0", "hi"),
    "finish_prio": ("(wt + wp + z) * inv_sla", "hi"),
    "slack": ("1.0 - (wt + (wp + z) * g) * inv_sla", "lo"),
    "resident": ("1.0 if r == m else 0.0", None),
}

#: Per-query features: key -> (expression, sequence, clip): with a sequence, one value per
#: item ``x`` of it, else one value. ``model`` and ``size`` are per-model constants (the
#: one-hot model, the partitions' SM shares) that the env keeps ready.
PER_QUERY: dict[str, tuple[str, str | None, str | None]] = {
    "sla": ("sla * 1e3 / self._max_sla_ms", None, "hi"),
    "priority": ("(L1 - lev) / L1 if L1 else 0.0", None, None),
    "rates": ("x * inv_cap", "self._rates", "hi"),
}
CONSTANT = {"model": "self._onehot[m]", "size": "self._sms_list"}


#: The observation, in its order: key -> (shape, low, high); shape ``"P"`` is one value per
#: partition, ``"M"`` one per model, ``1`` one value.
OBSERVATION: dict[str, tuple[str | int, float, float]] = {
    "model": ("M", 0.0, 1.0),
    "sla": (1, 0.0, CLIP),
    "queue": ("P", 0.0, CLIP),
    "queue_same": ("P", 0.0, CLIP),
    "busy": ("P", 0.0, CLIP),
    "finish": ("P", 0.0, CLIP),
    "size": ("P", 0.0, 1.0),
    "rates": ("M", 0.0, CLIP),
    "priority": (1, 0.0, 1.0),
    "slowdown": ("P", 0.0, CLIP),
    "finish_prio": ("P", 0.0, CLIP),
    "slack": ("P", -CLIP, 1.0),
    "resident": ("P", 0.0, 1.0),
}


@dataclass(frozen=True)
class Variant:
    """What a simulator variant changes in :data:`PER_PARTITION`.

    Attributes:
        name: ``isolated`` (MIG, one priority class: the v0 simulator), ``shared`` (the shared
            simulator, one class) or ``levels`` (several priority classes).
        same: Keys whose value is another key's (not computed again).
        zero: Keys that are constant 0.
        override: Keys computed by another expression (same clip).
    """

    name: str
    same: Mapping[str, str]
    zero: tuple[str, ...]
    override: Mapping[str, str]


VARIANTS = {
    # Isolated slices: no slowdown; all queued work is ahead of the query; slack = 1 - finish.
    "isolated": Variant("isolated", {"finish_prio": "finish"}, ("slowdown",),
                        {"slack": "1.0 - v_finish"}),
    # Shared GPU, one class: all queued work is ahead of the query (wp is ww).
    "shared": Variant("shared", {"finish_prio": "finish"}, (),
                      {"slack": "1.0 - (wt + (ww + z) * g) * inv_sla"}),
    "levels": Variant("levels", {}, (), {}),
}

#: Per-partition sequences the expressions' names come from (bound by the generated loop).
_SOURCES = {
    "x": "sim.busy_until", "y": "sim.busy", "ww": "sim.queued_work_s", "z": "solo",
    "g": "f", "q": "sim.queued_items", "qm": "sim.queued_by_model", "r": "sim.running_model",
    "wl": "sim.queued_work_level",
}
_NAME = re.compile(r"\b[A-Za-z_]\w*\b")
#: sum(wl[:lev + 1]) as the adds sum() makes (0 + wl[0] (+ wl[1])), without a slice when
#: it is the top level alone, two levels or every level.
_WP = ("0.0 + wl[0] if one else 0.0 + wl[0] + wl[1] if two else sum(wl) if every "
       "else sum(wl[:top])")


@dataclass(frozen=True)
class Features:
    """The compiled features of one variant.

    Attributes:
        columns: Per-partition keys in the order of each partition's row in the fused raw
            values (``same``/``zero`` keys are not in it).
        same: As the variant's (a key -> the key whose column it reads).
        raw: ``raw(self, sim, m, now, sla, inv_sla, lev)``: every value of the observation,
            clipped, as Python floats in the order computed: the :data:`PER_QUERY` values,
            ``self._obs_const[m]`` (the :data:`CONSTANT` values and one 0.0), then a row per
            partition (:attr:`columns`).
        builders: Per key, ``build(self, sim, m, now, sla, inv_sla)``: the unclipped values
            (``slack`` clipped below), as Python floats.
        as_dict: The observation dict from its per-key views (in :data:`OBSERVATION`'s
            order).
        constants: ``constants(self, m)``: the :data:`CONSTANT` values for model ``m`` and
            the 0.0 that constant-0 keys read (``self._obs_const[m]``).
    """

    columns: tuple[str, ...]
    same: Mapping[str, str]
    raw: Callable[..., list[float]]
    builders: Mapping[str, Callable[..., list[float]]]
    as_dict: Callable[[tuple[Any, ...]], dict[str, Any]]
    constants: Callable[[Any, int], list[float]]

    def layout(self, P: int, M: int) -> tuple[dict[str, int], list[int], int]:
        """For ``P`` partitions and ``M`` models: the size of each observation key, where
        each observation entry is in :attr:`raw`'s values (a constant-0 key reads the one 0.0
        that follows the constants), and how many values :attr:`raw` returns."""
        n = {"P": P, "M": M, 1: 1}
        sizes = {k: n[shape] for k, (shape, _, _) in OBSERVATION.items()}
        at: dict[str, int] = {}
        pos = 0
        for key in (*PER_QUERY, *CONSTANT):
            at[key] = pos
            pos += sizes[key]
        zero = pos
        rows_at = pos + 1
        width = len(self.columns)
        order: list[int] = []
        for key in OBSERVATION:
            if key in at:
                order += range(at[key], at[key] + sizes[key])
                continue
            col = self.columns.index(self.same.get(key, key)) if key not in self.zero else -1
            order += [zero if col < 0 else rows_at + p * width + col for p in range(P)]
        return sizes, order, rows_at + P * width

    @property
    def zero(self) -> tuple[str, ...]:
        """Per-partition keys that are constant 0 in this variant."""
        return tuple(k for k in PER_PARTITION
                     if k not in self.columns and k not in self.same)


def _expr(variant: Variant, key: str) -> str:
    return variant.override.get(key, PER_PARTITION[key][0])


def _clip(name: str, how: str | None) -> str:
    if how == "hi":
        return f"c if {name} > c else {name}"
    if how == "lo":
        return f"-c if {name} < -c else {name}"
    return name


def _loop(variant: Variant, keys: list[str], emit: Callable[[str], str], indent: str) -> str:
    """The loop over partitions computing ``keys`` (and what they read); ``emit`` turns the
    list of computed value names into the loop's last statement."""
    exprs = {k: _expr(variant, k) for k in keys}
    names = {n for e in exprs.values() for n in _NAME.findall(e)}
    if "wt" in names:
        names |= {"x", "y"}
    if "wp" in names:
        names.add("wl")
    loop_vars = [n for n in _SOURCES if n in names]
    if len(loop_vars) == 1:
        lines = [f"{indent}for {loop_vars[0]} in {_SOURCES[loop_vars[0]]}:"]
    else:
        lines = [f"{indent}for {', '.join(loop_vars)} in zip("
                 f"{', '.join(_SOURCES[n] for n in loop_vars)}, strict=True):"]
    body = indent + "    "
    if "wt" in names:
        lines.append(f"{body}wt = x - now if y else 0.0")
    if "wp" in names:
        lines.append(f"{body}wp = {_WP}")
    for k in keys:
        lines.append(f"{body}v_{k} = {exprs[k]}")
    lines.append(body + emit(" ".join(keys)))
    return "\n".join(lines)


def _prologue(variant: Variant, keys: list[str], builder: bool = False,
              names: set[str] | None = None) -> list[str]:
    """What the loop over partitions reads, bound once (a builder reads the query's level
    from the simulator; the fused values are passed it)."""
    if names is None:
        names = {n for k in keys for n in _NAME.findall(_expr(variant, k))}
    out = ["    c = CLIP", "    inv_b = self._inv_b"]
    if "z" in names:
        out.append("    solo = self._solo_of_model[m]")
    if builder and ("wp" in names or "wl" in names):
        out.append("    lev = sim.pending_level()")
    if "g" in names:
        out.append("    f = sim.predicted(m) if self.interference else self._ones_p")
    if "wp" in names or "wl" in names:
        out += ["    top = lev + 1", "    one = top == 1", "    every = lev == self.n_levels - 1",
                "    two = every and lev == 1"]
    return out


def _inline(variant: Variant, key: str) -> str:
    """``key``'s expression as one expression: the values it reads (``v_<key>``, ``wt``,
    ``wp``) written out in parentheses (each is evaluated as before, so the value is the
    same to the bit)."""
    temps = {"wt": "x - now if y else 0.0", "wp": _WP}

    def sub(match: re.Match[str]) -> str:
        name = match.group(0)
        if name.startswith("v_") and name[2:] in PER_PARTITION:
            return f"({_inline(variant, name[2:])})"
        if name in temps:
            return f"({temps[name]})"
        return name

    return _NAME.sub(sub, _expr(variant, key))


def compile_features(variant_name: str) -> Features:
    """The fused values and the builders of one variant (see the module docstring)."""
    variant = VARIANTS[variant_name]
    columns = [k for k in PER_PARTITION if k not in variant.same and k not in variant.zero]
    ns: dict[str, Any] = {"CLIP": CLIP}
    # The fused values: the per-query ones, the per-model constants, a row per partition.
    src = ["def raw(self, sim, m, now, sla, inv_sla, lev):", *_prologue(variant, columns),
           "    L1 = self.n_levels - 1", "    inv_cap = self._inv_cap", "    raw = []",
           "    append = raw.append"]
    for expr, over, how in PER_QUERY.values():
        if over is None:
            src += [f"    v = {expr}", f"    append({_clip('v', how)})"]
        else:
            src += [f"    for x in {over}:", f"        v = {expr}",
                    f"        append({_clip('v', how)})"]
    src.append("    raw += self._obs_const[m]")

    def fused(keys: str) -> str:
        vals = [_clip(f"v_{k}", PER_PARTITION[k][1]) for k in keys.split()]
        return f"raw += ({', '.join(vals)},)"

    src.append(_loop(variant, columns, fused, "    "))
    src.append("    return raw")
    for key, (expr, over, _) in PER_QUERY.items():
        src += [f"def build_{key}(self, sim, m, now, sla, inv_sla):",
                "    L1 = self.n_levels - 1", "    inv_cap = self._inv_cap",
                "    lev = sim.pending_level() if L1 else 0",
                f"    return [{expr}{'' if over is None else f' for x in {over}'}]"]
    for key, expr in CONSTANT.items():
        src += [f"def build_{key}(self, sim, m, now, sla, inv_sla):", f"    return {expr}"]
    for key in PER_PARTITION:
        src.append(f"def build_{key}(self, sim, m, now, sla, inv_sla):")
        if key in variant.zero:
            src.append("    return self._zeros_p")
            continue
        target = variant.same.get(key, key)
        expr = _inline(variant, target)
        src += _prologue(variant, [target], builder=True, names=set(_NAME.findall(expr)))
        loop_vars = [n for n in _SOURCES if n in set(_NAME.findall(expr))]
        each = (f"for {loop_vars[0]} in {_SOURCES[loop_vars[0]]}" if len(loop_vars) == 1 else
                f"for {', '.join(loop_vars)} in zip("
                f"{', '.join(_SOURCES[n] for n in loop_vars)}, strict=True)")
        if PER_PARTITION[target][1] == "lo":
            src.append(f"    return [{_clip('v', 'lo')} for v in [{expr} {each}]]")
        else:
            src.append(f"    return [{expr} {each}]")
    src += ["def constants(self, m):",
            f"    return [{', '.join(f'*{e}' for e in CONSTANT.values())}, 0.0]"]
    names = [f"s{i}" for i in range(len(OBSERVATION))]
    src += ["def as_dict(views):", f"    {', '.join(names)}, = views",
            "    return {" + ", ".join(f"{k!r}: {s}" for k, s in zip(OBSERVATION, names,
                                                                     strict=True)) + "}"]
    exec(compile("\n".join(src), f"<features:{variant_name}>", "exec"), ns)
    builders = {k: ns[f"build_{k}"] for k in (*PER_QUERY, *CONSTANT, *PER_PARTITION)}
    return Features(tuple(columns), dict(variant.same), ns["raw"], builders, ns["as_dict"],
                    ns["constants"])


#: The compiled features, per variant (made once per process).
_COMPILED: dict[str, Features] = {}


def features(variant_name: str) -> Features:
    """:func:`compile_features`, cached."""
    hit = _COMPILED.get(variant_name)
    if hit is None:
        hit = _COMPILED[variant_name] = compile_features(variant_name)
    return hit
