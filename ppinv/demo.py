"""The quick demonstration: ``python -m ppinv.demo``.

A NumPyro model whose observation is a deterministic function of two latents,
``y = a·b + sin(a)``, conditioned *exactly* on ``y = 1.5`` and sampled with
InverseNUTS (4 vectorized chains). Prints the schedule of the inverse, the
posterior summary and the largest constraint violation ``|f(x) − y|``.
"""

from __future__ import annotations

import argparse
import warnings

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC

import ppinv
from ppinv.diagnostics import constraint_violation


def model():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a * b + jnp.sin(a))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    conditioned = ppinv.condition(model, {"y": 1.5})
    print("Observation: y = a·b + sin(a) = 1.5   (a ~ LogNormal(0, 1), b ~ Normal(0, 1))\n")
    print("Schedule of the inverse:")
    print(conditioned.plan().schedule.describe(), "\n")
    mcmc = MCMC(
        ppinv.infer.InverseNUTS(conditioned),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="vectorized",
        progress_bar=not args.no_progress,
    )
    mcmc.run(jax.random.PRNGKey(0))
    with warnings.catch_warnings():  # the constant site y has no variance: a nan n_eff is expected
        warnings.simplefilter("ignore", RuntimeWarning)
        mcmc.print_summary(exclude_deterministic=False)
    samples = mcmc.get_samples()
    violation = constraint_violation(conditioned, samples)
    print(f"Largest constraint violation |a·b + sin(a) − 1.5| over {len(samples['a'])} samples: {violation:.3e}")
    return violation


if __name__ == "__main__":
    main()
