"""Refusals of observations no schedule can have: outputs that cannot be observed, and relations
the observations determine twice."""

from __future__ import annotations

import numpy as np

from ..errors import InversionError, OverdeterminedError


def validate_outputs(observed, known_inputs):
    """Refuse outputs that cannot be observed: constants, repeats, known inputs, discrete values."""
    seen = set()
    for i, v in enumerate(observed):
        if v.is_const:
            raise InversionError(
                f"output {i} of the program is the constant {np.asarray(v.value)!r}; it does not depend "
                "on the unknown inputs and cannot be observed. Return only outputs computed from them."
            )
        if v in seen:
            raise OverdeterminedError(
                f"output {i} is the same variable as an earlier output; observing it twice "
                "over-determines it. Return it once."
            )
        if v in set(known_inputs):
            raise InversionError(f"output {i} is a known input passed straight through; it cannot be observed.")
        if not v.is_float:
            raise InversionError(
                f"output {i} has dtype {v.dtype.name}; only floating outputs can be observed "
                "(a discrete output carries no density)."
            )
        seen.add(v)


def check_not_overdetermined(e, kout):
    """Refuse a relation whose continuous outputs are all known already: it would constrain them twice."""
    cont = [o for o, k in zip(e.outs, kout) if k and o.is_float]
    if cont:
        raise OverdeterminedError(
            "over-determined: the relation\n    "
            + e.describe()
            + f"\nhas every place known already ({', '.join(map(repr, cont))} was determined by other "
            "relations), so it would constrain the values twice. The observations determine these "
            "variables more than once: observe fewer outputs, or check that the observed outputs are "
            "independent."
        )
