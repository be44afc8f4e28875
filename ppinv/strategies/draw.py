"""The Hypothesis strategy that draws random programs (:func:`programs`)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .program import RandomProgram
from .vocabulary import BINARY, CONST_KINDS, SUPPORTS, UNARY, WITH_CONST


@st.composite
def _const(draw, size):
    kinds = CONST_KINDS if size else tuple(k for k in CONST_KINDS if not k.endswith("vector"))
    kind = draw(st.sampled_from(kinds))
    mag = st.floats(0.25, 3.0)
    sgn = st.sampled_from([-1.0, 1.0])
    if kind.endswith("vector"):
        return kind, tuple(round(draw(mag) * draw(sgn), 4) for _ in range(size))
    return kind, round(draw(mag) * draw(sgn), 4)


@st.composite
def programs(draw, max_inputs=3, max_ops=8, arrays=True, control_flow=True, supports=True):
    """Random straight-line programs (see the docstring of ``ppinv.strategies``)."""
    n_inputs = draw(st.integers(1, max_inputs))
    size = draw(st.sampled_from([0, 0, 3] if arrays else [0]))
    n_ops = draw(st.integers(1, max_ops))
    kinds = ["unary", "unary", "binary", "binary", "const", "const", "clip"]
    if size:
        kinds += ["sum", "cumsum", "rev", "pick", "roll", "dot", "matvec", "vecmat"]
    if control_flow:
        kinds += ["cond", "cond_closure", "scan_carry"] + (["scan", "scan_weak"] if size else [])
    sups = tuple(draw(st.sampled_from(SUPPORTS)) if supports else ("real",) for _ in range(n_inputs))
    ops, consts = [], []
    n = n_inputs
    rng = lambda: np.random.default_rng(draw(st.integers(0, 2**31)))  # noqa: E731 - constant matrices
    for _ in range(n_ops):
        kind = draw(st.sampled_from(kinds))
        pick = st.integers(0, n - 1)
        if kind == "unary":
            op = ("unary", draw(st.sampled_from(sorted(UNARY))), draw(pick))
        elif kind == "binary":
            op = ("binary", draw(st.sampled_from(sorted(BINARY))), draw(pick), draw(pick))
        elif kind == "const":
            consts.append(draw(_const(size)))
            op = ("const", draw(st.sampled_from(sorted(WITH_CONST))), draw(pick), len(consts) - 1)
        elif kind == "clip":
            lo = round(draw(st.floats(-2.0, 1.0)), 3)
            op = ("clip", draw(pick), lo, round(lo + draw(st.floats(0.25, 3.0)), 3))
        elif kind == "cond":
            op = ("cond", draw(pick), draw(pick))
        elif kind == "cond_closure":
            i, j = draw(pick), draw(pick)
            op = ("cond_closure", i, j, draw(st.sampled_from([i, j, draw(pick)])))
        elif kind in ("pick", "roll"):
            op = (kind, draw(pick), draw(st.integers(0, 2)))
        elif kind == "dot":
            op = ("dot", draw(pick), draw(pick))
        elif kind == "matvec":
            op = ("matvec", draw(pick), draw(pick), draw(pick), tuple(np.round(rng().normal(size=size), 3).tolist()))
        elif kind == "vecmat":
            cols = draw(st.sampled_from([size - 1, size + 1]))
            a = np.round(rng().normal(size=(size, cols)), 3).tolist()
            b = None if cols < size else np.round(rng().normal(size=(cols, size)), 3).tolist()
            op = ("vecmat", draw(pick), draw(pick), a, b)
        else:
            op = (kind, draw(pick))
        ops.append(op)
        n += 1
    n_out = draw(st.integers(1, min(2, n_inputs)))
    outputs = sorted(set(draw(st.lists(st.integers(n_inputs, n - 1), min_size=n_out, max_size=n_out))))
    return RandomProgram(ops, n_inputs, size, outputs, supports=sups, consts=tuple(consts))
