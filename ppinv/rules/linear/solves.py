"""Rules that undo linear solves with a known matrix (``x = A⁻¹ b`` solved for ``b = A x``):
``triangular_solve``, ``custom_linear_solve``, and the ``cholesky`` call kept whole for the
joint solve that reads its lower triangle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..._compat import is_concrete
from ..table import DEFAULT_RULES
from .._base import Solution, Solver, all_true


# --- linear solves with a known matrix: x = A⁻¹ b solved for b --------------------------------------
# ``triangular_solve``, ``custom_linear_solve`` (what ``jnp.linalg.solve``, ``jax.scipy.linalg.solve``
# and ``cho_solve`` emit) and the like compute ``x`` with ``A x = b``. With ``A`` known and ``x``
# known, ``b`` is the known linear map run forward: ``b = A x``, exact, with no solve at all. The
# local log|det| is that of the map x ↦ b, ``log|det A|`` per right-hand side.
class _ForwardMapSolver(Solver):
    """``x = A⁻¹ b`` solved for ``b``: ``b = apply(known, x)``.

    ``apply(ins, x) -> b`` runs the linear map; ``log_det(ins) -> (log|det ∂b/∂x|, ok)`` is its
    density term, computed once when every known operand is concrete (``constant_log_det``).
    """

    def __init__(self, rhs, apply, log_det, constant_log_det=None, description=""):
        self.rhs, self.apply, self.log_det = list(rhs), apply, log_det
        self.constant_log_det = constant_log_det
        self.description = description

    def solve(self, ins, outs, theta):
        bs = self.apply(ins, list(outs))
        new_ins = list(ins)
        for k, b in zip(self.rhs, bs):
            new_ins[k] = b
        if self.constant_log_det is not None:
            return Solution(new_ins, list(outs), self.constant_log_det, None)
        log_det, ok = self.log_det(ins)
        return Solution(new_ins, list(outs), log_det, all_true(ok))


def _singular(what, eqn):
    from ...errors import InversionError

    return InversionError(
        f"{what} with a known singular matrix: x = A⁻¹ b is not defined, so the relation has no inverse:"
        f"\n    {eqn.describe()}\nCheck the matrix (a zero pivot, a repeated row)."
    )


def _concrete_log_det(log_det, ins, what, eqn):
    """``log_det(ins)`` now, as a float, when every operand it reads is concrete; else ``None``."""
    if not all(v is None or is_concrete(v) for v in ins):
        return None
    with jax.ensure_compile_time_eval():
        value, ok = log_det(ins)
    value = float(np.asarray(value))
    if not np.isfinite(value) or (ok is not None and not bool(np.all(np.asarray(ok)))):
        raise _singular(what, eqn)
    return value


# -- triangular_solve: op(A) x = b (left side) or x op(A) = b, A triangular ---------------------
def _triangle(a, lower, unit_diagonal):
    """The part of ``a`` triangular_solve reads: one triangle, and a unit diagonal if so declared."""
    tri = jnp.tril(a) if lower else jnp.triu(a)
    if unit_diagonal:
        eye = jnp.eye(a.shape[-1], dtype=bool)
        tri = jnp.where(eye, jnp.ones((), a.dtype), tri)
    return tri


def _triangular_rule(pat):
    eqn, p = pat.eqn, pat.params
    if not (pat.known_in[0] and not pat.known_in[1] and pat.known_out[0]):
        return None
    a, b = eqn.ins
    if not (a.is_float and b.is_float) or jnp.issubdtype(a.dtype, jnp.complexfloating):
        return None
    left, lower, transpose = p["left_side"], p["lower"], p["transpose_a"]
    unit = p["unit_diagonal"]
    # right-hand sides: the columns of b (left side) or its rows (right side), per batch entry
    per_rhs = b.shape[-1] if left else b.shape[-2]
    batch = int(np.prod(b.shape[:-2], dtype=np.int64)) // max(int(np.prod(a.shape[:-2], dtype=np.int64)), 1)

    def apply(ins, outs):
        op = _triangle(jnp.asarray(ins[0]), lower, unit)
        op = jnp.swapaxes(op, -1, -2) if transpose else op
        x = outs[0]
        return [jnp.matmul(op, x) if left else jnp.matmul(x, op)]

    def log_det(ins):
        if unit:
            return 0.0, None
        diag = jnp.abs(jnp.diagonal(jnp.asarray(ins[0]), axis1=-2, axis2=-1))
        ok = jnp.all(diag > 0)
        return per_rhs * batch * jnp.sum(jnp.log(jnp.where(diag > 0, diag, 1.0))), ok

    matrix = pat.const(0)
    constant = None if matrix is None else _concrete_log_det(log_det, [matrix], "triangular_solve", eqn)
    side = "A x" if left else "x A"
    return _ForwardMapSolver([1], apply, log_det, constant, f"undo a triangular solve: b = {side}")


DEFAULT_RULES.register(lax.linalg.triangular_solve_p, _triangular_rule)


# -- custom_linear_solve: matvec(x) = b, the matvec a jaxpr of its constants -------------------
def _eval_closed(closed, *args):
    from ..._compat import jaxpr_parts

    jaxpr, consts = jaxpr_parts(closed)
    return jax.core.eval_jaxpr(jaxpr, consts, *args)


def _linear_solve_parts(eqn):
    """``(n_consts, n_matvec_consts)``: how many operands are constants of the four maps, and
    how many of those the matvec reads (the first ones); the rest are the right-hand sides."""
    lengths = eqn.params["const_lengths"]
    return int(sum(lengths)), int(lengths.matvec)


#: the most unknown entries whose dense Jacobian a linear solve forms for its log|det|
MAX_DENSE_SOLVE = 1024


def _linear_solve_rule(pat):
    eqn = pat.eqn
    n_consts, n_matvec = _linear_solve_parts(eqn)
    rhs = list(range(n_consts, len(eqn.ins)))
    if not (all(pat.known_out) and all(pat.known_in[:n_consts]) and not any(pat.known_in[n_consts:])):
        return None
    if any(not eqn.ins[k].is_float for k in rhs) or len({id(eqn.ins[k]) for k in rhs}) < len(rhs):
        return None  # one variable at two right-hand-side places is not a solve for it
    if any(jnp.issubdtype(o.dtype, jnp.complexfloating) for o in eqn.outs):
        return None  # a complex map's density is |det|² over the reals: not this rule's
    size = sum(o.size for o in eqn.outs)
    if size > MAX_DENSE_SOLVE:
        from ...errors import InversionError

        raise InversionError(
            f"custom_linear_solve with {size} unknowns: ppinv forms the dense {size}×{size} Jacobian of its "
            f"matvec for log|det| and does so for at most {MAX_DENSE_SOLVE} unknowns:\n    {eqn.describe()}"
        )
    matvec = eqn.params["jaxprs"].matvec
    shapes = [o.shape for o in eqn.outs]
    offsets = np.cumsum([0] + [o.size for o in eqn.outs])

    def apply(ins, outs):
        return list(_eval_closed(matvec, *ins[:n_matvec], *outs))

    def log_det(ins):
        def flat_map(u):
            xs = [u[a:b].reshape(s) for a, b, s in zip(offsets[:-1], offsets[1:], shapes)]
            return jnp.concatenate([jnp.ravel(b) for b in _eval_closed(matvec, *ins[:n_matvec], *xs)])

        dtype = eqn.outs[0].dtype
        jac = jax.jacfwd(flat_map)(jnp.zeros((size,), dtype))
        sign, value = jnp.linalg.slogdet(jac)
        ok = sign != 0
        return jnp.where(ok, value, 0.0), ok

    known = [pat.const(k) for k in range(n_matvec)]
    constant = None
    if all(k is not None for k in known):
        constant = _concrete_log_det(log_det, known, "custom_linear_solve", eqn)
    return _ForwardMapSolver(rhs, apply, log_det, constant, "undo a linear solve: b = matvec(x)")


DEFAULT_RULES.register(lax.linear_solve_p, _linear_solve_rule)


# -- jnp.linalg.cholesky ---------------------------------------------------------------------
def _cholesky_rule(pat):
    """``L = jnp.linalg.cholesky(A)`` observed whole, ``A`` unknown: kept as one relation (the
    ``cholesky`` joint solve reads its lower triangle, ``A = L·Lᵀ``) and refused here with why."""
    from ...errors import InversionError
    from ..control import call_body_rule
    from ..functions import is_library_call

    if not is_library_call(pat.eqn, jnp.linalg.cholesky):
        return call_body_rule(pat)
    if not pat.known_out[0] or pat.known_in[0] or not pat.allow_theta:
        return None  # only once nothing else can move: A may yet be determined another way
    (a,) = pat.eqn.ins
    n = a.shape[-1]
    raise InversionError(
        f"the factor L of jnp.linalg.cholesky at {pat.eqn.source} is known whole here (observed, or its "
        f"entries above the diagonal freed from θ), but cholesky reads only the symmetric part "
        f"(A + Aᵀ)/2 of its {n}×{n} input: the {n * (n - 1) // 2} entries of A's antisymmetric part leave no "
        f"trace in L, and L's {n * (n - 1) // 2} entries above the diagonal are 0 whatever A is. Observe L's "
        f"lower triangle (L[jnp.tril_indices({n})]) of a matrix built from its n(n+1)/2 free entries: ppinv "
        "then solves A = L·Lᵀ."
    )


DEFAULT_RULES.register_function("cholesky", _cholesky_rule)
