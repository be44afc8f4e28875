"""Each case of a piecewise function is solved on its own interval (``_piecewise.piece_support``).

In ``jnp.where(x < c, f₀(x), f₁(x))`` the predicate confines each case to an interval of ``x``
(a comparison of ``x``, or of an affine function of it, with a constant), and nested wheres and
the support of ``x`` narrow it further. A case that is strictly monotone on its interval only —
``x + exp(−x)`` for ``x ≥ 18`` in LogExpFunctions' ``log1pexp`` — is then proved monotone there
and solved there by the numeric solve, and a case the support rules out is not needed at all.

Each inverse is checked by :func:`ppinv.testing.check_inverse` (soundness, PGF round trip,
log|det| against the dense Jacobian, derivatives against central differences) at points in
every piece, and the solve is compared with an independent root finder (``scipy.optimize.brentq``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints
from scipy import optimize

import ppinv
from ppinv._ir import V, Eqn, Program, _const
from ppinv._piecewise import _EMPTY, piece_support
from ppinv.errors import InversionError
from ppinv.testing import check_inverse

TOL = dict(rtol=1e-8, log_det_atol=1e-7, dense_points=2, grad_points=1)


def _exact(f, points, support=None):
    inv = ppinv.inverse(f, *points[0], support=support)
    report = check_inverse(f, *points[0], inv=inv, support=support, points=points, **TOL)
    assert report.n_in_domain == len(points), report
    return inv


def softplus_tail(x):
    """log(1 + eˣ) with its large-x branch x + e⁻ˣ (monotone for x ≥ 0 only)."""
    return jnp.where(x < 18.0, jnp.log1p(jnp.exp(x)), x + jnp.exp(-x))


def affine_predicate(x):
    """The predicate compares −x/2 (not x) with a constant: the piece is x > 2."""
    return jnp.where(-0.5 * x < -1.0, x + jnp.exp(-x), jnp.exp(x))


def nested(x):
    """The middle piece 1 ≤ x < 5 is monotone only on x ≥ 1, which the outer where gives."""
    return jnp.where(x < 1.0, jnp.exp(x), jnp.where(x < 5.0, x + jnp.exp(1.0 - x), 2.0 * x))


def numpy_threshold(x):
    return jnp.where(x >= np.float64(18.0), x + jnp.exp(-x), jnp.log1p(jnp.exp(x)))


@pytest.mark.parametrize("f, points", [
    (softplus_tail, [(-3.0,), (0.5,), (25.0,)]),
    (affine_predicate, [(0.5,), (3.0,), (7.5,)]),
    (nested, [(-0.5,), (1.5,), (4.0,), (6.0,)]),
    pytest.param(numpy_threshold, [(0.5,), (20.0,)], marks=pytest.mark.slow),
])
def test_a_case_monotone_on_its_piece_is_solved_there(f, points):
    inv = _exact(f, [tuple(jnp.asarray(v) for v in p) for p in points])
    assert inv.n_theta == 0


def test_the_piece_solve_finds_the_root_on_the_piece():
    """x + e⁻ˣ = y has a second root at negative x; the piece x ≥ 18 holds one, which is returned."""
    inv = ppinv.inverse(softplus_tail, 20.0)
    for y in (18.5, 26.0, 40.0):
        ref = optimize.brentq(lambda t: t + np.exp(-t) - y, 18.0, 60.0, xtol=1e-14)
        theta = {n: jnp.zeros(s.shape, s.dtype) for n, s in inv.theta_spec.items()}
        pieces = [inv(y, {**theta, n: jnp.asarray(k, s.dtype)})[0] for n, s in inv.theta_spec.items()
                  for k in range(int(s.support.upper_bound) + 1)
                  if bool(inv.in_domain(y, {**theta, n: jnp.asarray(k, s.dtype)}))]
        assert any(abs(float(x) - ref) < 1e-10 for x in pieces), (y, pieces, ref)


def test_under_jit_and_vmap():
    inv = ppinv.inverse(softplus_tail, 20.0)
    xs = jnp.asarray([-3.0, 0.5, 25.0])
    thetas = jax.vmap(inv.pgf)(xs)
    out = jax.jit(jax.vmap(lambda y, th: inv(y, th)[0]))(jax.vmap(softplus_tail)(xs), thetas)
    np.testing.assert_allclose(out, xs, rtol=1e-12)


def test_the_support_narrows_the_pieces_and_drops_an_unreachable_one():
    """On the support (0, 1) the case x > 5 (not invertible: sin(x)·x) is never selected."""

    def f(x):
        return jnp.where(x > 5.0, jnp.sin(x) * x, jnp.exp(x))

    unit = constraints.interval(0.0, 1.0)
    _exact(f, [(jnp.asarray(0.3),), (jnp.asarray(0.8),)], support=unit)
    with pytest.raises(InversionError, match="case 1"):
        ppinv.inverse(f, 0.3)  # on the real line it is needed, and refused


def test_a_case_not_monotone_on_its_piece_is_still_refused():
    """x + e⁻ˣ falls for x < 0: on the piece x < 18 it has two preimages per value."""

    def f(x):
        return jnp.where(x < 18.0, x + jnp.exp(-x), jnp.log(x))

    with pytest.raises(InversionError, match="case 1"):
        ppinv.inverse(f, 1.0)


# --- the interval a predicate selects --------------------------------------------------------------
def _predicate(op, scale=None, const_left=False):
    """The scalar program ``(scale·x) op 2.0`` (or ``2.0 op (scale·x)``) of one leaf."""
    x = V((), np.dtype(np.float64))
    u, eqns = x, []
    if scale is not None:
        u = V((), np.dtype(np.float64))
        eqns.append(Eqn(jax.lax.mul_p, {}, [x, _const(np.float64(scale))], [u], ""))
    out = V((), np.dtype(np.bool_))
    ins = [_const(np.float64(2.0)), u] if const_left else [u, _const(np.float64(2.0))]
    eqns.append(Eqn(op, {}, ins, [out], ""))
    return Program([x], [out], eqns)


def _bounds(sup):
    from ppinv.theta import support_bounds

    return support_bounds(sup)


def test_piece_support_of_comparisons():
    lt = _predicate(jax.lax.lt_p)
    assert _bounds(piece_support(lt, 1, None)) == (-np.inf, 2.0, False, False)  # x < 2
    assert _bounds(piece_support(lt, 0, None))[:3] == (2.0, np.inf, True)  # x ≥ 2
    flipped = _predicate(jax.lax.lt_p, const_left=True)  # 2 < x
    assert _bounds(piece_support(flipped, 1, None))[:2] == (2.0, np.inf)
    scaled = _predicate(jax.lax.ge_p, scale=-4.0)  # −4x ≥ 2, x ≤ −1/2
    lo, hi, _, _ = _bounds(piece_support(scaled, 1, None))
    assert lo == -np.inf and -0.5 <= hi < -0.5 + 1e-12
    assert _bounds(piece_support(lt, 1, constraints.positive))[:2] == (0.0, 2.0)
    assert piece_support(lt, 0, constraints.interval(0.0, 1.0)) is _EMPTY


# --- a constant case of a nested where -------------------------------------------------------------
def clipped_logistic(x):
    """LogExpFunctions' logistic: 0 below −30, 1 above 30 (flat pieces), eˣ/(1 + eˣ) between."""
    e = jnp.exp(x)
    return jnp.where(x < -30.0, 0.0, jnp.where(x > 30.0, 1.0, e / (1.0 + e)))


def test_a_nested_flat_piece_with_an_observed_output_is_exact():
    """The observation is data: the flat pieces hold mass only at y ∈ {0, 1} (a null set)."""
    inv = _exact(clipped_logistic, [(jnp.asarray(v),) for v in (-3.0, 0.4, 5.0)])
    assert inv.n_theta == 0


def test_a_nested_flat_piece_fed_from_theta_is_refused_or_avoided():
    """With y = logistic(x) + c, solving x from y − c (c from θ) would drop the flat pieces' mass:
    ppinv frees x instead (the where is evaluated forwards), and refuses when told to free c."""

    def f(x, c):
        return clipped_logistic(x) + c

    inv = ppinv.inverse(f, 0.5, 0.5)
    assert "piecewise" not in "\n".join(s.describe() for s in inv.schedule.steps)
    with pytest.raises(InversionError, match="flat piece"):
        ppinv.inverse(f, 0.5, 0.5, free=["c"])


def test_a_vector_with_an_event_support():
    """A support written for the whole vector (``independent``) narrows each element's pieces."""

    def f(x):
        return jnp.where(x < 2.0, jnp.log1p(jnp.exp(x)), x + jnp.exp(-x))

    support = constraints.independent(constraints.positive, 1)
    inv = ppinv.inverse(f, jnp.ones(3), support=support)
    report = check_inverse(f, jnp.ones(3), inv=inv, support=support, n_points=2, **TOL)
    assert report.n_in_domain == 2
