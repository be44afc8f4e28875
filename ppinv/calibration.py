"""Simulation-based calibration (Talts et al. 2018) of exact conditioning.

Draw ``x*`` from the prior, observe ``y* = f(x*)`` exactly, sample the
conditioned posterior, and record the rank of ``x*`` among the posterior draws.
If the sampler targets the exact conditional, every rank is uniform on
``0..L``. ppinv makes this cheap: the observation enters the model as an
argument (a ``Delta`` site with ``obs=``), so one compiled kernel is ``vmap``-ed
over all replications at once.

Examples
--------
>>> import numpyro, numpyro.distributions as dist
>>> from ppinv.calibration import simulation_based_calibration
>>> def model(y=None):
...     a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
...     b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
...     numpyro.sample("y", dist.Delta(a * b), obs=y)
>>> result = simulation_based_calibration(model, "y", num_replications=8, num_warmup=50, num_samples=20)
>>> sorted(result.ranks)
['a', 'b']
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro import handlers

from .conditioning import condition
from .infer import InverseNUTS

__all__ = ["simulation_based_calibration", "SBCResult", "uniformity_pvalue"]


@dataclass
class SBCResult:
    """Ranks of the true values among ``num_samples`` posterior draws, per latent site.

    ``ranks[name]`` has shape ``(num_replications,) + site shape`` with values in
    ``0..num_samples``; ``pvalues[name]`` is the χ² uniformity p-value of each
    scalar component.
    """

    ranks: dict
    pvalues: dict
    num_samples: int

    @property
    def min_pvalue(self) -> float:
        return float(min(np.min(p) for p in self.pvalues.values()))


def uniformity_pvalue(ranks, num_samples, bins=None):
    """χ² test that integer ranks in ``0..num_samples`` are uniform (per column)."""
    from scipy import stats

    ranks = np.asarray(ranks).reshape(len(ranks), -1)
    n = ranks.shape[0]
    bins = bins or max(2, min(20, n // 5))
    # equal-width bins over the L+1 possible ranks
    edges = np.linspace(0, num_samples + 1, bins + 1)
    out = []
    for col in ranks.T:
        counts, _ = np.histogram(col, bins=edges)
        expected = n * np.diff(edges) / (num_samples + 1)
        out.append(stats.chisquare(counts, expected).pvalue)
    return np.asarray(out)


def simulation_based_calibration(
    model,
    observed_kwarg,
    *,
    observed_site=None,
    num_replications=100,
    num_warmup=300,
    num_samples=100,
    thin=3,
    seed=0,
    kernel=InverseNUTS,
    kernel_kwargs=None,
    model_kwargs=None,
    init_tries=256,
    condition_kwargs=None,
):
    """Run SBC for ``model``, whose exact observation is passed as ``observed_kwarg``.

    ``model(**{observed_kwarg: None})`` must simulate: the observation is a
    ``Delta`` site (named ``observed_site``, by default the keyword's name) with
    ``obs=`` that keyword, which samples its value when the argument is ``None``.
    Chains run ``num_warmup + num_samples * thin`` steps, keeping every
    ``thin``-th draw so the ranks are close to independent. Each chain starts
    where the kernel starts it: at the best of ``init_tries`` prior draws mapped
    through the PGF (observations of rare values need many). ``condition_kwargs``
    go to :func:`ppinv.condition` (``free=[...]`` to pick θ).
    """
    model_kwargs = dict(model_kwargs or {})
    observed_site = observed_site or observed_kwarg
    k_prior, k_run = jax.random.split(jax.random.PRNGKey(seed))

    def prior(k):
        tr = handlers.trace(handlers.seed(model, k)).get_trace(**{observed_kwarg: None}, **model_kwargs)
        latents = {
            n: s["value"]
            for n, s in tr.items()
            if s["type"] == "sample" and not s["is_observed"] and n != observed_site
        }
        return latents, tr[observed_site]["value"]

    truth, obs = jax.vmap(prior)(jax.random.split(k_prior, num_replications))
    cm = condition(model, **(condition_kwargs or {}))
    kern = kernel(cm, **{"init_tries": init_tries, **(kernel_kwargs or {})})
    kw0 = {observed_kwarg: obs[0], **model_kwargs}
    target = kern.setup(num_warmup, (), kw0)
    latents = [n for n in truth if n in cm.plan(**kw0).latents]
    total = num_warmup + num_samples * thin

    def run_one(k, y):
        kw = {observed_kwarg: y, **model_kwargs}
        k1, k2 = jax.random.split(k)
        values = kern.start_values(k1, (), kw)
        state = kern.init_state(values, k2, (), kw)
        post = target.postprocess_fn((), kw)

        def body(state, i):
            state = kern.step(state, (), kw)
            draw = post(state.z)
            return state, {n: draw[n] for n in latents}

        _, draws = lax.scan(body, state, jnp.arange(total))
        return jax.tree_util.tree_map(lambda d: d[num_warmup::thin], draws)

    keys = jax.random.split(k_run, num_replications)
    draws = jax.jit(jax.vmap(run_one))(keys, obs)
    # Ties (posteriors on a finite set of preimages, such as ±√y) are broken at
    # random, as SBC requires for discrete posteriors.
    rng = np.random.default_rng(seed)
    ranks = {}
    for n in latents:
        d, t = np.asarray(draws[n]), np.asarray(truth[n])[:, None]
        tie = np.isclose(d, t, rtol=1e-9, atol=1e-12)
        below = np.sum((d < t) & ~tie, axis=1)
        ties = np.sum(tie, axis=1)
        ranks[n] = below + rng.integers(0, ties + 1)
    pvalues = {n: uniformity_pvalue(r, num_samples) for n, r in ranks.items()}
    return SBCResult(ranks, pvalues, num_samples)
