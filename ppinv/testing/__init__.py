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

from .conditioned import ConditionedReport, check_conditioned
from .flat import dense_log_abs_det
from .gradients import GradientCheck, check_gradient
from .inverses import InverseReport, check_inverse, sample_inputs

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
