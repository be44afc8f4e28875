"""Running one method of ``compare.py`` on one model: valid starts for the baselines, NumPyro runs
timed with and without compilation, the steady-state speed, and the long untimed reference runs
(:func:`run_method`, :func:`reference_from_run`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro import handlers
from numpyro.infer import MCMC, NUTS
from numpyro.infer.initialization import init_to_value

from experiments.baselines import (
    abc_available,
    mici_available,
    run_abc,
    run_mici,
    soft_condition,
)
from experiments.compare_specs import MODULES, SOFT, SPECS
from experiments.metrics import (
    _flat,
    moments,
    quantities,
)
from experiments.timing import timed
from ppinv.infer import InverseMH, InverseNUTS, pgf_initial_values


def _latents_of(cm, values):
    """Latent values (by site) of the conditioned model at θ ``values``."""
    tr = handlers.trace(handlers.substitute(handlers.seed(cm, 0), data=values)).get_trace()
    return {n: np.asarray(tr[n]["value"]) for n in cm.plan().latents}


#: name -> {latent: array (N, ...)} posterior draws from the (untimed) reference run, used as starts
START_POOL = {}


#: methods whose steady-state sampling speed is also measured (see :func:`steady_state`)
STEADY_METHODS = ("ppinv", "ppinv_jump", "ppinv_mh", "hand", "soft_0.1", "soft_0.01")

def valid_starts(name, n_chains, seed):
    """One point on the constraint set per chain (latent values by site), for the baselines.

    Models with a reference run: distinct draws of that run (typical posterior points). Otherwise
    ppinv's PGF of prior draws (as ``InverseNUTS`` starts itself). Prior-draw PGF points can be far
    out in the tails (Lotka–Volterra: |u_n| ~ 10³–10⁴, where the forward simulation no longer
    reproduces y in floating point), hence the reference draws where there are some.
    """
    if name in START_POOL:
        pool = START_POOL[name]
        n = len(next(iter(pool.values())))
        idx = np.random.default_rng(10_000 + seed).choice(n, size=n_chains, replace=False)
        return [{k: np.asarray(v[i]) for k, v in pool.items()} for i in idx]
    mod = MODULES[name]
    cm = mod.conditioned()
    if SPECS[name].get("fixed_start"):
        lat = {k: np.asarray(v) for k, v in mod.true_latents().items()}
        return [lat for _ in range(n_chains)]
    cm.plan()  # plan outside jit: planning lazily inside a jit trace fails for some models (see README)
    init = jax.jit(lambda k: pgf_initial_values(cm, k))
    return [_latents_of(cm, init(k)) for k in jax.random.split(jax.random.PRNGKey(10_000 + seed), n_chains)]


def _stack(dicts):
    return {k: jnp.stack([jnp.asarray(d[k]) for d in dicts]) for k in dicts[0]}


def nuts_with_starts(model, starts, max_tree_depth):
    """Stock NUTS on ``model`` and per-chain ``init_params`` (unconstrained) at the given constrained values.

    NUTS's ``init_strategy`` is also set to the first start: NumPyro runs it even when
    ``init_params`` are given, and prior-like draws (init_to_uniform) can be invalid
    (Lotka–Volterra overflows).
    """
    from numpyro.infer.util import unconstrain_fn

    kernel = NUTS(model, max_tree_depth=max_tree_depth, init_strategy=init_to_value(values=starts[0]))
    init = _stack([unconstrain_fn(model, (), {}, {k: jnp.asarray(v) for k, v in st.items()}) for st in starts])
    return kernel, init


def run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init_params=None):
    mcmc = MCMC(kernel, num_warmup=n_warmup, num_samples=n_samples, num_chains=n_chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), init_params=init_params)
    s = mcmc.get_samples(group_by_chain=True)
    lat = {n: np.asarray(s[n]) for n in latent_names}
    div = None
    extra = mcmc.get_extra_fields(group_by_chain=True)
    if "diverging" in extra:
        div = int(np.sum(np.asarray(extra["diverging"])))
    return lat, div, mcmc


def steady_state(mcmc, n_iter):
    """Seconds for ``n_iter`` post-warm-up transitions of the kernel, compiled and warm.

    ``MCMC.run`` re-traces and recompiles its sampling loop on every call (fresh closures), so
    the kernel's own ``sample`` is looped here under one ``jax.jit`` (iteration count traced),
    called once to compile and once to time, from the chains' last state. Steady-state ESS/s is
    then the run's min-ESS over the time its draws take at this rate.

    Returns ``(wall_s, compile_s)`` of the timed call (compile_s should be ~0).
    """
    kernel, state0 = mcmc.sampler, mcmc.last_state

    @jax.jit
    def loop(state, n):
        return lax.fori_loop(0, n, lambda i, s: kernel.sample(s, (), {}), state)

    jax.block_until_ready(loop(state0, 2))
    with timed() as t:
        jax.block_until_ready(loop(state0, n_iter))
    return t.wall, t.compile


def run_method(name, method, cfg, seed, workdir):
    """Run one (model, method); returns a dict with latents (chains, draws, ...), timings and notes."""
    mod = MODULES[name]
    n_chains, n_warmup, n_samples = cfg["chains"], cfg["warmup"], cfg["samples"]
    notes = []
    weights = None
    div = None
    # things a baseline is given for free (outside its timing): valid starts on the constraint set
    cm_check = mod.conditioned()
    latent_names = cm_check.plan().latents
    if method in SOFT or method in ("hand", "mici"):
        starts = valid_starts(name, n_chains, seed)
    if method in SOFT:
        eps = float(method.split("_", 1)[1])
        sizes = cfg["soft_small_eps"] if (eps < 0.005 or SPECS[name].get("soft_slow")) else None
        if sizes:
            n_warmup, n_samples = sizes
            notes.append(f"capped at {n_warmup}+{n_samples} iterations per chain")
        base = SPECS[name].get("soft_model", lambda: mod.model)()
        with timed() as t:
            kernel, init = nuts_with_starts(soft_condition(base, mod.DATA, eps), starts, cfg["max_tree_depth"])
            lat, div, mcmc = run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init)
    elif method == "hand":
        hand_model = SPECS[name]["hand"]()
        with timed() as t:
            kernel, init = nuts_with_starts(hand_model, [SPECS[name]["hand_init"](s) for s in starts],
                                            cfg["max_tree_depth"])
            lat, div, mcmc = run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init)
        if name == "product_lognormal":
            lat = {"a": lat["a"], "b": lat["b"]}
    elif method in ("ppinv", "ppinv_jump", "ppinv_mh"):
        with timed() as t:
            cm = mod.conditioned()
            init = None
            if SPECS[name].get("fixed_start"):
                one = mod.init_params(cm)
                init = jax.tree_util.tree_map(lambda v: jnp.stack([v] * n_chains), one)
            if method == "ppinv":
                kernel = InverseNUTS(cm, max_tree_depth=cfg["max_tree_depth"])
            elif method == "ppinv_jump":
                kernel = InverseNUTS(cm, jump_every=cfg["jump_every"], max_tree_depth=cfg["max_tree_depth"])
            else:
                kernel = InverseMH(cm)
            if method == "ppinv_mh":
                n_warmup, n_samples = cfg["mh_sizes"]
                notes.append(f"{n_warmup}+{n_samples} iterations per chain (MH steps are cheap)")
            lat, div, mcmc = run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init)
    elif method == "mici":
        if not mici_available():
            return dict(skipped="mici is not installed (pip install 'mici>=0.4', or pip install -e '.[bench]')")
        n_chains_m, n_warmup, n_samples = cfg["mici_sizes"][name] if name in cfg["mici_sizes"] else cfg["mici_sizes"]["default"]
        with timed() as t:
            lat, div, note = run_mici(name, starts[:n_chains_m], n_warmup, n_samples, seed)
        notes.append(note)
        n_chains = n_chains_m
    elif method == "abc":
        if not abc_available():
            return dict(skipped="pyabc is not installed (pip install pyabc, or pip install -e '.[bench]')")
        with timed() as t:
            lat1, weights, note = run_abc(name, cfg["abc_budget"], cfg["abc_population"], seed, workdir)
        lat = {k: np.asarray(v)[None] for k, v in lat1.items()}  # one "chain" of weighted particles
        notes.append(note)
        n_chains, n_warmup, n_samples = 1, 0, len(weights)
    else:
        raise ValueError(f"unknown method {method!r}")
    steady = {}
    if cfg["steady"] and method in STEADY_METHODS and t.wall - t.compile < cfg["steady_max_s"]:
        wall, comp = steady_state(mcmc, n_samples)
        steady = dict(steady_wall_s=wall, steady_compile_s=comp)
    return dict(latents=lat, weights=weights, divergences=div, wall_s=t.wall, cpu_s=t.cpu, compile_s=t.compile,
                n_compiles=t.compiles, chains=n_chains, warmup=n_warmup, samples=n_samples, notes="; ".join(notes),
                **steady)


def reference_from_run(name, cfg, bar=None):
    """Long ppinv run (untimed) → ``{quantity: (mean, sd, mcse)}``."""
    mod = MODULES[name]
    cm = mod.conditioned()
    init = None
    if SPECS[name].get("fixed_start"):
        init = jax.tree_util.tree_map(lambda v: jnp.stack([v] * cfg["ref_chains"]), mod.init_params(cm))
    jump = "ppinv_jump" in SPECS[name]["extra"]
    if SPECS[name].get("ref_kernel") == "mh":
        kernel = InverseMH(cm)
        warm, n = cfg["ref_mh_sizes"]
        desc = f"ppinv InverseMH, {cfg['ref_chains']} x {n} draws after {warm} warm-up"
    else:
        kernel = InverseNUTS(cm, jump_every=cfg["jump_every"] if jump else 0, max_tree_depth=cfg["max_tree_depth"])
        warm, n = cfg["ref_warmup"], cfg["ref_samples"]
        desc = f"ppinv InverseNUTS{' (jump_every=%d)' % cfg['jump_every'] if jump else ''}, " \
               f"{cfg['ref_chains']} x {n} draws after {warm} warm-up"
    lat, _, _ = run_numpyro(kernel, cfg["ref_chains"], warm, n, 987, cm.plan().latents, init)
    START_POOL[name] = {k: np.asarray(v).reshape((-1,) + np.asarray(v).shape[2:]) for k, v in lat.items()}
    out = {}
    for k, v in quantities(name, lat).items():
        q = _flat(v, cfg["ref_chains"])
        m, sd, ess = moments(q)
        out[k] = (m, sd, sd / np.sqrt(np.maximum(ess, 1.0)))
    return out, desc
