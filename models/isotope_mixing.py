"""Stable-isotope diet mixing: diet fractions from a consumer's δ13C and δ15N, with uncertain source signatures.

Model::

    f ~ Dirichlet(α)                                   (diet fractions of K = 3 food sources)
    source[k] ~ Normal(SOURCE_MEAN[k], SOURCE_SD[k])   (each source's (δ13C, δ15N), plate over sources)
    consumer = f @ (source + TDF)                      (the consumer's two isotope ratios, observed exactly)

The classic linear mixing model (Phillips & Gregg 2003, IsoSource; the deterministic
core of MixSIAR): with two tracers and three sources the mass balance
``Σ f_k = 1`` and the two isotope equations determine ``f`` once the source
signatures are known — but the signatures are themselves uncertain (sampled around
their lab means), so ``f`` must be solved anew for every draw of them. ``TDF`` are
the trophic discrimination factors (known constants).

What it shows: a linear system whose matrix is made of *other sampled values*.
ppinv's default frees ``f`` (the Dirichlet's free coordinates) and solves the six source
signatures through a null-space chart of ``f · s_j = consumer_j − Δ_j`` (one relation per
tracer): exact, with a basis that moves with ``f``. The chart is centred and scaled by the
sources' prior mean and spread and orthonormal, so θ given ``f`` is standard normal and NUTS
meets no shear between them (``ppinv/_block/matrix.py``). ``free=["source"]`` makes the six
signatures θ instead; ppinv then solves the square 2×2 system for ``f`` per draw, with
``log|det| = −log|det K(source)|``. That θ puts the simplex's wall inside θ-space (draws of
``source`` that put the consumer outside the sources' triangle have density zero): on
2 × 3,200 draws it spends about 2.2× fewer gradients per effective draw than the default but
has 35 divergent transitions per 1,000 against the default's 2 (the default before its chart
was centred needed 40 leapfrog steps per draw and gave 3.7 effective draws per 1,000 steps,
against 65 now).
``f`` must land inside the simplex: draws of ``source`` that put the consumer
outside the sources' triangle have density zero. ``α = 2`` makes the density
vanish at that wall (a Dirichlet(1) keeps it flat up to the wall, which costs
NUTS divergences).

Reference: given ``f``, ``consumer_j ~ N(Δ_j + Σ_k f_k μ_kj, Σ_k f_k² σ_kj²)``,
so ``p(f | consumer) ∝ Dir(f; α) Π_j N(consumer_j; …)`` on the 2-simplex, and
given ``f`` the source signatures are a Gaussian conditioned on one linear
combination per tracer. :func:`reference_moments` integrates both over the
simplex with a Gauss–Legendre rule (Duffy map of the triangle onto the square).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

SOURCES = ("C3 plants", "marine fish", "C4 plants")
TRACERS = ("d13C", "d15N")
#: lab means and standard deviations of each source's (δ13C, δ15N), ‰
SOURCE_MEAN = np.array([[-24.0, 4.0], [-18.0, 9.0], [-12.0, 6.0]])
SOURCE_SD = np.array([[1.0, 0.8], [0.9, 1.0], [1.2, 0.7]])
#: trophic discrimination factors (consumer minus diet), ‰
TDF = np.array([0.4, 3.4])
ALPHA = 2.0
#: the consumer's measured (δ13C, δ15N): a 0.3 / 0.4 / 0.3 diet of the mean sources, plus the TDF
CONSUMER = np.array([-17.6, 10.0])
#: the hand-chosen θ the hand-written inverse (experiments/baselines.py) uses; the default is ppinv's own
FREE = ("source",)


def model():
    f = numpyro.sample("f", dist.Dirichlet(ALPHA * jnp.ones(len(SOURCES))))
    with numpyro.plate("sources", len(SOURCES)):
        source = numpyro.sample("source", dist.Normal(jnp.asarray(SOURCE_MEAN), jnp.asarray(SOURCE_SD)).to_event(1))
    numpyro.deterministic("consumer", f @ (source + jnp.asarray(TDF)))


DATA = {"consumer": CONSUMER}
LATENT_DIM = (len(SOURCES) - 1) + SOURCE_MEAN.size  # the simplex has K − 1 free coordinates
OBSERVED_DIM = len(TRACERS)


def conditioned(free=None):
    """``ppinv.condition(model, DATA)``; ``free=FREE`` makes the source signatures θ and solves the
    diet fractions per draw instead."""
    return ppinv.condition(model, DATA, free=list(free) if free else None)


def _simplex_rule(n: int):
    """Nodes ``f`` (m, 3) and weights of a Gauss–Legendre rule on the 2-simplex (Duffy map)."""
    x, w = np.polynomial.legendre.leggauss(n)
    x, w = (x + 1) / 2, w / 2
    U, V = np.meshgrid(x, x, indexing="ij")
    WU, WV = np.meshgrid(w, w, indexing="ij")
    f1 = U.ravel()
    f2 = ((1 - U) * V).ravel()
    weights = (WU * WV * (1 - U)).ravel()
    return np.stack([f1, f2, 1 - f1 - f2], axis=-1), weights


def _tracer_given_f(f):
    """Mean and variance of ``consumer_j − TDF_j`` given the fractions ``f`` (m, 3): each (m, 2)."""
    return f @ SOURCE_MEAN, (f**2) @ SOURCE_SD**2


def reference_moments(n: int = 160, consumer=CONSUMER):
    """Exact posterior means and variances of ``f`` (3,) and ``source`` (3, 2) by quadrature."""
    f, w = _simplex_rule(n)
    mu, var = _tracer_given_f(f)
    r = np.asarray(consumer) - TDF - mu
    log_p = (ALPHA - 1) * np.log(f).sum(-1) - 0.5 * np.sum(r**2 / var + np.log(var), axis=-1)
    p = w * np.exp(log_p - log_p.max())
    p /= p.sum()
    mean_f = p @ f
    var_f = p @ (f - mean_f) ** 2
    # source | f, consumer: per tracer j, N(μ_·j, diag σ_·j²) conditioned on Σ_k f_k s_kj = r_j + Σ_k f_k μ_kj
    s2 = SOURCE_SD**2
    gain = s2[None] * f[:, :, None] / var[:, None, :]  # (m, 3, 2)
    cond_mean = SOURCE_MEAN[None] + gain * r[:, None, :]
    cond_var = s2[None] - gain * s2[None] * f[:, :, None]
    mean_s = np.einsum("m,mkj->kj", p, cond_mean)
    var_s = np.einsum("m,mkj->kj", p, cond_var + (cond_mean - mean_s) ** 2)
    return {"f": {"mean": mean_f, "var": var_f}, "source": {"mean": mean_s, "var": var_s}}
