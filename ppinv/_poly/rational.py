"""The ``rational`` slot of the rule table: what a primitive is as a ratio ``P/Q`` of polynomials
in the unknown (its degrees, its coefficient arithmetic), filled for sums, products, quotients,
integer powers, ``|u|`` and casts (:func:`default_rationals`); coefficient-list arithmetic
(:func:`padd`, :func:`pmul`, :func:`ppow`) for users' slots."""

from __future__ import annotations

from typing import NamedTuple

from jax import lax


class Rational(NamedTuple):
    """What a primitive is as a rational function of its inputs: the ``rational`` slot.

    * ``degree(eqn, d) -> (deg P, deg Q) | None``: the output's degrees as a ratio ``P/Q``
      in the unknown, given each input's (``d``, ``(0, 0)`` for a known one); ``None``
      where this equation is not rational (a parameter, a dtype);
    * ``combine(eqn, args, one, magnitude, sign) -> (num, den)``: the output's coefficient
      lists from the inputs' (``args``: ``(num, den)`` pairs, lowest degree first, ``den``
      ``None`` for a polynomial; ``one``: the constant 1 of the leaf's shape); with
      ``magnitude`` every sign is dropped (``−`` adds), which bounds each coefficient's
      size before cancellation; ``sign`` is the branch's sign of a kink;
    * ``divisor(eqn) -> input index | None``: the input that must not be zero;
    * ``kink``: ``|u|``-like, ``s·u`` with a sign ``s`` per branch.

    Fill it for a new primitive with :func:`ppinv.rules.defrational`.
    """

    degree: object
    combine: object
    divisor: object = None
    kink: bool = False


def padd(a, b):
    """The sum of two coefficient lists (lowest degree first)."""
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0 * b[i]) + (b[i] if i < len(b) else 0 * a[i]) for i in range(n)]


def pmul(a, b):
    """The product of two coefficient lists; ``None`` is the polynomial 1."""
    if a is None or b is None:  # a denominator of 1
        return b if a is None else a
    out = [None] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            t = ai * bj
            out[i + j] = t if out[i + j] is None else out[i + j] + t
    return out


def ppow(a, k, one):
    """``a**k`` for a coefficient list and an integer ``k ≥ 0``."""
    out = [one]
    for _ in range(k):
        out = pmul(out, a)
    return out


def _negate(coeffs, magnitude):
    return coeffs if magnitude else [-c for c in coeffs]


def _sum_degree(eqn, d):
    (p1, q1), (p2, q2) = d
    return max(p1 + q2, p2 + q1), q1 + q2


def _sum(eqn, args, one, magnitude, sign):
    (n1, d1), (n2, d2) = args
    if eqn.prim is lax.sub_p:
        n2 = _negate(n2, magnitude)
    den = None if d1 is None and d2 is None else pmul(d1, d2)
    return padd(pmul(n1, d2), pmul(n2, d1)), den


def _product(eqn, args, one, magnitude, sign):
    (n1, d1), (n2, d2) = args
    return pmul(n1, n2), (None if d1 is None and d2 is None else pmul(d1, d2))


def _quotient(eqn, args, one, magnitude, sign):
    (n1, d1), (n2, d2) = args
    return pmul(n1, d2) if d2 is not None else n1, pmul(d1, n2)


def _power_of(eqn):
    return eqn.params["y"] if eqn.prim is lax.integer_pow_p else 2


def _power_degree(eqn, d):
    k = _power_of(eqn)
    num, den = d[0]
    return (k * num, k * den) if k >= 0 else (-k * den, -k * num)


def _power(eqn, args, one, magnitude, sign):
    k = _power_of(eqn)
    num, den = args[0]
    num_k = ppow(num, abs(k), one)
    den_k = None if den is None else ppow(den, abs(k), one)
    if k >= 0:
        return num_k, den_k
    return (den_k if den_k is not None else [one]), num_k


def _same_degree(eqn, d):
    return d[0]


def _negation(eqn, args, one, magnitude, sign):
    num, den = args[0]
    return _negate(num, magnitude), den


def _absolute(eqn, args, one, magnitude, sign):
    num, den = args[0]
    return (num if sign > 0 else _negate(num, magnitude)), den


def _identity(eqn, args, one, magnitude, sign):
    return args[0]


def _float_to_float(eqn, d):
    return d[0] if eqn.ins[0].is_float else None


def default_rationals():
    """The built-in ``rational`` slots: sums, products, quotients, integer powers, ``|u|``, casts."""
    out = {
        lax.add_p: Rational(_sum_degree, _sum),
        lax.sub_p: Rational(_sum_degree, _sum),
        lax.mul_p: Rational(lambda e, d: (d[0][0] + d[1][0], d[0][1] + d[1][1]), _product),
        lax.div_p: Rational(lambda e, d: (d[0][0] + d[1][1], d[0][1] + d[1][0]), _quotient, divisor=lambda e: 1),
        lax.integer_pow_p: Rational(_power_degree, _power,
                                    divisor=lambda e: 0 if e.params["y"] < 0 else None),
        lax.neg_p: Rational(_same_degree, _negation),
        lax.abs_p: Rational(_same_degree, _absolute, kink=True),
        lax.convert_element_type_p: Rational(_float_to_float, _identity),
    }
    for name in ("square_p", "copy_p"):
        prim = getattr(lax, name, None)
        if prim is not None:
            out[prim] = Rational(_power_degree, _power) if name == "square_p" else Rational(_same_degree, _identity)
    return out
