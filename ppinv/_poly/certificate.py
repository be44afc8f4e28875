"""Whether at most one candidate root of a polynomial block is ever admissible, proven at build
time (:func:`at_most_one_root`): then the block takes the admissible one and needs no θ."""

from __future__ import annotations

import jax
import numpy as np
from numpyro.distributions import constraints


def at_most_one_root(block):
    """True when at most one candidate can ever be admissible (see the package notes): constant
    coefficients, degree 1, kinks affine in the leaf, and the Möbius map of every region
    between the kinks pole-free with a derivative of one sign throughout; or, for a cubic,
    ``F`` proven strictly monotone on the leaf's support by interval bounds of ``F′``
    (known inputs over the whole line)."""
    if block.degree == 3:
        from .._monotone import derivative_sign

        try:
            return derivative_sign(block.eqns, block.leaf, block.support or constraints.real, lambda v: None) != 0
        except Exception:  # a primitive with no interval bounds, a bound not concrete here
            return False
    if block.known_inputs or block.degree != 1:
        return False
    try:
        with jax.ensure_compile_time_eval():
            return _certify_regions(block, lambda v: np.asarray(v.value))
    except Exception:  # a constant that is not concrete here
        return False


def _certify_regions(block, read):
    base = block._walk(read, np, block.branches[0])
    lines = []  # each kink's argument a·x + c
    for k in block.kinks:
        num, den = base[k.ins[0]]
        coeffs = [_one_value(c) for c in num]
        if den is not None or len(coeffs) > 2 or any(c is None for c in coeffs) or len(coeffs) < 2 or coeffs[1] == 0:
            return False
        lines.append((coeffs[1], coeffs[0]))
    lo, hi = _support_bounds(block.support)
    cuts = sorted({-c / a for a, c in lines if lo < -c / a < hi})
    edges = [lo] + cuts + [hi]
    directions = set()
    for left, right in zip(edges[:-1], edges[1:]):
        mid = _interior_point(left, right)
        signs = tuple(1 if a * mid + c >= 0 else -1 for a, c in lines)
        num, den = block._walk(read, np, signs)[block.anchor.outs[0]]
        p = [_one_value(c) for c in (list(num) + [0.0, 0.0])[:2]]
        q = [1.0, 0.0] if den is None else [_one_value(c) for c in (list(den) + [0.0, 0.0])[:2]]
        if any(c is None for c in p + q):
            return False
        if q[1] != 0 and left <= -q[0] / q[1] <= right:  # a pole in the region (or at its edge)
            return False
        if q[1] == 0 and q[0] == 0:
            return False
        det = p[1] * q[0] - p[0] * q[1]  # f' = det / Q²
        if det == 0:
            return False
        directions.add(det > 0)
    return len(directions) == 1


def _one_value(c):
    """The single value of a coefficient array that is the same in every element, else ``None``."""
    c = np.asarray(c, dtype=float)
    flat = c.reshape(-1)
    return float(flat[0]) if flat.size and np.all(flat == flat[0]) else None


def _support_bounds(support):
    """Scalar ``(lower, upper)`` bounds of a support (``±inf`` where open or unknown)."""
    lo = getattr(support, "lower_bound", None)
    hi = getattr(support, "upper_bound", None)
    as_float = lambda b, default: float(b) if b is not None and np.ndim(b) == 0 else default
    try:
        return as_float(lo, -np.inf), as_float(hi, np.inf)
    except Exception:  # a bound that is not concrete
        return -np.inf, np.inf


def _interior_point(left, right):
    if np.isinf(left) and np.isinf(right):
        return 0.0
    if np.isinf(left):
        return right - 1.0
    if np.isinf(right):
        return left + 1.0
    return 0.5 * (left + right)
