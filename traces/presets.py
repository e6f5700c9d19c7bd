"""Named trace sources, so environment specs stay JSON-able (``trace="poisson"``)."""

from __future__ import annotations

from collections.abc import Callable

from traces.arrivals import Poisson, TraceSource

#: Name -> factory of a trace source. Environments accept these names for ``trace=``.
TRACE_PRESETS: dict[str, Callable[[], TraceSource]] = {
    "poisson": Poisson,
}


def get_trace(spec: str | TraceSource) -> TraceSource:
    """Resolve a preset name or pass a trace source through.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    if isinstance(spec, str):
        try:
            return TRACE_PRESETS[spec]()
        except KeyError:
            raise ValueError(
                f"trace '{spec}': unknown preset; known: {', '.join(sorted(TRACE_PRESETS))}"
            ) from None
    if not isinstance(spec, TraceSource):
        raise ValueError(f"trace: expected a preset name or a TraceSource, got {type(spec).__name__}")
    return spec
