"""The one rule for the actions every ldsgym environment takes.

``step(action)`` accepts an integer (a Python ``int``, a NumPy integer scalar or a 0-d integer
array) inside the ``Discrete`` action space that :meth:`action_masks` allows. Anything else
raises :class:`ValueError` before the environment changes: a non-integer (``0.5``, ``2.0``,
``True``), an index out of range, or a masked action. Masked actions are refused rather than
replaced because a silent substitute (the next valid node, "keep", "reject") trains the agent on
a decision it did not make and hides a policy that ignores the mask; masked agents
(sb3-contrib's ``MaskablePPO``, every baseline) never send one. An unmasked agent can step the
environments through :class:`envs.wrappers.NearestValidAction`, which makes the substitution
explicit and counts it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def checked_action(action: Any, space: spaces.Space[Any], mask: np.ndarray | None) -> int:
    """``action`` as an ``int`` if the rule above allows it.

    Args:
        action: What ``step`` received.
        space: The environment's action space (a ``Discrete``).
        mask: The current action mask (``None``: every action in range is allowed).

    Raises:
        ValueError: a non-integer, out-of-range or masked action (the message says which).
    """
    t = type(action)
    if t is not int and t is not np.int64 and (  # the common types skip the checks
            isinstance(action, bool | np.bool_) or not _is_integer(action)):
        raise ValueError(f"action {action!r}: actions are integers in {space} "
                         f"(got {type(action).__name__})")
    a = int(action)
    if not isinstance(space, spaces.Discrete) or not 0 <= a - int(space.start) < int(space.n):
        raise ValueError(f"action {a} is out of range for {space}")
    if mask is not None and not mask[a]:
        raise ValueError(f"action {a} is masked (valid now: "
                         f"{np.flatnonzero(mask).tolist()}); step only actions that "
                         "action_masks() allows")
    return a


def _is_integer(x: Any) -> bool:
    if isinstance(x, int | np.integer):
        return True
    if isinstance(x, np.generic | np.ndarray):
        return x.shape == () and np.issubdtype(x.dtype, np.integer)
    return False
