"""Closed-form roots of the equation ``E(x) = e₀ + e₁·x + … = 0`` of degree 1, 2 or 3, each with
``|E′(x)|`` at the root and whether the root exists (:func:`root`); :func:`horner` evaluates a
coefficient list."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def horner(coeffs, x):
    out = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        out = out * x + c
    return out


def root(e, choice, degree):
    """``(x, |E′(x)|, ok)`` of root ``choice`` of the degree-``degree`` equation with coefficients ``e``."""
    if degree == 1:
        return moebius_root(e)
    if degree == 2:
        return quadratic_root(e, choice)
    return cubic_root(e, choice)


def moebius_root(e):
    """The root ``−e₀/e₁`` of ``e₀ + e₁·x``."""
    e0, e1 = e
    ok = e1 != 0
    x = -e0 / jnp.where(ok, e1, 1.0)
    return x, e1, ok


def quadratic_root(e, choice):
    """Root ``choice`` (0: the larger, 1: the smaller) of ``c0 + c1·x + c2·x²``."""
    c0, c1, c2 = e
    disc = c1 * c1 - 4 * c2 * c0
    quad = c2 != 0
    ok_d = disc >= 0
    sq = jnp.sqrt(jnp.where(ok_d, disc, 1.0))
    c2s = jnp.where(quad, c2, 1.0)
    # the cancellation-free form: q = −(c1 + sign(c1)·√disc)/2, roots q/c2 and c0/q
    # (the textbook (−c1 ± √disc)/2c2 loses the small root when c1² ≫ |4 c2 c0|)
    q = -0.5 * (c1 + jnp.where(c1 >= 0, sq, -sq))
    q_ok = q != 0
    qs = jnp.where(q_ok, q, 1.0)
    hi = q / c2s
    lo = jnp.where(q_ok, c0 / qs, hi)  # q = 0 only for c1 = disc = 0: a double root
    hi, lo = jnp.maximum(hi, lo), jnp.minimum(hi, lo)
    # degenerate to linear where c2 == 0 at this point: a single root, reached with choice 0
    lin = -c0 / jnp.where(c1 != 0, c1, 1.0)
    x = jnp.where(quad, hi if choice == 0 else lo, lin)
    slope = jnp.where(quad, sq, c1)  # |E'(x)| at the root
    ok = jnp.where(quad, ok_d & (sq > 0), (c1 != 0) & (choice == 0))
    return x, slope, ok


def cubic_root(e, choice):
    """Real root ``choice`` (0: the largest) of ``c0 + c1·x + c2·x² + c3·x³``.

    Three distinct real roots (discriminant > 0): the trigonometric form; one: Cardano's,
    in the cancellation-free form ``u + v`` with ``u`` the larger cube root and ``u·v = −p/3``.
    Two Newton steps on the cubic polish the root; the first starts from a value held fixed
    under differentiation, so the derivative is the implicit one, ``−∂E/∂e · … / E′(x)``.
    """
    c0, c1, c2, c3 = e
    cubic = c3 != 0
    c3s = jnp.where(cubic, c3, 1.0)
    a, b, c = c2 / c3s, c1 / c3s, c0 / c3s
    p = b - a * a / 3.0
    q = 2.0 * a**3 / 27.0 - a * b / 3.0 + c
    three = -(4.0 * p**3 + 27.0 * q * q) > 0
    m = jnp.sqrt(jnp.where(three, -p / 3.0, 1.0))
    phi = jnp.arccos(jnp.clip(jnp.where(three, -q / (2.0 * m**3), 0.0), -1.0, 1.0))
    trig = 2.0 * m * jnp.cos(phi / 3.0 - 2.0 * jnp.pi * choice / 3.0)
    s = jnp.sqrt(jnp.where(three, 0.0, jnp.maximum(q * q / 4.0 + p**3 / 27.0, 0.0)))
    u = jnp.cbrt(-q / 2.0 - jnp.where(q >= 0, s, -s))
    us = jnp.where(u != 0, u, 1.0)
    cardano = jnp.where(u != 0, u - p / (3.0 * us), 0.0)
    x = lax.stop_gradient(jnp.where(three, trig, cardano) - a / 3.0)

    def value_and_slope(x):
        return ((c3 * x + c2) * x + c1) * x + c0, (3.0 * c3 * x + 2.0 * c2) * x + c1

    for _ in range(2):
        val, slope = value_and_slope(x)
        x = x - val / jnp.where(slope != 0, slope, 1.0)
    _, slope = value_and_slope(x)
    ok = (three | (choice == 0)) & (slope != 0) & jnp.isfinite(x)
    # degenerate to a quadratic where c3 == 0 at this point: its two roots, codes 0 and 1
    if choice < 2:
        xq, slope_q, ok_q = quadratic_root((c0, c1, c2), choice)
    else:
        xq, slope_q, ok_q = x, slope, jnp.zeros_like(ok)
    return (jnp.where(cubic, x, xq), jnp.abs(jnp.where(cubic, slope, slope_q)),
            jnp.where(cubic, ok, ok_q))
