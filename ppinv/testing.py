"""Check parametric inverses the way ppinv's own test suite does.

:func:`check_inverse` verifies, at random points, the three properties every
inverse must have:

* soundness — ``f(*inv(y, θ)) == y`` for θ anywhere in its space (inside the domain);
* completeness through the PGF — ``inv(f(*x), pgf(*x)) == x``;
* the density term — ``inv.log_abs_det_jacobian(y, θ)`` equals ``slogdet`` of
  the dense Jacobian of ``(y, θ_continuous) ↦ x`` computed by ``jax.jacfwd``.

Use it on your own rules (registered with :func:`ppinv.register_rule` or
declared with :func:`ppinv.custom_inverse`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import tree_flatten, tree_map, tree_unflatten
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from .inverse import Inverse, _arg_names, _normalize_support, inverse

__all__ = ["dense_log_abs_det", "check_inverse", "InverseReport", "sample_inputs"]


def _split_theta(inv: Inverse, theta):
    """Continuous θ in intrinsic coordinates (a flat vector) and a function rebuilding θ."""
    spec = inv.theta_spec
    cont_names = [n for n, s in spec.items() if not s.discrete]
    pieces, rebuilders = [], []
    for n in cont_names:
        s, val = spec[n], jnp.asarray(theta[n])
        if s.support is constraints.simplex:
            pieces.append(jnp.ravel(val[..., :-1]))
            shape = val.shape

            def rebuild(flat, shape=shape):
                head = flat.reshape(shape[:-1] + (shape[-1] - 1,))
                return jnp.concatenate([head, 1 - jnp.sum(head, -1, keepdims=True)], -1)
        else:
            pieces.append(jnp.ravel(val))
            shape = val.shape

            def rebuild(flat, shape=shape):
                return flat.reshape(shape)

        rebuilders.append((n, rebuild, pieces[-1].size))
    flat = jnp.concatenate(pieces) if pieces else jnp.zeros((0,))

    def unflatten(vec):
        out = dict(theta)
        i = 0
        for n, rebuild, size in rebuilders:
            out[n] = rebuild(vec[i : i + size])
            i += size
        return out

    return flat, unflatten


def dense_log_abs_det(inv: Inverse, y, theta):
    """``log|det ∂x/∂(y, θ_continuous)|`` from the dense Jacobian (``jax.jacfwd``)."""
    y_flat, y_unravel = ravel_pytree(y)
    t_flat, t_unflatten = _split_theta(inv, theta)
    ny = y_flat.size

    def g(z):
        xs = inv(y_unravel(z[:ny]), t_unflatten(z[ny:]))
        return ravel_pytree(xs)[0]

    z = jnp.concatenate([y_flat, t_flat.astype(y_flat.dtype)])
    jac = jax.jacfwd(g)(z)
    if jac.shape[0] != jac.shape[1]:
        raise AssertionError(f"Jacobian is {jac.shape}, not square: θ dims do not equal dim X − dim Y.")
    sign, logdet = jnp.linalg.slogdet(jac)
    return jnp.where(sign == 0, -jnp.inf, logdet)


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


@dataclass
class InverseReport:
    """What :func:`check_inverse` measured."""

    n_points: int = 0
    n_in_domain: int = 0
    max_roundtrip_error: float = 0.0
    max_soundness_error: float = 0.0
    max_log_det_error: float = 0.0
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _max_err(a, b):
    fa, _ = ravel_pytree(a)
    fb, _ = ravel_pytree(b)
    if fa.size == 0:
        return 0.0
    scale = 1.0 + jnp.abs(fb)
    return float(jnp.max(jnp.abs(fa - fb) / scale))


def check_inverse(
    f,
    *example_args,
    support=None,
    inv: Inverse | None = None,
    key=None,
    n_points: int = 20,
    points=None,
    rtol: float = 1e-6,
    log_det_atol: float = 1e-6,
    raise_on_failure: bool = True,
    dense_points: int | None = None,
) -> InverseReport:
    """Verify soundness, PGF round trip and log|det| of ``ppinv.inverse(f, ...)``.

    Parameters
    ----------
    f, example_args, support:
        As for :func:`ppinv.inverse`.
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
    inv = inv or inverse(f, *example_args, support=support)
    key = jax.random.PRNGKey(0) if key is None else key
    report = InverseReport()
    if points is None:
        keys = jax.random.split(key, n_points)
        if isinstance(support, dict):  # by argument name, as ppinv.inverse takes it
            support = _normalize_support(support, _arg_names(f, len(example_args)))
        points = [sample_inputs(k, example_args, support) for k in keys]
    tkeys = jax.random.split(jax.random.fold_in(key, 1), len(points))
    for i, x in enumerate(points):
        report.n_points += 1
        y = f(*x)
        theta = inv.pgf(*x)
        x_back, ld = inv.with_log_det(y, theta)
        err = _max_err(x_back, x)
        report.max_roundtrip_error = max(report.max_roundtrip_error, err)
        if not err <= rtol:
            report.failures.append(f"point {i}: PGF round trip error {err:.3g} (x={x}, got {x_back})")
            continue
        report.n_in_domain += 1
        if dense_points is not None and i >= dense_points:
            dense = ld
        else:
            dense = dense_log_abs_det(inv, y, theta)
        lerr = abs(float(ld) - float(dense))
        if np.isfinite(float(ld)) or np.isfinite(float(dense)):
            report.max_log_det_error = max(report.max_log_det_error, lerr)
            if not lerr <= log_det_atol * (1 + abs(float(dense))):
                report.failures.append(f"point {i}: log|det| {float(ld):.10g} vs dense {float(dense):.10g}")
        # soundness at a θ away from the PGF's: perturb the continuous leaves
        theta2 = _perturb(inv, theta, tkeys[i])
        if bool(inv.in_domain(y, theta2)):
            x2 = inv(y, theta2)
            serr = _max_err(f(*x2), y)
            report.max_soundness_error = max(report.max_soundness_error, serr)
            if not serr <= rtol * 10:
                report.failures.append(f"point {i}: soundness error {serr:.3g} at theta={theta2}")
    if raise_on_failure and report.failures:
        raise AssertionError("check_inverse failed:\n  " + "\n  ".join(report.failures[:10]))
    return report


def _perturb(inv, theta, key):
    out = dict(theta)
    for (n, s), k in zip(inv.theta_spec.items(), jax.random.split(key, max(len(theta), 1))):
        if s.discrete:
            continue
        t = biject_to(s.support)
        u = t.inv(jnp.asarray(theta[n]))
        out[n] = t(u + 0.1 * jax.random.normal(k, jnp.shape(u), u.dtype)).astype(s.dtype)
    return tree_map(jnp.asarray, out)
