"""``while_loop``: refused (its trip count is decided at run time), saying what to use instead."""

from __future__ import annotations

from ..._compat import WHILE_P
from ...errors import NoRuleError
from ..table import DEFAULT_RULES


def _while_rule(pat):
    raise NoRuleError(
        f"a while_loop at {pat.eqn.source} lies between the unknown inputs and the observations; its trip "
        "count is decided at run time, so it cannot be inverted step by step. Use lax.fori_loop with "
        "static bounds or lax.scan (both are inverted), or declare the inverse with @ppinv.custom_inverse."
    )


DEFAULT_RULES.register(WHILE_P, _while_rule)
