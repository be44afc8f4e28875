"""Derivatives against central finite differences, entry by entry, with a noise-aware tolerance."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np




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
