"""The ``linearity`` slot of every primitive joint linear solves may go through: copies and
rearrangements, sums and differences, placements at known indices, products and quotients with
known factors, and linear solves once their matrix is known."""

from __future__ import annotations

from jax import lax

from ..._block import const_has_zero
from ..table import DEFAULT_RULES, deflinear

from .solves import _linear_solve_parts

# --- linearity slots ------------------------------------------------------------------------
def _no_zero_factor(eqn, known):
    return not any(const_has_zero(v) for v in eqn.ins)  # a zero factor determines nothing


def _nonzero_divisor(eqn, known):
    return not const_has_zero(eqn.ins[1])


def _first_power(eqn, known):
    return eqn.params["y"] == 1


_AFFINE = [
    "add_p", "sub_p", "neg_p", "reduce_sum_p", "broadcast_in_dim_p", "reshape_p", "squeeze_p",
    "transpose_p", "rev_p", "concatenate_p", "slice_p", "pad_p", "cumsum_p", "convert_element_type_p",
    "copy_p", "stack_p", "split_p", "unstack_p", "expand_dims_p",
    # placements: affine in the floating operands once the indices are known
    "dynamic_slice_p", "gather_p", "dynamic_update_slice_p", "scatter_p", "scatter_add_p",
]
for _name in _AFFINE:
    if hasattr(lax, _name):  # some exist on some JAX releases only
        deflinear(getattr(lax, _name), table=DEFAULT_RULES)
deflinear(lax.mul_p, multilinear=True, when=_no_zero_factor, table=DEFAULT_RULES)
deflinear(lax.dot_general_p, multilinear=True, table=DEFAULT_RULES)
deflinear(lax.div_p, operands=(0,), when=_nonzero_divisor, table=DEFAULT_RULES)
deflinear(lax.integer_pow_p, when=_first_power, table=DEFAULT_RULES)


def _matrix_known(eqn, known):
    return bool(known[0])


def _maps_known(eqn, known):
    return all(known[: _linear_solve_parts(eqn)[0]])


# x = A⁻¹ b is linear in b once A (the matvec's constants, and the solver's) is known
deflinear(lax.linalg.triangular_solve_p, operands=(1,), when=_matrix_known, table=DEFAULT_RULES)
deflinear(lax.linear_solve_p, when=_maps_known, table=DEFAULT_RULES)
