"""Check parametric inverses the way ppinv's own test suite does.

:func:`check_inverse` verifies, at random points, the properties every
inverse must have:

* soundness — ``f(*inv(y, θ)) == y`` at the PGF's θ and at θ perturbed away
  from it (inside the domain);
* completeness through the PGF — ``inv(f(*x), pgf(*x)) == x``;
* the density term — ``inv.log_abs_det_jacobian(y, θ)`` equals ``slogdet`` of
  the dense Jacobian of ``(y, θ_continuous) ↦ x`` computed by ``jax.jacfwd``;
* derivatives — ``jax.jacfwd`` and ``jax.jacrev`` of ``(y, θ) ↦ x`` and
  ``jax.grad``/``jax.jacfwd`` of ``log|det|`` agree with central finite
  differences (samplers and optimizers follow these, so a value that is exact
  with a derivative that is not is still a wrong answer);
* batching — under ``jax.vmap`` the inverse gives what it gives one point at a time.

:func:`check_conditioned` checks the gradient of a conditioned model's
potential energy (what NUTS and SVI differentiate) against finite differences.

Use them on your own rules (registered with :func:`ppinv.register_rule` or
declared with :func:`ppinv.custom_inverse`) and models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import tree_flatten, tree_map, tree_unflatten
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import potential_energy

from .inverse import Inverse, _arg_names_of, _normalize_support, inverse

__all__ = [
    "dense_log_abs_det",
    "check_inverse",
    "InverseReport",
    "check_conditioned",
    "ConditionedReport",
    "check_gradient",
    "GradientCheck",
    "sample_inputs",
]


# -- the inverse as a function of one flat vector ----------------------------------------------


class _FlatInverse:
    """``z = (y, θ_continuous) ↦ (x, log|det|)`` as flat vectors, discrete θ held fixed.

    Continuous θ is taken in intrinsic coordinates (a simplex leaf drops its last
    entry), so the Jacobian over ``z`` is square for a full-rank program. The
    derivative and batch functions are compiled once per inverse and reused at
    every point.
    """

    def __init__(self, inv: Inverse, y):
        self.inv = inv
        y_flat, self._y_unravel = ravel_pytree(y)
        self.ny = y_flat.size
        self.dtype = y_flat.dtype
        spec = inv.theta_spec
        self.continuous = [(n, s) for n, s in spec.items() if not s.discrete]
        # the least precise of y, x and θ bounds what finite differences can resolve
        dtypes = [self.dtype] + [a.dtype for a in inv._avals] + [s.dtype for _, s in self.continuous]
        self.precision = min(dtypes, key=lambda d: jnp.finfo(d).bits)
        # one program per inverse: the value, both Jacobians and the finite-difference rows
        # (compiling each separately costs XLA's fixed per-program overhead several times)
        self.probe = jax.jit(self._probe)
        self._jit_x_jacobian = jax.jit(self.x_jacobian)

    def flatten(self, y, theta):
        """``(z, discrete θ)`` for a point ``(y, θ)``."""
        # on the host: each eager jnp op on a new shape would be one more compiled program
        pieces = [np.ravel(np.asarray(leaf, self.dtype)) for leaf in tree_flatten(y)[0]]
        for n, s in self.continuous:
            val = np.asarray(theta[n])
            val = val[..., :-1] if _is_simplex(s.support) else val
            pieces.append(np.ravel(val).astype(self.dtype))
        disc = {n: jnp.asarray(v) for n, v in theta.items() if self.inv.theta_spec[n].discrete}
        return jnp.asarray(np.concatenate(pieces)), disc

    def unflatten(self, z, disc):
        """``(y, θ)`` from ``(z, discrete θ)``."""
        y = self._y_unravel(z[: self.ny])
        theta, i = dict(disc), self.ny
        for n, s in self.continuous:
            shape = tuple(s.shape)
            if _is_simplex(s.support):
                head_shape = shape[:-1] + (shape[-1] - 1,)
                size = int(np.prod(head_shape, dtype=np.int64))
                head = z[i : i + size].reshape(head_shape)
                val = jnp.concatenate([head, 1 - jnp.sum(head, -1, keepdims=True)], -1)
            else:
                size = int(np.prod(shape, dtype=np.int64))
                val = z[i : i + size].reshape(shape)
            theta[n] = val.astype(s.dtype)
            i += size
        return y, theta

    def _x_and_ld(self, z, disc):
        """``x`` (flat) with ``log|det|`` appended as the last entry."""
        x, ld = self.inv.with_log_det(*self.unflatten(z, disc))
        x_flat = ravel_pytree(x)[0].astype(z.dtype)
        return jnp.concatenate([x_flat, jnp.reshape(ld, (1,)).astype(z.dtype)])

    def _probe(self, z, disc, rows):
        """``(x_and_ld(z), jacfwd, jacrev, x_and_ld of every row under vmap)``."""
        fn = lambda v: self._x_and_ld(v, disc)  # noqa: E731
        return fn(z), jax.jacfwd(fn)(z), jax.jacrev(fn)(z), jax.vmap(fn)(rows)

    def x_jacobian(self, z, disc):
        """``∂x/∂z`` by ``jax.jacfwd`` (the dense Jacobian of the density term)."""
        return jax.jacfwd(lambda v: self._x_and_ld(v, disc)[:-1])(z)


def _is_simplex(support):
    return support is constraints.simplex


def _slogdet(jac):
    if jac.shape[0] != jac.shape[1]:
        raise AssertionError(f"Jacobian is {jac.shape}, not square: θ dims do not equal dim X − dim Y.")
    sign, logdet = np.linalg.slogdet(np.asarray(jac, np.float64))  # LAPACK: independent of XLA's
    return -np.inf if sign == 0 else float(logdet)


def dense_log_abs_det(inv: Inverse, y, theta):
    """``log|det ∂x/∂(y, θ_continuous)|`` from the dense Jacobian (``jax.jacfwd``)."""
    flat = _FlatInverse(inv, y)
    z, disc = flat.flatten(y, theta)
    return _slogdet(flat.x_jacobian(z, disc))


# -- gradients against central differences -----------------------------------------------------


@dataclass
class GradientCheck:
    """What :func:`check_gradient` found at one point.

    ``mismatches`` lists ``(derivative, output index, input index, autodiff, finite difference)``
    for every entry where automatic and numerical derivatives disagree;
    ``skipped`` counts entries not checked because the finite differences left
    the domain or straddled a kink.
    """

    checked: int = 0
    skipped: int = 0
    max_error: float = 0.0
    mismatches: list = field(default_factory=list)


def default_step(dtype) -> float:
    """Relative finite-difference step: ``eps^(1/3)`` balances truncation against round-off (1e-5 in float64)."""
    return 1e-5 if jnp.finfo(dtype).bits >= 64 else 5e-3


def default_grad_rtol(dtype) -> float:
    return 1e-5 if jnp.finfo(dtype).bits >= 64 else 2e-2


FD_STEPS = (1.0, 0.1, 0.01, 0.001)  # the step h and smaller ones, as multiples of h


def check_gradient(batch_fn, z0, f0, jacobians, *, step=None, rtol=None, precision=None) -> GradientCheck:
    """Compare automatic derivatives of ``fn: R^n -> R^m`` at ``z0`` with central differences.

    ``batch_fn`` evaluates ``fn`` on a stack of points (rows); ``f0 = fn(z0)``;
    ``jacobians`` maps a name to an ``(m, n)`` automatic Jacobian. The step for
    coordinate ``j`` is ``h_j = step · (1 + |z0_j|)``. An entry passes when it
    agrees with the central difference at step ``h``, ``h/10``, ``h/100`` or
    ``h/1000`` within ``rtol · (1 + |fd|)`` plus the round-off of that
    difference (the smaller steps resolve functions strongly curved on the
    scale of ``h``: ``∛y`` near 0, ``log|cos y|`` near π/2). An entry that
    matches at no step is skipped where a difference is not finite (the step
    left the domain) or where the one-sided differences disagree by an amount
    that does not shrink with the step (the step straddles a kink or a jump,
    where no derivative exists); otherwise it is a mismatch. ``precision`` is
    the dtype whose rounding the function's values carry (default ``z0``'s);
    it sets the default step, tolerance and round-off.
    """
    z0 = jnp.asarray(z0)
    dtype = z0.dtype if precision is None else precision
    step = default_step(dtype) if step is None else step
    rtol = default_grad_rtol(dtype) if rtol is None else rtol
    out = GradientCheck()
    n = z0.size
    if n == 0:
        return out
    rows, h = finite_difference_rows(z0, step)
    vals = np.asarray(batch_fn(jnp.asarray(rows, z0.dtype)), np.float64).reshape(len(FD_STEPS), 2, n, -1)
    f0 = np.asarray(f0, np.float64).reshape(-1)
    eps = float(jnp.finfo(dtype).eps)
    noise = 8 * eps * (1.0 + np.abs(f0))  # round-off of one difference of values
    with np.errstate(all="ignore"):  # differences that left the domain are NaN/inf, and skipped
        _compare_columns(out, vals, f0, jacobians, h, noise, rtol, n)
    return out


def finite_difference_rows(z0, step):
    """The points :func:`check_gradient` evaluates: ``z0 ± h_j e_j · k`` for ``k`` in ``FD_STEPS``; and ``h``."""
    z_np = np.asarray(z0, np.float64)
    h = step * (1.0 + np.abs(z_np))
    eye = np.eye(z_np.size)
    return np.concatenate([z_np + sign * eye * h * k for k in FD_STEPS for sign in (1, -1)]), h


def _compare_columns(out, vals, f0, jacobians, h, noise, rtol, n):
    for j in range(n):
        hs = [h[j] * k for k in FD_STEPS]
        plus, minus = vals[:, 0, j], vals[:, 1, j]
        central = [(p - m) / (2 * hk) for p, m, hk in zip(plus, minus, hs)]
        # |forward − backward| one-sided differences: ~h|f''| where smooth, the jump in f' at a kink
        gaps = [np.abs(p - 2 * f0 + m) / hk for p, m, hk in zip(plus, minus, hs)]
        tols = [rtol * (1 + np.abs(c)) + 10 * noise / hk for c, hk in zip(central, hs)]
        finite = np.all(np.isfinite(vals[:, :, j]), axis=(0, 1)) & np.isfinite(f0)
        kink = np.zeros_like(finite)
        for g1, g2, hk in zip(gaps, gaps[1:], hs):
            kink |= (g1 > 100 * rtol * (1 + np.abs(central[0])) + 10 * noise / hk) & (g2 > 0.5 * g1)
        for name, jac in jacobians.items():
            ad = np.asarray(jac, np.float64).reshape(f0.size, n)[:, j]
            errs = [np.abs(ad - c) for c in central]
            matches = np.any([e <= t for e, t in zip(errs, tols)], axis=0) & np.isfinite(ad)
            rel = np.min([e / (1 + np.abs(c)) for e, c in zip(errs, central)], axis=0)
            skipped = ~matches & (~finite | kink)
            bad = ~matches & ~skipped
            out.max_error = max(out.max_error, float(np.max(np.where(skipped, 0.0, np.nan_to_num(rel, nan=np.inf)),
                                                            initial=0.0)))
            out.checked += int(np.sum(~skipped))
            out.skipped += int(np.sum(skipped))
            for i in np.flatnonzero(bad):
                best = int(np.argmin([e[i] for e in errs]))
                out.mismatches.append((name, int(i), j, float(ad[i]), float(central[best][i])))


# -- random inputs --------------------------------------------------------------------------


def sample_inputs(key, example_args, support=None, scale=1.0):
    """Random inputs shaped like ``example_args``, inside each argument's support."""
    leaves, tree = tree_flatten(tuple(example_args))
    if support is None:
        sups = [None] * len(example_args)
    elif isinstance(support, (list, tuple)):
        sups = list(support)
    else:
        sups = [support]
    leaf_sups = []
    for arg, sup in zip(example_args, sups):
        leaf_sups += [sup] * len(tree_flatten(arg)[0])
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, leaf, sup in zip(keys, leaves, leaf_sups):
        shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
        t = biject_to(sup if sup is not None else constraints.real)
        base_shape = t.inverse_shape(shape) if shape else ()
        out.append(t(scale * jax.random.normal(k, base_shape, dtype)).astype(dtype))
    return tuple(tree_unflatten(tree, out))


# -- check_inverse ----------------------------------------------------------------------------


@dataclass
class InverseReport:
    """What :func:`check_inverse` measured.

    ``max_grad_error`` is the largest relative disagreement between automatic
    derivatives (``jacfwd``/``jacrev`` of ``x``, ``grad``/``jacfwd`` of
    ``log|det|``) and central differences over the entries checked;
    ``n_grad_checked``/``n_grad_skipped`` count the entries checked and those
    skipped at domain edges and kinks.
    """

    n_points: int = 0
    n_in_domain: int = 0
    max_roundtrip_error: float = 0.0
    max_soundness_error: float = 0.0
    max_log_det_error: float = 0.0
    max_grad_error: float = 0.0
    n_grad_checked: int = 0
    n_grad_skipped: int = 0
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _max_err(a, b):
    fa = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in tree_flatten(a)[0]] or [np.zeros(0)])
    fb = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in tree_flatten(b)[0]] or [np.zeros(0)])
    if fa.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(fa - fb) / (1.0 + np.abs(fb))))


def check_inverse(
    f,
    *example_args,
    support=None,
    context=None,
    inv: Inverse | None = None,
    key=None,
    n_points: int = 20,
    points=None,
    rtol: float = 1e-6,
    log_det_atol: float = 1e-6,
    raise_on_failure: bool = True,
    dense_points: int | None = None,
    gradients: bool = True,
    grad_points: int | None = None,
    grad_rtol: float | None = None,
    grad_step: float | None = None,
) -> InverseReport:
    """Verify soundness, PGF round trip, log|det| and derivatives of ``ppinv.inverse(f, ...)``.

    Parameters
    ----------
    f, example_args, support, context:
        As for :func:`ppinv.inverse` (``context``: known keyword arguments of ``f``,
        held at these values).
    inv:
        An inverse already built (otherwise one is built here).
    key:
        PRNG key for the random points (default ``PRNGKey(0)``).
    n_points:
        How many random inputs ``x`` to draw (inside ``support``).
    points:
        Optional list of argument tuples to check instead of random ones.
    rtol, log_det_atol:
        Tolerances (relative for values, absolute for log|det|). Use float64
        (``jax_enable_x64``) for tight tolerances.
    dense_points:
        Check log|det| against the dense Jacobian at only the first this many
        points (default: all); the dense Jacobian is the expensive part.
    gradients:
        Check ``jax.jacfwd``/``jax.jacrev`` of ``x`` and ``jax.grad``/``jax.jacfwd``
        of ``log|det|`` over ``(y, θ_continuous)`` against central differences,
        at the PGF's θ and at the perturbed θ (default ``True``).
    grad_points:
        Check gradients at only the first this many points (default: as
        ``dense_points``).
    grad_rtol, grad_step:
        Relative tolerance and relative step of the finite differences
        (default 1e-5 and 1e-5 in float64; see :func:`check_gradient`).
    raise_on_failure:
        Raise ``AssertionError`` listing the failures (default) or just report.

    Examples
    --------
    >>> import jax
    >>> import ppinv
    >>> from ppinv.testing import check_inverse
    >>> report = check_inverse(lambda a, b: a * b + a, 1.0, 1.0, n_points=3, rtol=1e-4, log_det_atol=1e-3)
    >>> report.ok
    True
    """
    inv = inv or inverse(f, *example_args, support=support, context=context)
    key = jax.random.PRNGKey(0) if key is None else key
    report = InverseReport()
    if points is None:
        keys = jax.random.split(key, n_points)
        if isinstance(support, dict):  # by argument name, as ppinv.inverse takes it
            support = _normalize_support(support, _arg_names_of(f, len(example_args)))
        points = [sample_inputs(k, example_args, support) for k in keys]
    grad_points = dense_points if grad_points is None else grad_points
    tkeys = jax.random.split(jax.random.fold_in(key, 1), len(points))
    flat = None
    # compiled once per check: op by op, every primitive at every new shape is a program of its own
    forward = jax.jit(lambda *x: f(*x, **(context or {})))
    perturb = jax.jit(lambda theta, k, scale: _perturb(inv, theta, k, scale))
    for i, x in enumerate(points):
        report.n_points += 1
        y = forward(*x)
        theta = inv.pgf(*x)
        x_back, ld = inv.with_log_det(y, theta)
        err = _max_err(x_back, x)
        report.max_roundtrip_error = max(report.max_roundtrip_error, err)
        if not err <= rtol:
            report.failures.append(f"point {i}: PGF round trip error {err:.3g} (x={x}, got {x_back})")
            continue
        report.n_in_domain += 1
        serr = _max_err(forward(*x_back), y)
        report.max_soundness_error = max(report.max_soundness_error, serr)
        if not serr <= rtol * 10:
            report.failures.append(f"point {i}: soundness error {serr:.3g} at the PGF's theta={theta}")
        flat = flat or _FlatInverse(inv, y)
        want_grad = gradients and (grad_points is None or i < grad_points)
        want_dense = dense_points is None or i < dense_points
        jac = None
        if want_grad:
            jac = _check_point_gradients(flat, y, theta, f"point {i}", report, grad_rtol, grad_step)
        if want_dense:
            if jac is None:
                z, disc = flat.flatten(y, theta)
                jac = flat._jit_x_jacobian(z, disc)
            if jac.shape[0] != jac.shape[1]:
                report.failures.append(
                    f"point {i}: θ dimension: the Jacobian of x over (y, θ) is {tuple(jac.shape)}, not square "
                    f"({inv.n_theta} continuous θ dims, dim X − dim Y = {jac.shape[0] - flat.ny})"
                )
                continue
            dense = _slogdet(jac)
        else:
            dense = ld
        lerr = abs(float(ld) - float(dense))
        if np.isfinite(float(ld)) or np.isfinite(float(dense)):
            report.max_log_det_error = max(report.max_log_det_error, lerr)
            if not lerr <= log_det_atol * (1 + abs(float(dense))):
                report.failures.append(f"point {i}: log|det| {float(ld):.10g} vs dense {float(dense):.10g}")
        # soundness at θ away from the PGF's: perturb the continuous leaves a little and a lot
        for scale, k in zip((0.1, 1.0), jax.random.split(tkeys[i])):
            theta2 = perturb(theta, k, scale)
            if not bool(inv.in_domain(y, theta2)):
                continue
            x2 = inv(y, theta2)
            serr = _max_err(forward(*x2), y)
            report.max_soundness_error = max(report.max_soundness_error, serr)
            if not serr <= rtol * 10:
                report.failures.append(f"point {i}: soundness error {serr:.3g} at theta={theta2}")
            elif want_grad and scale == 0.1:
                _check_point_gradients(flat, y, theta2, f"point {i} (perturbed θ)", report, grad_rtol, grad_step)
    if raise_on_failure and report.failures:
        raise AssertionError("check_inverse failed:\n  " + "\n  ".join(report.failures[:10]))
    return report


def _check_point_gradients(flat: _FlatInverse, y, theta, where, report, rtol, step):
    """Gradient checks at one point, recorded in ``report``; returns ``∂x/∂z`` (jacfwd)."""
    z, disc = flat.flatten(y, theta)
    step = default_step(flat.precision) if step is None else step
    rows, _ = finite_difference_rows(z, step)
    rows = np.concatenate([rows, np.asarray(z)[None]])  # the point itself rides along under vmap
    try:
        f0, jac_fwd, jac_rev, vals = flat.probe(z, disc, jnp.asarray(rows, z.dtype))
    except Exception as err:  # an inverse jax cannot differentiate is a defect, not a crash of the check
        report.failures.append(f"{where}: differentiating the inverse raised {type(err).__name__}: {err}")
        return None
    f0 = np.asarray(f0)
    if not np.all(np.isfinite(f0)):
        return jac_fwd[:-1]
    names = {"jacfwd": jac_fwd, "jacrev": jac_rev}
    vals = np.asarray(vals)
    res = check_gradient(lambda _rows: vals[:-1], z, f0, names, step=step, rtol=rtol, precision=flat.precision)
    if not np.allclose(vals[-1], f0, rtol=1e-9, atol=1e-12, equal_nan=True):  # vmap must give what one call gives
        report.failures.append(f"{where}: under jax.vmap (x, log|det|) = {vals[-1]}, one point at a time {f0}")
    report.n_grad_checked += res.checked
    report.n_grad_skipped += res.skipped
    report.max_grad_error = max(report.max_grad_error, res.max_error)
    nx = f0.size - 1
    for name, i, j, ad, fd in res.mismatches[:4]:
        what = "log|det|" if i == nx else f"x[{i}]"
        wrt = f"y[{j}]" if j < flat.ny else f"θ[{j - flat.ny}]"
        kind = {"jacfwd": "jax.jacfwd", "jacrev": "jax.grad" if i == nx else "jax.jacrev"}[name]
        report.failures.append(f"{where}: {kind} of {what} w.r.t. {wrt} is {ad:.10g}, finite differences {fd:.10g}")
    return jac_fwd[:-1]


def _perturb(inv, theta, key, scale=0.1):
    out = dict(theta)
    for (n, s), k in zip(inv.theta_spec.items(), jax.random.split(key, max(len(theta), 1))):
        if s.discrete:
            continue
        t = biject_to(s.support)
        u = t.inv(jnp.asarray(theta[n]))
        out[n] = t(u + scale * jax.random.normal(k, jnp.shape(u), u.dtype)).astype(s.dtype)
    return tree_map(jnp.asarray, out)


# -- conditioned models -----------------------------------------------------------------------


@dataclass
class ConditionedReport:
    """What :func:`check_conditioned` measured.

    ``max_soundness_error``: the largest relative distance between an observed
    value and the same site recomputed by the *original* model from the latents
    the conditioned model reports (an independent check: the conditioned model's
    own report of the observation is the data by construction).
    """

    n_points: int = 0
    max_soundness_error: float = 0.0
    max_grad_error: float = 0.0
    n_grad_checked: int = 0
    n_grad_skipped: int = 0
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_conditioned(
    model,
    data=None,
    *,
    args=(),
    kwargs=None,
    key=None,
    n_points: int = 3,
    latents=None,
    perturb: float = 0.3,
    rtol: float = 1e-6,
    grad_rtol: float | None = None,
    grad_step: float | None = None,
    raise_on_failure: bool = True,
    **condition_kwargs,
) -> ConditionedReport:
    """Check a conditioned model: soundness, and ``jax.grad`` of its potential energy.

    The potential is NumPyro's, over the unconstrained continuous sites (θ sites
    and latents no observation touches) with discrete θ held fixed: what NUTS,
    HMC and SVI differentiate; its gradient is compared with central
    differences. At every point the latents the conditioned model reports are
    run through the original model, and the observed sites it computes must
    equal the data (relative ``rtol``). Points are the given ``latents`` and
    prior draws, mapped to θ by the PGF (``n_points`` of them where the
    potential is finite), each also moved by ``perturb`` (a normal step in
    unconstrained space) where the potential stays finite.

    Parameters
    ----------
    model:
        A NumPyro model (conditioned here on ``data`` with
        :func:`ppinv.condition`, which also takes ``condition_kwargs``), or a
        model :func:`ppinv.condition` already returned (then ``data`` is ``None``).
    args, kwargs:
        The model's arguments.
    latents:
        Optional list of dicts ``latent site -> value`` to start from (for
        example the draw the data were simulated from), before prior draws.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model():
    ...     a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    ...     b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    ...     numpyro.deterministic("y", a * b)
    >>> check_conditioned(model, {"y": 1.5}, n_points=1).ok
    True
    """
    from .conditioning import ConditionedModel, condition

    kwargs = dict(kwargs or {})
    args = tuple(args)
    cm = model if isinstance(model, ConditionedModel) else condition(model, data, **condition_kwargs)
    key = jax.random.PRNGKey(0) if key is None else key
    report = ConditionedReport()
    plan = cm.plan(*args, **kwargs)
    n_draws = 8 * n_points
    draws = [_theta_point(plan, lat, args, kwargs) for lat in (latents or [])]
    prior = jax.jit(jax.vmap(lambda k: _theta_point(plan, _prior_latents(cm, plan, k, args, kwargs), args, kwargs)))(
        jax.random.split(key, n_draws)
    )
    draws += [tree_map(lambda v, i=i: v[i], prior) for i in range(n_draws)]
    discrete = [plan.theta_sites[n] for n, s in plan.schedule.theta.items() if s.discrete]
    transforms = _continuous_transforms(cm, plan, draws[0], discrete, args, kwargs)
    names = sorted(transforms)

    z_example = {k: transforms[k].inv(draws[0][k]) for k in names}
    unravel = ravel_pytree(z_example)[1]

    def potential(zf, disc):
        # numpyro's own potential energy, as NUTS and SVI see it (discrete θ observed)
        return jnp.reshape(potential_energy(handlers.condition(cm, data=disc), args, kwargs, unravel(zf)), (1,))

    def soundness(zf, disc):
        values = {k: transforms[k](v) for k, v in unravel(zf).items()}
        return _observation_error(cm, plan, {**values, **disc}, args, kwargs)

    # one program: the potential, its two Jacobians and the finite-difference rows
    probe = jax.jit(lambda zf, disc, rows: (potential(zf, disc), jax.jacfwd(potential)(zf, disc),
                                            jax.jacrev(potential)(zf, disc),
                                            jax.vmap(potential, in_axes=(0, None))(rows, disc)))
    soundness = jax.jit(soundness)
    to_flat = jax.jit(lambda values: ravel_pytree({k: transforms[k].inv(values[k]) for k in names})[0])
    site_names = _flat_site_names(z_example)
    pkeys = iter(jax.random.split(jax.random.fold_in(key, 1), len(draws)))
    step = default_step(jnp.result_type(ravel_pytree(z_example)[0])) if grad_step is None else grad_step

    def evaluate(z, disc):
        rows, _ = finite_difference_rows(z, step)
        return probe(z, disc, jnp.asarray(rows, z.dtype))

    for values in draws:
        if report.n_points >= n_points:
            break
        disc = {k: values[k] for k in discrete}
        zf = to_flat({k: values[k] for k in names})
        at_draw = evaluate(zf, disc)
        if not np.all(np.isfinite(np.asarray(at_draw[0]))):
            continue
        report.n_points += 1
        moved = zf + perturb * np.asarray(jax.random.normal(next(pkeys), zf.shape, zf.dtype))
        for where, z in ((f"draw {report.n_points}", zf), (f"draw {report.n_points} (moved)", moved)):
            f0, jac_fwd, jac_rev, vals = at_draw if z is zf else evaluate(z, disc)
            if not np.all(np.isfinite(np.asarray(f0))):
                continue
            err = float(soundness(z, disc))
            report.max_soundness_error = max(report.max_soundness_error, err)
            if not err <= rtol:
                report.failures.append(f"{where}: unsound: the original model run on the reported latents is "
                                       f"{err:.3g} (relative) away from the observations, at z={z}")
            if not np.all(np.isfinite(np.asarray(jac_rev))):
                report.failures.append(f"{where}: jax.grad of the potential is not finite: {jac_rev} at z={z}")
                continue
            res = check_gradient(lambda _rows, vals=vals: vals, z, f0,
                                 {"jax.grad": jac_rev, "jax.jacfwd": jac_fwd}, step=step, rtol=grad_rtol)
            report.n_grad_checked += res.checked
            report.n_grad_skipped += res.skipped
            report.max_grad_error = max(report.max_grad_error, res.max_error)
            for name, _, j, ad, fd in res.mismatches[:4]:
                report.failures.append(
                    f"{where}: {name} of the potential w.r.t. {site_names[j]} is {ad:.10g}, finite differences {fd:.10g}"
                )
    if report.n_points == 0:
        report.failures.append(f"no start ({len(draws)} PGF points) gave a finite potential")
    if raise_on_failure and report.failures:
        raise AssertionError("check_conditioned failed:\n  " + "\n  ".join(report.failures[:10]))
    return report


def _prior_latents(cm, plan, key, args, kwargs):
    model = handlers.seed(handlers.condition(cm.model, data=plan.sample_data), key)
    tr = handlers.trace(model).get_trace(*args, **kwargs)
    return {n: tr[n]["value"] for n in plan.latents}


def _theta_point(plan, latents, args, kwargs):
    """Sampled sites of the conditioned model for given latents: θ from the PGF, untouched latents as they are."""
    theta = plan.pgf(plan.ctx_of(args, kwargs), latents)
    values = {plan.theta_sites[n]: jnp.asarray(theta[n]) for n in theta}
    values.update({n: jnp.asarray(latents[n]) for n in plan.untouched})
    return values


def _observation_error(cm, plan, values, args, kwargs):
    """Max relative distance between the observations and the original model's sites at the reported latents."""
    from .diagnostics import recomputed_observations

    tr = handlers.trace(handlers.substitute(handlers.seed(cm, 0), data=values)).get_trace(*args, **kwargs)
    latents = {n: tr[n]["value"] for n in plan.latents}
    observed = plan.observed_values(plan.ctx_of(args, kwargs))
    err = jnp.zeros(())
    for value, obs in zip(recomputed_observations(cm, plan, latents, args, kwargs), observed):
        obs = jnp.asarray(obs, jnp.result_type(value))
        err = jnp.maximum(err, jnp.max(jnp.abs(value - obs) / (1 + jnp.abs(obs)), initial=0.0))
    return err


def _continuous_transforms(cm, plan, values, discrete, args, kwargs):
    """``site -> biject_to(support)`` for the continuous sampled sites of the conditioned model."""
    disc = {k: values[k] for k in discrete}
    model = handlers.substitute(handlers.seed(handlers.condition(cm, data=disc), 0), data=values)
    tr = handlers.trace(model).get_trace(*args, **kwargs)
    spec_support = {plan.theta_sites[n]: s.support for n, s in plan.schedule.theta.items()}
    return {
        name: biject_to(spec_support.get(name, site["fn"].support))
        for name, site in tr.items()
        if site["type"] == "sample" and not site["is_observed"]
    }


def _flat_site_names(z):
    """``site[index]`` for each entry of ``ravel_pytree(z)`` (sorted keys, as ravel_pytree orders a dict)."""
    names = []
    for k in sorted(z):
        size = int(np.size(z[k]))
        names += [k] if np.ndim(z[k]) == 0 else [f"{k}[{i}]" for i in range(size)]
    return names
