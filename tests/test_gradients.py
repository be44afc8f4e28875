"""Derivatives are part of exactness (DESIGN §7).

Every primitive in the default rule table has a representative program here,
and so does every joint solve (linear block, bilinear, polynomial, polar,
monotone, piecewise, simplex sum, scan, cond). :func:`ppinv.testing.check_inverse`
checks each: soundness, the PGF round trip, log|det| against the dense
Jacobian, and ``jax.jacfwd``/``jax.jacrev`` of ``x`` and ``jax.grad``/``jacfwd``
of ``log|det|`` over ``(y, θ)`` against central differences, at the PGF's θ
and at a perturbed θ. :func:`ppinv.testing.check_conditioned` checks the
potential energy's gradient of conditioned models (what NUTS and SVI follow).

A rule added to the table without a representative here fails
``test_every_rule_has_a_representative``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import lax
from jax.scipy.special import erf, erfinv, ndtr
from numpyro.distributions import constraints

import ppinv
from ppinv.rules import DEFAULT_RULES
from ppinv.testing import check_conditioned, check_gradient, check_inverse

REAL, POS = constraints.real, constraints.positive
UNIT_OPEN = constraints.interval(-1.0, 1.0)
_rng = np.random.default_rng(7)
A46 = _rng.normal(size=(4, 6))
A23 = _rng.normal(size=(2, 3))
C3_NP = np.array([3.0, -0.5, 2.0])  # known operands of every kind: numpy, jnp, Python scalar
C3_JNP = jnp.array([1.0, 2.0, 3.0])
PERM = jnp.array([2, 0, 3, 1])


@dataclass(frozen=True)
class Prog:
    id: str
    f: Callable
    args: tuple
    support: Any = None
    n: int = 3  # random points
    rtol: float = 1e-8
    ld_atol: float = 1e-7

    def __str__(self):
        return self.id


def _v(n=3):
    return jnp.ones(n)


def polar(r, t):
    return r * jnp.cos(t), r * jnp.sin(t)


def random_walk(x0, u):
    def body(c, ut):
        n = 0.9 * c + ut
        return n, n

    return lax.scan(body, x0, u)[1]


def scan_weak_carry(u):
    """A carry initialised with a Python float (weak-typed)."""

    def body(c, ut):
        n = 0.5 * c + jnp.sinh(ut)
        return n, n

    return lax.scan(body, 0.0, u)[1]


def fan_out(x, y):
    """DESIGN §3: a is used three times; reverse-order inversion would determine it twice."""
    a = x + y
    d = a * a + (a + a)
    return y * a + d


@jax.custom_vjp
def _affine_vjp(x):
    return 3.0 * x + 1.0


_affine_vjp.defvjp(lambda x: (_affine_vjp(x), None), lambda _, g: (3.0 * g,))


PROGRAMS = [
    # exponentials, logarithms, roots, powers
    Prog("exp", jnp.exp, (_v(),)),
    Prog("exp2", jnp.exp2, (_v(),)),
    Prog("expm1", jnp.expm1, (_v(),)),
    Prog("log", jnp.log, (_v(),), POS),
    Prog("log1p", jnp.log1p, (_v(),), constraints.greater_than(-1.0)),
    Prog("sqrt", jnp.sqrt, (_v(),), POS),
    Prog("rsqrt", lax.rsqrt, (_v(),), POS),
    Prog("cbrt", jnp.cbrt, (_v(),)),
    Prog("integer_pow[3]", lambda x: x**3, (_v(),)),
    Prog("integer_pow[2]", lambda x: x**2, (_v(),)),
    Prog("integer_pow[-1]", lambda x: x**-1, (_v(),)),
    Prog("square", jnp.square, (_v(),)),
    Prog("pow[0.7]", lambda x: x**0.7, (_v(),), POS),
    Prog("pow[known base]", lambda x: 2.0**x, (_v(),)),
    Prog("pow[3.0]", lambda x: x**3.0, (_v(),)),
    # trigonometric and hyperbolic
    Prog("sin", jnp.sin, (_v(),)),
    Prog("cos", jnp.cos, (_v(),)),
    Prog("tan", jnp.tan, (_v(),)),
    Prog("asin", jnp.arcsin, (_v(),), UNIT_OPEN),
    Prog("acos", jnp.arccos, (_v(),), UNIT_OPEN),
    Prog("atan", jnp.arctan, (_v(),)),
    Prog("sinh", jnp.sinh, (_v(),)),
    Prog("cosh", jnp.cosh, (_v(),)),
    Prog("tanh", jnp.tanh, (_v(),)),
    Prog("asinh", jnp.arcsinh, (_v(),)),
    Prog("acosh", jnp.arccosh, (_v(),), constraints.greater_than(1.0)),
    Prog("atanh", jnp.arctanh, (_v(),), UNIT_OPEN),
    Prog("logistic", jax.nn.sigmoid, (_v(),)),
    Prog("erf", erf, (_v(),)),
    Prog("erf_inv", erfinv, (_v(),), UNIT_OPEN),
    Prog("atan2[known x]", lambda a: jnp.arctan2(a, 2.0), (_v(),)),
    Prog("atan2[both unknown]", lambda a, b: jnp.arctan2(a, b), (1.0, 1.0)),
    # sign-like, identities, conversions
    Prog("abs", jnp.abs, (_v(),)),
    Prog("neg", jnp.negative, (_v(),)),
    Prog("copy", jnp.copy, (_v(),)),
    Prog("convert_element_type[f32->f64]", lambda x: x.astype(jnp.float64) * 2.0, (jnp.ones(3, jnp.float32),),
         rtol=1e-6, ld_atol=1e-5),
    Prog("reduce_precision", lambda x: lax.reduce_precision(x, 11, 52) * 2.0, (_v(),)),
    Prog("optimization_barrier", lambda x: lax.optimization_barrier(x * 2.0) + 1.0, (_v(),)),
    # arithmetic: both operands unknown, and known operands of every kind
    Prog("add[a+b]", lambda a, b: a + b, (_v(), _v())),
    Prog("add[known jnp]", lambda a: a + C3_JNP, (_v(),)),
    Prog("sub[a-b]", lambda a, b: a - b, (1.0, 1.0)),
    Prog("sub[known numpy]", lambda a: C3_NP - a, (_v(),)),
    Prog("mul[a*b]", lambda a, b: a * b, (1.0, 1.0)),
    Prog("mul[known numpy]", lambda a: a * C3_NP, (_v(),)),
    Prog("mul[known jnp]", lambda w: jnp.sum(w * C3_JNP), (_v(),)),
    Prog("mul[known scalar]", lambda a: -0.5 * a, (_v(),)),
    Prog("div[a/b]", lambda a, b: a / b, (1.0, 1.0)),
    Prog("div[known jnp]", lambda a: C3_JNP / a, (_v(),)),
    Prog("div[by known numpy]", lambda a: a / C3_NP, (_v(),)),
    Prog("max[known]", lambda x: jnp.maximum(x, 0.5), (_v(),), constraints.greater_than(0.5)),
    Prog("min[known]", lambda x: jnp.minimum(-1.0, x), (_v(),), constraints.less_than(-1.0)),
    Prog("max[two unknowns]", lambda a, b: jnp.maximum(a, b), (1.0, 1.0)),
    Prog("logaddexp", lambda a: jnp.logaddexp(a, 1.0), (_v(),)),
    Prog("softplus", jax.nn.softplus, (_v(),)),
    # structural
    Prog("broadcast_in_dim", lambda x: x[None] * 2.0, (_v(),)),
    Prog("reshape", lambda x: x.reshape(2, 3), (_v(6),)),
    Prog("squeeze", lambda x: jnp.squeeze(x, 0), (jnp.ones((1, 3)),)),
    Prog("transpose", lambda x: x.T, (jnp.ones((2, 3)),)),
    Prog("rev", lambda x: x[::-1], (_v(),)),
    Prog("concatenate", lambda a, b: jnp.concatenate([a, b]), (_v(2), _v(3))),
    Prog("stack", lambda a, b: jnp.stack([a, b]), (1.0, 1.0)),
    Prog("split", lambda x: jnp.split(x, 2), (_v(4),)),
    Prog("unstack", lambda x: jnp.unstack(x), (jnp.ones((2, 2)),)),
    Prog("cumsum", jnp.cumsum, (_v(4),)),
    Prog("cumprod[positive]", jnp.cumprod, (_v(4),), POS),
    Prog("cumprod[signed]", jnp.cumprod, (_v(4),)),
    Prog("reduce_sum", jnp.sum, (_v(4),)),
    Prog("reduce_sum[positive: simplex]", jnp.sum, (_v(4),), POS),
    Prog("reduce_prod", jnp.prod, (_v(3),)),
    Prog("reduce_max", jnp.max, (_v(3),)),
    Prog("reduce_min", lambda x: jnp.min(x, axis=1), (jnp.ones((2, 3)),)),
    # placements with known indices
    Prog("gather[take]", lambda x: jnp.take(x, PERM) * 2.0, (_v(4),)),
    Prog("dynamic_slice", lambda x: jnp.concatenate([lax.dynamic_slice(x, (2,), (2,)), lax.dynamic_slice(x, (0,), (2,))]),
         (_v(4),)),
    Prog("dynamic_update_slice", lambda a, b: lax.dynamic_update_slice(jnp.concatenate([a, jnp.zeros(2)]), b, (2,)),
         (_v(2), _v(2))),
    Prog("scatter[.at[].set]", lambda a, b: jnp.zeros(4).at[jnp.array([0, 2])].set(a).at[jnp.array([1, 3])].set(b),
         (_v(2), _v(2))),
    Prog("scatter-add[.at[].add: group totals]", lambda x: jnp.zeros(2).at[jnp.array([0, 0, 1])].add(x), (_v(3),)),
    Prog("scatter-mul[.at[].multiply]", lambda x: jnp.ones(2).at[jnp.array([0, 0, 1])].multiply(x), (_v(3),), POS),
    # linear maps: known matrix (wide, square, tall against a vector), matrix of other unknowns
    Prog("dot_general[A(4x6)@x]", lambda x: A46 @ x, (_v(6),)),
    Prog("dot_general[x@A(6x4)]", lambda x: x @ A46.T, (_v(6),)),
    Prog("dot_general[A(2x3)@X(3x2)]", lambda x: A23 @ x, (jnp.ones((3, 2)),)),
    Prog("dot_general[x(3)@A(3x2): more rows than columns]", lambda x: x @ A23.T, (_v(3),)),
    Prog("dot_general[w@x both unknown]", lambda w, x: w @ x, (_v(), _v())),
    Prog("dot_general[x@x]", lambda x: x @ x, (_v(),)),
    Prog("linear_solve, triangular_solve[known matrix]", lambda b: jnp.linalg.solve(
        A46[:, :4], lax.linalg.triangular_solve(A46[:, 2:] + 4 * np.eye(4), b, left_side=True, lower=True)),
        (jnp.ones((4, 2)),)),
    # piecewise, cond, scan
    Prog("select_n[leaky]", lambda x: jnp.where(x > 0, x, 0.1 * x), (_v(),)),
    Prog("select_n[elu]", jax.nn.elu, (_v(),)),
    Prog("select_n[ndtr]", ndtr, (_v(),)),
    Prog("cond[index from unknown]", lambda x: lax.cond(x > 0, lambda v: 2 * v, lambda v: jnp.exp(v) - 1, x), (1.0,),
         n=6),
    Prog("cond[operand also closed over]",
         lambda a: lax.cond(a > 0.5, lambda v: v * a, lambda v: v + jnp.exp(a), a), (1.0,), n=6),
    Prog("scan[random walk]", random_walk, (1.0, _v(4))),
    Prog("scan[weak-typed carry]", scan_weak_carry, (_v(4),)),
    # joint solves
    Prog("block[sum and difference]", lambda a, b: (a + b, a - b), (1.0, 1.0)),
    Prog("block[bilinear]", lambda x: x[0] + x[1] * x[2], (_v(),)),
    Prog("poly[x^2 + x]", lambda x: x * x + x, (1.0,)),
    Prog("polar[r > 0]", polar, (1.0, 1.0), (POS, None)),
    Prog("polar[r signed]", polar, (1.0, 1.0)),
    Prog("monotone[x + sin x]", lambda x: x + jnp.sin(x), (1.0,)),
    Prog("monotone[kepler, e latent]", lambda E, e: E - e * jnp.sin(E), (1.0, 0.5), (None, constraints.interval(0.0, 1.0))),
    Prog("monotone[x + exp x, x < 0]", lambda x: x + jnp.exp(x), (1.0,), constraints.less_than(0.0)),
    Prog("monotone[x + exp x, x in (-3, -1)]", lambda x: x + jnp.exp(x), (1.0,), constraints.interval(-3.0, -1.0)),
    Prog("monotone[x^3 + x, x > 1]", lambda x: x**3 + x, (1.0,), constraints.greater_than(1.0)),
    Prog("fan-out[DESIGN §3]", fan_out, (1.0, 1.0)),
    Prog("custom_vjp[solved through its body]", lambda x: jnp.exp(_affine_vjp(x)), (0.3,)),
    Prog("flat piece solved[logaddexp(relu b, a)]", lambda a, b: jnp.logaddexp(jax.nn.relu(b), a), (1.0, 1.0)),
    Prog("elu of cumsum", lambda b: 1000.0 - jax.nn.elu(jnp.cumsum(b)), (_v(2),)),
    Prog("sinh on unit interval", lambda x, b, c: (jnp.sinh(x) * b, jnp.sinh(x) + c), (0.5, 1.0, 1.0),
         (constraints.unit_interval, None, None)),
]


def _sub_jaxprs(params):
    for p in params.values():
        for j in p if isinstance(p, (tuple, list)) else (p,):
            inner = getattr(j, "jaxpr", j)  # ClosedJaxpr -> Jaxpr
            if hasattr(inner, "eqns"):
                yield inner


def _primitives(jaxpr, out=None):
    """Every primitive in a jaxpr, sub-jaxprs (cond branches, scan bodies, calls) included."""
    out = set() if out is None else out
    for eqn in jaxpr.eqns:
        out.add(eqn.primitive)
        for sub in _sub_jaxprs(eqn.params):
            _primitives(sub, out)
    return out


def _used(prog):
    return _primitives(jax.make_jaxpr(prog.f)(*prog.args).jaxpr)


# A while_loop's trip count is decided at run time: its rule only refuses, with a reason.
REFUSED = {lax.while_p: lambda x: lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 1.5, c[1] + 1), (x, 0))[0]}


def test_every_rule_has_a_representative():
    covered = set().union(*(_used(p) for p in PROGRAMS)) | set(REFUSED)
    missing = [str(p) for p in DEFAULT_RULES._rules if p not in covered]
    assert not missing, f"rules without a gradient-checked program in tests/test_gradients.py: {missing}"


def test_while_is_refused_with_a_reason():
    for f in REFUSED.values():
        with pytest.raises(ppinv.InversionError, match="while"):
            ppinv.inverse(f, 1.0)


@pytest.mark.parametrize("prog", PROGRAMS, ids=str)
def test_values_and_gradients(prog):
    report = check_inverse(prog.f, *prog.args, support=prog.support, n_points=prog.n, rtol=prog.rtol,
                           log_det_atol=prog.ld_atol, raise_on_failure=False)
    assert report.ok, "\n".join(report.failures[:8])
    assert report.n_in_domain >= max(1, prog.n // 2), report
    assert report.n_grad_checked > 0, report


# -- the finite-difference machinery itself -----------------------------------------------------


def _batch(fn):
    return jax.jit(jax.vmap(fn))


def test_check_gradient_catches_a_wrong_derivative():
    """A derivative off by 1% is caught; the right one passes; a kink is skipped, not failed."""

    def fn(z):
        return jnp.stack([jnp.sin(z[0]) * z[1], jnp.exp(z[1])])

    z0 = jnp.array([0.3, -0.7])
    jac = jax.jacfwd(fn)(z0)
    ok = check_gradient(_batch(fn), z0, fn(z0), {"ad": jac})
    assert not ok.mismatches and ok.checked == 4 and ok.max_error < 1e-8
    wrong = check_gradient(_batch(fn), z0, fn(z0), {"ad": jac.at[0, 1].multiply(1.01)})
    assert [(i, j) for _, i, j, _, _ in wrong.mismatches] == [(0, 1)]

    kinked = lambda z: jnp.where(z > 0, z, 0.0) + z**2  # noqa: E731 - relu: AD says 0 at 0, FD 0.5
    at_kink = check_gradient(_batch(kinked), jnp.array([0.0, 1.0]), kinked(jnp.array([0.0, 1.0])),
                             {"ad": jax.jacfwd(kinked)(jnp.array([0.0, 1.0]))})
    assert not at_kink.mismatches and (at_kink.skipped, at_kink.checked) == (1, 3)  # only the kinked entry


def test_check_gradient_skips_steps_leaving_the_domain():
    fn = lambda z: jnp.sqrt(z)  # noqa: E731
    z0 = jnp.array([1e-12, 4.0])
    res = check_gradient(_batch(fn), z0, fn(z0), {"ad": jax.jacfwd(fn)(z0)})
    assert not res.mismatches and (res.skipped, res.checked) == (1, 3)  # √ of a negative: only that entry


def _log_with_wrong_derivative(pattern):
    """exp's inverse rule with a derivative off by 1%: values exact, jax.grad wrong."""

    @jax.custom_jvp
    def log(z):
        return jnp.log(z)

    log.defjvp(lambda primals, tangents: (jnp.log(primals[0]), 1.01 * tangents[0] / primals[0]))
    return ppinv.rules.UnaryRule(log, lambda z, x: -jnp.log(z), domain=lambda z: z > 0)(pattern)


def test_check_inverse_catches_a_rule_with_a_wrong_derivative():
    f = lambda a, b: jnp.exp(a) + b  # noqa: E731
    with ppinv.overlay({lax.exp_p: _log_with_wrong_derivative}):
        inv = ppinv.inverse(f, 1.0, 1.0, free="b")  # a = log(y − b): the wrong rule
        report = check_inverse(f, 1.0, 1.0, inv=inv, n_points=2, raise_on_failure=False)
    assert report.n_in_domain == 2 and report.max_roundtrip_error < 1e-12  # the values are exact
    assert any("jax.jacfwd of x[0] w.r.t. y[0]" in f for f in report.failures), report.failures
    assert any("jax.jacrev of x[0] w.r.t. θ[0]" in f for f in report.failures), report.failures


def exp_plus_noise():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 0.5))
    numpyro.deterministic("y", jnp.exp(a) + b)


def test_check_conditioned_catches_a_wrong_potential_gradient():
    with ppinv.overlay({lax.exp_p: _log_with_wrong_derivative}):
        cm = ppinv.condition(exp_plus_noise, {"y": 2.0}, free=["b"])  # a = log(y − b): the wrong rule
        report = check_conditioned(cm, n_points=1, raise_on_failure=False)
    assert report.n_points == 1
    assert any("jax.grad of the potential w.r.t. b" in f for f in report.failures), report.failures


def test_strong_curvature_is_not_a_false_alarm():
    """1/θ near 0.01: the central difference at h has truncation error ~6e-6; h/10 resolves it."""
    fn = lambda z: 1.0 / z  # noqa: E731
    z0 = jnp.array([0.003, -0.02, 5.0])
    res = check_gradient(_batch(fn), z0, fn(z0), {"ad": jax.jacfwd(fn)(z0)})
    assert not res.mismatches and res.checked == 9


# -- conditioned models: the potential energy's gradient ------------------------------------------


def lognormal_product():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("y", a * b)


def design_example():
    a = numpyro.sample("a", dist.Normal(0, 1))
    b = numpyro.sample("b", dist.LogNormal(0, 1))
    numpyro.deterministic("y", a * b + jnp.sin(a))


def affine_subspace():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    numpyro.deterministic("y", jnp.asarray(A23) @ x)


def gamma_sum():
    x = numpyro.sample("x", dist.Gamma(jnp.array([0.5, 1.0, 2.0]), 1.0).to_event(1))
    numpyro.deterministic("total", jnp.sum(x))


def additive_noise():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(1.0, 0.5))
    c = numpyro.sample("c", dist.Normal(0.0, 0.3))
    u = numpyro.sample("u", dist.Normal(0.0, 1.0))  # untouched by the observation
    numpyro.deterministic("y", a * b + c + 0.1 * u**2)


def square_sign():
    a = numpyro.sample("a", dist.Normal(0.5, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a * a + b)


def kepler():
    e = numpyro.sample("e", dist.Beta(2.0, 5.0))
    E = numpyro.sample("E", dist.Uniform(0.0, 2 * math.pi))
    numpyro.deterministic("M", E - e * jnp.sin(E))


def weights_times_unknowns():
    w = numpyro.sample("w", dist.Normal(jnp.array([1.0, 2.0, 3.0]), 0.5).to_event(1))
    x = numpyro.sample("x", dist.Normal(jnp.zeros(3), 1.0).to_event(1))
    numpyro.deterministic("y", w @ x)


def regression(xs):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    numpyro.deterministic("y", jnp.sum(w * xs))


def mixing():
    """Three sources, two tracers: fractions on the simplex, sampled source signatures."""
    f = numpyro.sample("f", dist.Dirichlet(jnp.ones(3)))
    s = numpyro.sample("s", dist.Normal(jnp.array([[-1.0, 0.5, 2.0], [1.0, -2.0, 0.0]]), 0.3).to_event(2))
    numpyro.deterministic("tracers", s @ f)


def relu_sum():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a + jax.nn.relu(c))


MODELS = [
    ("lognormal product", lognormal_product, {"y": 2.0}, ()),
    ("a*b + sin a", design_example, {"y": 1.5}, ()),
    ("affine subspace", affine_subspace, {"y": jnp.array([1.0, -0.5])}, ()),
    ("gamma sum (simplex θ)", gamma_sum, {"total": 3.0}, ()),
    ("additive noise, untouched latent", additive_noise, {"y": 1.2}, ()),
    ("a^2 + b (sign θ)", square_sign, {"y": 1.0}, ()),
    ("kepler (monotone solve)", kepler, {"M": 1.3}, ()),
    ("w @ x, both latent", weights_times_unknowns, {"y": 1.0}, ()),
    ("regression on jnp covariates", regression, {"y": 0.7}, (jnp.array([1.0, 2.0, 3.0]),)),
    ("mixing model", mixing, {"tracers": jnp.array([0.3, -0.4])}, ()),
    ("a + relu(c)", relu_sum, {"y": 0.5}, ()),
]


@pytest.mark.parametrize("name,model,data,args", MODELS, ids=[m[0] for m in MODELS])
def test_potential_energy_gradient(name, model, data, args):
    report = check_conditioned(model, data, args=args, n_points=2, raise_on_failure=False)
    assert report.ok, "\n".join(report.failures[:8])
    assert report.n_grad_checked > 0
