"""The lower triangle of ``jnp.linalg.cholesky(A)`` observed, ``A`` affine in its unknowns: ``A = L·Lᵀ``.

A covariance or precision matrix is built from ``n(n+1)/2`` unknowns (its free entries, a
known structure with unknown variances, a known matrix plus unknown parts) and its Cholesky
factor ``L`` is observed through its lower triangle (``L[jnp.tril_indices(n)]``: the entries
above the diagonal are 0 whatever ``A`` is, so observing them would observe nothing). No
relation can be solved alone: the selection leaves ``L``'s upper part unknown, and
``cholesky`` reads only ``(A + Aᵀ)/2``. As a whole:

    A = L·Lᵀ,   a = M⁻¹ (tril(A) − tril(sym(S(0))))

where ``S(a)`` is the matrix the affine relations build from the unknowns ``a`` and ``M`` the
matrix of ``a ↦ tril((S(a) + S(a)ᵀ)/2)`` (square: ``n(n+1)/2`` unknowns), formed at run
time from the known operands. The map from the lower triangle of ``L`` to that of ``A`` has

    log|det| = n·log 2 + Σᵢ (n − i + 1)·log Lᵢᵢ     (i = 1..n)

(``dA = dL·Lᵀ + L·dLᵀ``: ordered by rows, entry ``(i, j)`` of ``A`` depends on ``L``'s entries up
to ``(i, j)`` and on ``(i, j)`` itself with weight ``2Lᵢᵢ`` on the diagonal, ``Lⱼⱼ`` below it),
then ``−log|det M|``. Domain: a positive diagonal of ``L`` and ``M`` invertible. When ``A`` is
itself the unknown (``n²`` entries), ``A = L·Lᵀ + K`` with ``K`` antisymmetric: its entries
below the diagonal are θ, and each pair ``A_ij = S_ij + K_ij``, ``A_ji = S_ij − K_ij`` adds ``log 2``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from .._block import is_linear
from ..errors import InversionError
from ..rules.functions import is_library_call
from ..theta import ThetaSpec
from .base import Strategy, block_solve
from .cones import expand_cone, known_operands


class CholeskyFactors(Strategy):
    name = "cholesky"

    def candidates(self, state):
        for anchor in state.stalled():
            found = _observed_factor(state, anchor)
            if found is None:
                continue
            chol, lower = found
            cone = _affine_cone(state, chol)
            if cone is not None:
                yield block_solve(CholeskyBlock(anchor, chol, lower, *cone, state.names),
                                  hints=("cholesky_antisymmetric",))


def _observed_factor(state, anchor):
    """``(the cholesky call, flat indices the anchor reads)`` when ``anchor`` observes exactly the lower
    triangle of an unknown ``jnp.linalg.cholesky`` factor, once each, in any order."""
    if len(anchor.outs) != 1 or not state.is_known(anchor.outs[0]):
        return None
    unknown = [v for v in anchor.ins if not state.is_known(v)]
    if len(unknown) != 1 or any(not v.is_const for v in anchor.ins if v is not unknown[0]):
        return None
    (factor,) = unknown
    chol = state.definer.get(factor)
    if chol is None or chol not in state.pending or chol.function != "cholesky" or len(factor.shape) != 2:
        return None
    if not is_library_call(chol, jnp.linalg.cholesky):
        return None
    picked = _selection(anchor, factor)
    n = factor.shape[0]
    rows, cols = np.tril_indices(n)
    if picked is None or sorted(picked.tolist()) != sorted((rows * n + cols).tolist()):
        return None
    return chol, picked


def _selection(anchor, factor):
    """The flat indices of ``factor`` that ``anchor`` copies to its output, if it only copies entries."""
    code = np.arange(1, factor.size + 1, dtype=np.float64).reshape(factor.shape)

    def run(m):
        ins = [m if v is factor else v.value for v in anchor.ins]
        return np.asarray(anchor.bind(*ins)[0], np.float64).ravel()

    try:
        once, twice = run(code), run(2.0 * code)
    except Exception:  # noqa: BLE001 - an anchor that cannot run on a plain array copies nothing we can read
        return None
    if not (np.array_equal(twice, 2.0 * once) and np.all(once == np.round(once)) and np.all(once >= 1)):
        return None
    return once.astype(np.int64) - 1


def _affine_cone(state, chol):
    """``(relations from the unknowns to A in program order, the unknowns, the known operands)``:
    back from the cholesky call's input through pending affine relations."""
    (a,) = chol.ins
    if state.is_known(a):
        return None

    def affine(u, d):
        known = [state.is_known(v) for v in d.ins]
        return is_linear(d, known, state.structure.moves_with_theta, state.table)

    found = expand_cone(state, chol, affine)
    if found is None:
        return None
    cone, leaves = found
    cone = [e for e in cone if e is not chol]
    leaves = sorted(leaves, key=lambda v: v.id)
    n = a.shape[0]
    size = sum(v.size for v in leaves)
    if leaves == [a] and a.is_float:
        return [], leaves, []  # A itself unknown: its antisymmetric part is θ
    if size != n * (n + 1) // 2 or not all(v.is_float for v in leaves):
        raise InversionError(
            f"the lower triangle of jnp.linalg.cholesky at {chol.source} is observed ({n * (n + 1) // 2} entries), "
            f"but its {n}×{n} input is an affine function of {size} unknown entries "
            f"({', '.join(state.names.get(v, repr(v)) for v in leaves)}); cholesky reads only (A + Aᵀ)/2, so "
            f"the factor determines A = L·Lᵀ and exactly n(n+1)/2 = {n * (n + 1) // 2} unknowns can be solved "
            "from it. Build A from its n(n+1)/2 free entries (or observe fewer of L's entries)."
        )
    return cone, leaves, known_operands(state, cone)


class CholeskyBlock:
    """The unknowns behind ``A`` from the observed lower triangle of ``cholesky(A)`` (see the module)."""

    def __init__(self, anchor, chol, lower, cone, leaves, known, names):
        self.anchors, self.leaves, self.known_inputs = [anchor], list(leaves), list(known)
        self.chol, self.cone, self.lower = chol, cone, lower
        self.n = n = chol.ins[0].shape[0]
        what = ", ".join(names.get(v, repr(v)) for v in leaves)
        # A unknown itself: cholesky reads (A + Aᵀ)/2, so A = L·Lᵀ + K with K antisymmetric (θ below the diagonal)
        self.raw = leaves == [chol.ins[0]]
        self.strict = np.tril_indices(n, -1)
        self.theta = ()
        self._constant_map = None  # (offset, M, log|det M|, invertible) when only constants build A
        if self.raw:
            self.theta = (ThetaSpec((n * (n - 1) // 2,), leaves[0].dtype, constraints.real, "value",
                                    f"antisymmetric part of {what}"),)
        self.description = f"cholesky factor: {what} from the lower triangle of L, A = L·Lᵀ" + (
            " + K (θ: K antisymmetric)" if self.raw else "")
        if not self.raw and not self.known_inputs:
            self._constant_map = self._build_time_map()

    def _raw_solve(self, square, theta):
        """``A = L·Lᵀ + K``: each pair ``A_ij, A_ji`` is ``S_ij ± K_ij``, a factor 2 in ``|det|``."""
        (k,) = theta
        n = self.n
        below = jnp.zeros((n, n), square.dtype).at[self.strict].set(k)
        return [square + below - below.T], 0.5 * n * (n - 1) * math.log(2.0)

    def _matrix(self, known_env, flat):
        """``A`` built from the unknowns in one flat vector (the program's own relations)."""
        env, at = dict(known_env), 0
        for v in self.leaves:
            env[v] = flat[at : at + v.size].reshape(v.shape).astype(v.dtype)
            at += v.size
        for e in self.cone:
            outs = e.bind(*[v.value if v.is_const else env[v] for v in e.ins])
            env.update(zip(e.outs, outs))
        a = self.chol.ins[0]
        return a.value if a.is_const else env[a]

    def _lower_of_symmetric_part(self, known_env, flat):
        m = self._matrix(known_env, flat)
        return (0.5 * (m + m.T)).ravel()[self.lower]

    def _affine_map(self, known_env, dtype):
        """``(offset, M, log|det M|, M invertible)`` of ``a ↦ tril(sym(A))`` (see ``_constant_map``)."""
        return self._constant_map if self._constant_map is not None else self._run_time_map(known_env, dtype)

    def _build_time_map(self):
        """The map from the constants alone, once, when no known operand enters; a singular one is refused."""
        with jax.ensure_compile_time_eval():
            found = self._run_time_map({}, self.leaves[0].dtype)
        if not bool(found[3]):
            raise InversionError(f"the matrix behind jnp.linalg.cholesky at {self.chol.source} is built from its "
                                 "unknowns by a singular affine map: they cannot all be recovered from A = L·Lᵀ")
        return found

    def _run_time_map(self, known_env, dtype):
        zero = jnp.zeros(len(self.lower), dtype)
        offset = self._lower_of_symmetric_part(known_env, zero)
        matrix = jax.jacfwd(lambda f: self._lower_of_symmetric_part(known_env, f))(zero)
        sign, log_abs = jnp.linalg.slogdet(matrix)
        invertible = (sign != 0) & jnp.isfinite(log_abs)
        matrix = jnp.where(invertible, matrix, jnp.eye(matrix.shape[0], dtype=matrix.dtype))
        return offset, matrix, jnp.where(invertible, log_abs, 0.0), invertible

    def solve(self, known_env, observed, theta):
        (y,) = observed
        n = self.n
        factor = jnp.zeros(n * n, y.dtype).at[self.lower].set(y).reshape(n, n)
        diag = jnp.diagonal(factor)
        ok = jnp.all(diag > 0)
        safe = jnp.where(ok, factor, jnp.eye(n, dtype=y.dtype))
        powers = jnp.arange(n, 0, -1, dtype=y.dtype)  # n − i + 1 for i = 1..n
        log_det = n * math.log(2.0) + jnp.sum(powers * jnp.log(jnp.where(ok, diag, 1.0)))
        if self.raw:
            values, pairs = self._raw_solve(safe @ safe.T, theta)
            return values, log_det + pairs, ok
        target = (safe @ safe.T).ravel()[self.lower]
        offset, matrix, log_abs, invertible = self._affine_map(known_env, y.dtype)
        flat = jnp.linalg.solve(matrix, target - offset)
        log_det = log_det - log_abs
        values, at = [], 0
        for v in self.leaves:
            values.append(flat[at : at + v.size].reshape(v.shape))
            at += v.size
        return values, log_det, ok & invertible

    def pgf(self, known_env, leaves):
        if not self.raw:
            return ()
        (a,) = leaves
        return ((0.5 * (a - a.T))[self.strict],)
