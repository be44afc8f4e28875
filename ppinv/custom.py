"""``@ppinv.custom_inverse``: declare the parametric inverse of your own function.

The overlay then treats every call of the function as one relation and uses
the declared inverse instead of looking inside — for functions whose bodies
cannot be inverted primitive by primitive (a numerical solver, a closed form
that needs a joint solve), or to choose a better-conditioned θ.

A call is marked by running the function under ``jax.jit`` with a unique
name; outside ``ppinv`` it behaves exactly like the original function.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import tree_flatten, tree_unflatten
from numpyro.distributions import constraints

from .rules import FunctionSolver, Solution, register_function_rule
from .theta import ThetaSpec

__all__ = ["custom_inverse"]

_counter = itertools.count()


class custom_inverse:
    """Decorator declaring the parametric inverse of a function.

    The inverse is given with :meth:`def_inverse` as
    ``inverse(y, theta) -> (x, log_det)`` where ``y`` is what the function
    returns, ``theta`` a dict of the declared θ leaves, ``x`` the tuple of
    positional arguments, and ``log_det = log|det ∂x/∂(y, θ_continuous)|``
    (−∞ or NaN outside the domain). The PGF is given with :meth:`def_pgf` as
    ``pgf(*x) -> theta``. The declared inverse solves for *all* arguments from
    the outputs; check it with :func:`ppinv.testing.check_inverse`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from numpyro.distributions import constraints
    >>> import ppinv
    >>> @ppinv.custom_inverse
    ... def polar(r, phi):
    ...     return r * jnp.cos(phi), r * jnp.sin(phi)
    >>> @polar.def_inverse(theta={})
    ... def _(y, theta):
    ...     u, v = y
    ...     r = jnp.hypot(u, v)
    ...     return (r, jnp.arctan2(v, u)), -jnp.log(r)
    >>> @polar.def_pgf
    ... def _(r, phi):
    ...     return {}
    """

    def __init__(self, fun, *, name: str | None = None):
        self.fun = fun
        self.name = f"ppinv_custom__{name or getattr(fun, '__name__', 'fn')}__{next(_counter)}"
        self._inverse = None
        self._pgf = None
        self._theta = {}
        self._trees = {}

        def named(*args):
            out = fun(*args)
            in_leaves, in_tree = tree_flatten(args)
            self._trees[_avals_key(in_leaves)] = (in_tree, tree_flatten(out)[1])
            return out

        named.__name__ = named.__qualname__ = self.name
        self._jitted = jax.jit(named)
        functools.update_wrapper(self, fun)

    def __call__(self, *args):
        return self._jitted(*args)

    def def_inverse(self, inverse=None, *, theta=None):
        """Declare ``inverse(y, theta) -> (x, log_det)`` and the θ leaves it takes.

        ``theta`` maps leaf names to a NumPyro constraint (a scalar leaf), a
        ``(constraint, shape)`` pair, or a :class:`~ppinv.theta.ThetaSpec`.
        """

        def register(fn):
            self._inverse = fn
            self._theta = dict(theta or {})
            register_function_rule(self.name, self._rule)
            return fn

        return register(inverse) if inverse is not None else register

    def def_pgf(self, pgf):
        """Declare ``pgf(*x) -> theta``."""
        self._pgf = pgf
        return pgf

    # -- the rule the overlay consults -------------------------------------------------------
    def _specs(self, dtype, origin):
        specs = []
        for name, decl in self._theta.items():
            if isinstance(decl, ThetaSpec):
                specs.append((name, decl))
                continue
            support, shape = (decl, ()) if not isinstance(decl, tuple) else decl
            support = support if support is not None else constraints.real
            dt = np.dtype(jnp.asarray(0).dtype) if support.is_discrete else dtype
            specs.append((name, ThetaSpec(tuple(shape), dt, support, "value", origin)))
        return specs

    def _rule(self, pat):
        if self._inverse is None:
            return None
        eqn = pat.eqn
        if any(pat.known_in) or not all(pat.known_out):
            return None
        trees = self._trees.get(_avals_key(eqn.ins))
        if trees is None:
            return None
        in_tree, out_tree = trees
        dtype = eqn.outs[0].dtype if eqn.outs else np.dtype("float32")
        named_specs = self._specs(dtype, eqn.describe())
        names = [n for n, _ in named_specs]
        inverse, pgf, fname = self._inverse, self._pgf, self.fun.__name__

        def solve(ins, outs, theta):
            y = tree_unflatten(out_tree, outs)
            x, log_det = inverse(y, dict(zip(names, theta)))
            x_leaves = tree_flatten(tuple(x))[0]
            ld = jnp.asarray(log_det)
            return Solution(x_leaves, list(outs), ld, jnp.isfinite(ld))

        def pgf_fn(ins, outs):
            if pgf is None:
                raise NotImplementedError(f"{fname} declares θ but no PGF; add @{fname}.def_pgf.")
            th = pgf(*tree_unflatten(in_tree, ins))
            return tuple(th[n] for n in names)

        solver = FunctionSolver(solve, pgf_fn, [s for _, s in named_specs], f"declared inverse of {fname}")
        solver.theta_hints = tuple(f"{fname}_{n}" for n in names)
        return solver


def _avals_key(leaves):
    """Shapes and dtypes of traced values, or of program variables: the call signature."""
    return tuple((tuple(jnp.shape(x)), str(np.dtype(x.dtype))) for x in leaves)
