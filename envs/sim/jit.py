"""numba, where it is installed and wanted: the one switch for the compiled kernels.

:data:`AVAILABLE` is False without numba or with ``LDSGYM_NO_JIT=1`` in the environment; the
modules with compiled kernels (:mod:`envs.sim.device.compiled`, :mod:`envs.sim.dlrm.kernels`)
then leave their callers on the pure numpy/Python paths, which give the same results (tested).
Without numba, :func:`njit` returns the function unchanged, so the kernels still import.
"""

from __future__ import annotations

import os
from typing import Any

try:  # numba is a dependency, but the simulator must still work without it
    from numba import njit
    AVAILABLE = os.environ.get("LDSGYM_NO_JIT", "") in ("", "0")
    #: numba is importable (``njit`` compiles, lazily, even when :data:`AVAILABLE` is off).
    INSTALLED = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    AVAILABLE = False
    INSTALLED = False

    def njit(*args: Any, **kwargs: Any) -> Any:  # type: ignore[no-redef]
        def wrap(fn: Any) -> Any:
            return fn
        return wrap

#: njit options of entry points that allocate nothing: without numba's reference counting a
#: call does not wrap each array argument in a meminfo (~37 ns an array, measured on the
#: ClusterRouting bank's 31-array kernel) nor count references inside. Code added to such a
#: kernel that allocates (``np.empty``, a slice copy that may overlap) fails to compile, loudly.
NO_NRT: dict[str, Any] = {"_nrt": False}

__all__ = ["AVAILABLE", "INSTALLED", "NO_NRT", "njit"]
