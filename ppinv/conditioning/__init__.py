"""``ppinv.condition``: exact conditioning of NumPyro models on deterministic observations.

* ``model.py`` — :func:`condition` and :class:`ConditionedModel`, the NumPyro model it returns;
* ``plan.py`` — :class:`Plan`, one per signature of model arguments: the model's sites, the
  inverse of the map from latents to exact observations, and running it;
* ``density.py`` — the θ sites' :class:`ConditionalDensity`, the guarded total, replayed latents;
* ``sites.py`` — the sites as ``condition`` sees them and the checks of data against them;
* ``outside.py`` — conditions and substitutions set by handlers wrapping the model.
"""

from .density import ConditionalDensity
from .model import THETA_PREFIX, ConditionedModel, condition
from .plan import Plan

__all__ = ["condition", "ConditionedModel", "ConditionalDensity", "Plan", "THETA_PREFIX"]
