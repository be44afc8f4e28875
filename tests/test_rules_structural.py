"""Property tests of the built-in structural and linear rules (rules/structural/, rules/linear.py).

Each rule is exercised backward (its output observed). :func:`ppinv.testing.check_inverse`
checks the PGF round trip, ``log|det|`` against ``slogdet`` of ``jax.jacfwd``
over ``(y, θ)`` and soundness at perturbed continuous θ, at random points
(normal draws, so with negative entries) and at hand-picked points near the
edges (tiny prefixes of a cumulative product, tiny parts of a positive sum).
Further tests compare ``log|det|`` with closed forms, check that θ spaces have
the right size and support, that outside the domain the density is −∞ with
finite gradients, that programs the rules must refuse are refused, and that
everything composes with ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from numpyro.distributions import constraints

import ppinv
from ppinv.testing import check_inverse

RTOL = 1e-9
LD_ATOL = 1e-8
STACK_P = getattr(lax, "stack_p", lax.concatenate_p)

_rng = np.random.default_rng(20240601)
# Most cases have 6 unknowns (one shape of dense Jacobian for all, so the helper ops compile once).
A23 = _rng.normal(size=(2, 3))
A46 = _rng.normal(size=(4, 6))
A66 = _rng.normal(size=(6, 6))
B223 = _rng.normal(size=(2, 2, 3))  # a batch of 2x3 matrices
T223 = _rng.normal(size=(2, 2, 3))  # contracts two axes of x


def _ld(a):
    """log|det ∂x/∂(y, θ)| of x = A⁺y + Nθ: −½ log det(A Aᵀ)."""
    return -0.5 * np.linalg.slogdet(a @ a.T)[1]


@dataclass(frozen=True)
class SCase:
    id: str
    f: Callable
    shapes: tuple  # argument shapes
    prims: tuple  # primitives the program must use
    n_theta: int = 0
    theta: tuple = ()  # (kind, shape, support) of each θ leaf
    support: Any = None
    points: tuple = ()  # extra hand-picked inputs (near the domain edges)
    log_det: Callable | None = None  # closed form of log|det| at x (the arguments)
    pgf: Callable | None = None  # closed form of the (single) θ leaf at x

    def __str__(self):
        return self.id


POS = constraints.positive
REAL = constraints.real
SIMPLEX = constraints.simplex

CASES = [
    # bijections that only move elements: log|det| = 0
    SCase("reshape[(2,3)->(6,)]", lambda x: x.reshape(6), ((2, 3),), (lax.reshape_p,)),
    SCase("reshape[()->(1,1)]", lambda x: jnp.reshape(x, (1, 1)), ((),), (lax.reshape_p,)),
    SCase("squeeze[(2,1,3)]", lambda x: jnp.squeeze(x, 1), ((2, 1, 3),), (lax.squeeze_p,)),
    SCase("squeeze[(1,)->()]", lambda x: jnp.squeeze(x), ((1,),), (lax.squeeze_p,)),
    SCase("broadcast_in_dim[(6,)->(1,6)]", lambda x: x[None], ((6,),), (lax.broadcast_in_dim_p,)),
    SCase("broadcast_in_dim[()->(1,1)]", lambda x: jnp.broadcast_to(x, (1, 1)), ((),), (lax.broadcast_in_dim_p,)),
    SCase("transpose[3d]", lambda x: jnp.transpose(x, (2, 0, 1)), ((1, 2, 3),), (lax.transpose_p,)),
    SCase("rev[2d,both]", lambda x: jnp.flip(x, (0, 1)), ((2, 3),), (lax.rev_p,)),
    # cumulative sums: triangular, log|det| = 0
    SCase("cumsum[fwd]", jnp.cumsum, ((6,),), (lax.cumsum_p,)),
    SCase("cumsum[rev,axis0]", lambda x: lax.cumsum(x, axis=0, reverse=True), ((2, 3),), (lax.cumsum_p,)),
    # cumulative products: x_i = z_i / z_{i-1}
    SCase("cumprod[fwd,positive]", jnp.cumprod, ((6,),), (lax.cumprod_p,), support=POS,
          points=((np.array([1e-6, 3.0, 1e-5, 0.5, 2.0, 1e-3]),),),
          log_det=lambda x: -np.sum(np.log(np.abs(np.cumprod(x)[:-1])))),
    SCase("cumprod[rev,axis1,signed]", lambda x: lax.cumprod(x, axis=1, reverse=True), ((2, 3),), (lax.cumprod_p,),
          points=((np.array([[-0.5, 2.0, 1e-6], [3.0, -1e-5, 0.7]]),),),
          log_det=lambda x: -np.sum(np.log(np.abs(np.cumprod(x[:, ::-1], axis=1)[:, :-1])))),
    # joins: cut the observation back into pieces
    SCase("concatenate[3 unequal pieces]", lambda a, b, c: jnp.concatenate([a, b, c]), ((1,), (2,), (3,)),
          (lax.concatenate_p,)),
    SCase("concatenate[axis1]", lambda a, b: jnp.concatenate([a, b], axis=1), ((2, 1), (2, 2)), (lax.concatenate_p,)),
    SCase("stack[axis1]", lambda a, b, c: jnp.stack([a, b, c], axis=1), ((2,), (2,), (2,)), (STACK_P,)),
    SCase("stack[scalars]", lambda a, b: jnp.stack([a, b]), ((), ()), (STACK_P,)),
    # sums: all but one summand from θ, or a simplex when the summands are positive
    SCase("reduce_sum[1d]", jnp.sum, ((6,),), (lax.reduce_sum_p,), 5, (("value", (5,), REAL),),
          log_det=lambda x: 0.0, pgf=lambda x: x[:-1]),
    SCase("reduce_sum[axes(0,2)]", lambda x: jnp.sum(x, axis=(0, 2)), ((2, 3, 1),), (lax.reduce_sum_p,), 3,
          (("value", (3, 1), REAL),)),
    SCase("reduce_sum[1d,positive]", jnp.sum, ((6,),), (lax.reduce_sum_p,), 5, (("simplex", (6,), SIMPLEX),),
          support=POS, points=((np.array([1e-9, 2.0, 3.0, 1e-6, 0.5, 1.0]),),),
          log_det=lambda x: 5 * np.log(x.sum()), pgf=lambda x: x / x.sum()),
    SCase("reduce_sum[axis0,positive]", lambda x: jnp.sum(x, axis=0), ((2, 3),), (lax.reduce_sum_p,), 3,
          (("simplex", (3, 2), SIMPLEX),), support=POS, points=((np.array([[1e-9, 2.0, 5.0], [1.0, 1e-8, 1e-3]]),),),
          log_det=lambda x: np.sum(np.log(x.sum(0))), pgf=lambda x: (x / x.sum(0)).T),
    SCase("reduce_sum[single]", lambda x: jnp.sum(x, axis=0), ((1, 6),), (lax.reduce_sum_p,)),
    # products: all but one factor from θ
    SCase("reduce_prod[1d]", jnp.prod, ((6,),), (lax.reduce_prod_p,), 5, (("value", (5,), REAL),),
          points=((np.array([1e-4, -2.0, 3.0, -0.5, 0.7, 1.5]),),),
          log_det=lambda x: -np.log(np.abs(np.prod(x[:-1]))), pgf=lambda x: x[:-1]),
    SCase("reduce_prod[axis1,positive]", lambda x: jnp.prod(x, axis=1), ((2, 3),), (lax.reduce_prod_p,), 4,
          (("value", (2, 2), POS),), support=POS, points=((np.array([[1e-6, 2.0, 30.0], [0.5, 1e-3, 7.0]]),),),
          log_det=lambda x: -np.sum(np.log(np.prod(x[:, :-1], axis=1))), pgf=lambda x: x[:, :-1]),
    # linear maps with a known matrix: x = A⁺y + Nθ, log|det| = −½ log det(A Aᵀ) per free column
    SCase("dot[A(4x6)@x]", lambda x: A46 @ x, ((6,),), (lax.dot_general_p,), 2, (("null_space", (2,), REAL),),
          log_det=lambda x: _ld(A46)),
    SCase("dot[A(6x6)@x]", lambda x: A66 @ x, ((6,),), (lax.dot_general_p,), log_det=lambda x: _ld(A66)),
    SCase("dot[x@A(6x4)]", lambda x: x @ A46.T, ((6,),), (lax.dot_general_p,), 2, (("null_space", (2,), REAL),),
          log_det=lambda x: _ld(A46)),
    SCase("dot[A(2x3)@X(3x2)]", lambda x: A23 @ x, ((3, 2),), (lax.dot_general_p,), 2,
          (("null_space", (2, 1), REAL),), log_det=lambda x: 2 * _ld(A23)),
    SCase("dot[batched B@x]", lambda x: jnp.einsum("bij,bj->bi", B223, x), ((2, 3),), (lax.dot_general_p,), 2,
          (("null_space", (2, 1), REAL),), log_det=lambda x: _ld(B223[0]) + _ld(B223[1])),
    SCase("dot[batched x@B]", lambda x: jnp.einsum("bj,bij->bi", x, B223), ((2, 3),), (lax.dot_general_p,), 2,
          (("null_space", (2, 1), REAL),), log_det=lambda x: _ld(B223[0]) + _ld(B223[1])),
    SCase("dot[tensordot 2 axes]", lambda x: jnp.tensordot(T223, x, axes=2), ((2, 3),), (lax.dot_general_p,), 4,
          (("null_space", (4,), REAL),), log_det=lambda x: _ld(T223.reshape(2, 6))),
]


def _example(case):
    return tuple(np.full(s, 0.5) for s in case.shapes)


def _random_points(case, n=3):
    """Normal draws (negative entries included); log-normal for positive supports."""
    rng = np.random.default_rng(len(case.id) * 7919 + sum(map(ord, case.id)))
    points = []
    for _ in range(n):
        x = tuple(rng.normal(size=s) for s in case.shapes)
        points.append(tuple(np.exp(v) for v in x) if case.support is POS else x)
    return points


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rule(case):
    example = _example(case)
    inv = ppinv.inverse(case.f, *example, support=case.support)
    prims = {e.prim for e in inv.program.eqns}
    for p in case.prims:
        assert p in prims, f"{case.id}: the program does not use {p} ({prims})"
    assert inv.n_theta == case.n_theta  # dim X − dim Y
    got = sorted((s.kind, tuple(s.shape), s.support) for s in inv.theta_spec.values())
    assert got == sorted(case.theta, key=lambda t: t[0]), got
    points = _random_points(case) + list(case.points)
    report = check_inverse(case.f, *example, inv=inv, points=points, rtol=RTOL, log_det_atol=LD_ATOL)
    assert report.n_in_domain == len(points)
    # closed forms
    x = points[-1]
    theta = inv.pgf(*x)
    if case.log_det is not None:
        ld = float(inv.log_abs_det_jacobian(case.f(*x), theta))
        assert ld == pytest.approx(case.log_det(*x), rel=1e-12, abs=1e-12)
    if case.pgf is not None:
        (t,) = theta.values()
        np.testing.assert_allclose(t, case.pgf(*x), rtol=1e-13)


# --- outside the domain ------------------------------------------------------------------------------
def _assert_minus_inf_with_finite_grads(inv, y, theta):
    assert float(inv.log_abs_det_jacobian(y, theta)) == -np.inf
    assert not bool(inv.in_domain(y, theta))
    gy, gt = jax.grad(lambda y, t: inv.log_abs_det_jacobian(y, t), argnums=(0, 1))(
        y, {n: t for n, t in theta.items() if jnp.issubdtype(t.dtype, jnp.floating)}
    )
    assert np.all(np.isfinite(gy)) and all(np.all(np.isfinite(g)) for g in gt.values())
    with pytest.raises(ppinv.DomainError):
        inv(y, theta)


def test_cumprod_with_a_zero_prefix_is_outside_the_domain():
    inv = ppinv.inverse(jnp.cumprod, np.ones(4))
    for z in (np.array([2.0, 0.0, 0.0, 0.0]), np.array([0.0, 0.0, 0.0, 0.0]), np.array([1.0, 2.0, 0.0, 0.0])):
        _assert_minus_inf_with_finite_grads(inv, jnp.asarray(z), {})
    # a zero in the last place is fine: x_n = 0
    z = np.array([1.0, 2.0, -3.0, 0.0])
    assert np.isfinite(float(inv.log_abs_det_jacobian(z, {})))
    np.testing.assert_allclose(jnp.cumprod(inv(z, {})[0]), z)


def test_positive_sum_outside_the_domain():
    x = np.array([0.5, 2.0, 1.0])
    inv = ppinv.inverse(jnp.sum, x, support=POS)
    theta = inv.pgf(x)
    for y in (0.0, -1.0):
        _assert_minus_inf_with_finite_grads(inv, jnp.asarray(y), theta)
    # a θ off the positive orthant puts a summand outside its support
    (name,) = theta
    _assert_minus_inf_with_finite_grads(inv, jnp.asarray(3.5), {name: jnp.array([1.5, -0.25, -0.25])})


def test_product_outside_the_domain():
    x = np.array([0.5, 2.0, 1.0])
    inv = ppinv.inverse(jnp.prod, x)
    (name,) = inv.theta_spec
    _assert_minus_inf_with_finite_grads(inv, jnp.asarray(1.0), {name: jnp.array([0.0, 2.0])})
    pos = ppinv.inverse(jnp.prod, x, support=POS)
    (name,) = pos.theta_spec
    _assert_minus_inf_with_finite_grads(pos, jnp.asarray(-1.0), {name: jnp.array([0.5, 2.0])})


# --- what the rules must refuse -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "f,x",
    [
        (lambda x: np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]]) @ x, np.ones(3)),  # rank 1 < 2 observed rows
        (lambda x: A23.T @ x, np.ones(2)),  # 3 observations of 2 unknowns
        (lambda x: jnp.broadcast_to(x, (3,)), np.ones(())),  # a real broadcast copies x
        (lambda x: jnp.concatenate([x, x]), np.ones(2)),  # the same piece twice
    ],
    ids=["rank-deficient", "tall", "broadcast", "concat-same"],
)
def test_overdetermined_programs_are_refused(f, x):
    with pytest.raises(ppinv.InversionError):
        ppinv.inverse(f, x)


# --- jit, vmap, grad -----------------------------------------------------------------------------------
def _linear_sum_prod(a, b, c):
    """A linear map with a null space, a positive sum (simplex θ) and a product, side by side."""
    return A23 @ a, jnp.sum(b), jnp.prod(c)


def test_jit_vmap_grad():
    f = _linear_sum_prod
    x = (np.array([0.3, -1.2, 2.0]), np.array([0.3, 1.2, 2.0]), np.array([0.3, -1.2, 2.0]))
    inv = ppinv.inverse(f, *x, support=(None, POS, None))
    kinds = {s.kind: n for n, s in inv.theta_spec.items()}
    assert sorted(kinds) == ["null_space", "simplex", "value"]
    y, theta = f(*x), inv.pgf(*x)
    x_eager = inv(y, theta)
    for got, want in zip(x_eager, x):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    ld = inv.log_abs_det_jacobian(y, theta)
    # jit
    for got, want in zip(jax.jit(inv)(y, theta), x_eager):
        np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_allclose(jax.jit(inv.log_abs_det_jacobian)(y, theta), ld, rtol=1e-15)
    tj = jax.jit(inv.pgf)(*x)
    for n in theta:
        np.testing.assert_allclose(tj[n], theta[n], rtol=1e-15)
    # vmap over batches of x (PGF) and (y, θ)
    xs = tuple(np.stack([v, 2 * v, v + 0.1]) for v in x)
    ys = jax.vmap(f)(*xs)
    thetas = jax.vmap(inv.pgf)(*xs)
    xb = jax.vmap(inv)(ys, thetas)
    for got, want in zip(xb, xs):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    lds = jax.vmap(inv.log_abs_det_jacobian)(ys, thetas)
    for i in range(3):
        xi = tuple(v[i] for v in xs)
        ti = inv.pgf(*xi)
        for n in ti:
            np.testing.assert_allclose(thetas[n][i], ti[n], rtol=1e-14)
        assert float(lds[i]) == pytest.approx(float(inv.log_abs_det_jacobian(f(*xi), ti)), rel=1e-13)
    # grad of log|det| = const − log|θ₁θ₂| + 2 log(Σb), with respect to y and θ
    gy, gt = jax.grad(lambda y, t: inv.log_abs_det_jacobian(y, t), argnums=(0, 1))(y, theta)
    np.testing.assert_allclose(gy[0], 0.0, atol=1e-15)
    assert float(gy[1]) == pytest.approx(2 / float(y[1]), rel=1e-13)
    np.testing.assert_allclose(gy[2], 0.0, atol=1e-15)
    np.testing.assert_allclose(gt[kinds["null_space"]], 0.0, atol=1e-15)
    np.testing.assert_allclose(gt[kinds["value"]], -1 / x[2][:-1], rtol=1e-13)
    # the solved x under reverse and forward mode, and the PGF under reverse mode
    jac = jax.jacrev(lambda y: inv(y, theta))(y)
    assert all(np.all(np.isfinite(j)) for j in jax.tree_util.tree_leaves(jac))
    jac_f = jax.jit(jax.jacfwd(lambda y: inv(y, theta)))(y)
    for a, b in zip(jax.tree_util.tree_leaves(jac), jax.tree_util.tree_leaves(jac_f)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    n = kinds["null_space"]
    jt = np.asarray(jax.jacrev(lambda a: inv.pgf(a, *x[1:])[n])(x[0])).reshape(-1, 3)
    # θ = Nᵀx and x moves along N: N orthonormal, annihilated by A
    jx = np.asarray(jax.jacfwd(lambda t: inv(y, {**theta, n: t})[0])(theta[n])).reshape(3, -1)
    np.testing.assert_allclose(jt, jx.T, atol=1e-12)
    np.testing.assert_allclose(jx.T @ jx, np.eye(1), atol=1e-12)
    np.testing.assert_allclose(A23 @ jx, 0.0, atol=1e-12)
    simplex = kinds["simplex"]
    jb = np.asarray(jax.jacrev(lambda b: inv.pgf(x[0], b, x[2])[simplex])(x[1]))  # θ = b / Σb
    sb = x[1].sum()
    np.testing.assert_allclose(jb, np.eye(3) / sb - x[1][:, None] / sb**2, rtol=1e-12)
