"""Throughput of ppinv's compiled code as work is batched.

Two measurements, on whatever device JAX runs on (CPU here; the same script
runs unchanged on a GPU and records the device):

1. **Batched inverse evaluation** — ``jit(vmap(inv.with_log_det))`` over
   1 … 10⁶ inputs for two inverses (the product of lognormals, 2 → 1, and the
   Lotka–Volterra inverse, 104 → 100 through a 50-step scan): evaluations per
   second, median of repeats.
2. **Vectorized chains** — ``MCMC(InverseNUTS(...), chain_method="vectorized")``
   with 1 … 1,024 chains on the product model: draws per second and min-ESS
   per second, sampling phase only (compile time is reported separately);
   300 + 500 iterations, 100 + 100 from 256 chains up. ``MCMC.run`` compiles
   its loop again, so ``steady_draws_per_s`` times the kernel's step looped
   under one ``jit`` after compiling it.

Usage::

    python experiments/scaling.py [--quick] [--out experiments/results]
        [--max-batch N] [--max-chains N] [--warmup N] [--samples N] [--repeats N]
        [--suffix _gpu] [--budget-s S]

Writes ``scaling[_quick].json``, ``scaling_inverse[_quick].csv``,
``scaling_chains[_quick].csv`` and ``scaling[_quick].png`` (``--suffix``
replaces ``_quick``). ``--max-chains`` above 1,024 goes on in powers of 4
(4,096: ``experiments/gpu_check.sh``); with ``--budget-s`` the sizes not yet
started when the budget is spent are skipped (and listed in the JSON), and what
was measured is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from tqdm import tqdm  # noqa: E402

import ppinv  # noqa: E402
from experiments.machine import machine_info  # noqa: E402


def _product(a, b):
    return a * b


def _inverse_cases():
    from models import lotka_volterra as lv

    z = jnp.asarray(lv.Z_TRUE)
    un = jnp.asarray(np.random.RandomState(lv.NOISE_SEED).normal(size=2 * lv.N_STEPS))
    return {
        "product (2→1)": (_product, (1.0, 2.0)),
        "lotka_volterra (104→100)": (lambda z, u: lv.simulate(z, u), (z, un)),
    }


def time_batched(inv, f, x0, batch, repeats):
    y0 = f(*x0)
    th0 = inv.pgf(*x0)
    ys = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, (batch,) + jnp.shape(v)), y0)
    ths = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, (batch,) + jnp.shape(v)), th0)
    fn = jax.jit(jax.vmap(inv.with_log_det))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(ys, ths))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(ys, ths))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return dict(batch=batch, compile_s=compile_s, median_s=med, evals_per_s=batch / med)


def chains_case():
    import numpyro
    import numpyro.distributions as dist

    def model():
        a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
        b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
        numpyro.deterministic("y", a * b)

    return ppinv.condition(model, {"y": 2.0})


def time_chains(cm, n_chains, num_warmup, num_samples):
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC

    mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=num_warmup, num_samples=num_samples,
                num_chains=n_chains, chain_method="vectorized", progress_bar=False)
    t0 = time.perf_counter()
    mcmc.warmup(jax.random.PRNGKey(0), collect_warmup=False)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mcmc.run(mcmc.post_warmup_state.rng_key)
    jax.block_until_ready(mcmc.get_samples())
    run_s = time.perf_counter() - t0
    a = np.asarray(mcmc.get_samples(group_by_chain=True)["a"])
    ess = float(effective_sample_size(a)) if n_chains > 1 else float(effective_sample_size(a[None, 0]))
    draws = n_chains * num_samples
    # MCMC.run compiles its loop again, so sampling_s includes a compilation; the steady rate
    # is the kernel's own step looped under one jit, compiled first and then timed
    kernel, state = mcmc.sampler, mcmc.last_state
    loop = jax.jit(lambda st, n: jax.lax.fori_loop(0, n, lambda i, x: kernel.sample(x, (), {}), st))
    jax.block_until_ready(loop(state, 2))
    t0 = time.perf_counter()
    jax.block_until_ready(loop(state, num_samples))
    steady_s = time.perf_counter() - t0
    return dict(chains=n_chains, warmup_and_compile_s=warm_s, sampling_s=run_s, draws_per_s=draws / run_s,
                ess=ess, ess_per_s=ess / run_s, steady_s=steady_s, steady_draws_per_s=draws / steady_s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    p.add_argument("--max-batch", type=int, default=None, help="largest batch of inverse evaluations")
    p.add_argument("--max-chains", type=int, default=None, help="largest number of vectorized chains")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--suffix", default=None, help="suffix of the result files (default: '_quick' or '')")
    p.add_argument("--budget-s", type=float, default=None, help="skip the sizes not started after this many seconds")
    args = p.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    quick = args.quick
    batches = [1, 100] if quick else [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000]
    chains = [1, 4] if quick else [1, 4, 16, 64, 256, 1024]
    if args.max_batch is not None:
        batches = [10**k for k in range(int(np.log10(args.max_batch) + 1e-9) + 1)]
    if args.max_chains is not None:
        chains = [4**k for k in range(int(np.log(args.max_chains) / np.log(4) + 1e-9) + 1)]
    repeats = args.repeats or (2 if quick else 7)
    warm, samp = (20, 20) if quick else (300, 500)
    warm = warm if args.warmup is None else args.warmup
    samp = samp if args.samples is None else args.samples
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = args.suffix if args.suffix is not None else ("_quick" if quick else "")
    t_start = time.perf_counter()
    skipped = []

    def over_budget(what):
        if args.budget_s is not None and time.perf_counter() - t_start > args.budget_s:
            skipped.append(what)
            return True
        return False

    cases = _inverse_cases()
    inv_rows, chain_rows = [], []
    with tqdm(total=len(cases) * len(batches) + len(chains), desc="scaling", dynamic_ncols=True) as bar:
        for name, (f, x0) in cases.items():
            inv = ppinv.inverse(f, *x0)
            for b in batches:
                if (name.startswith("lotka") and b > 100_000) or over_budget(f"{name} x{b}"):
                    bar.update(1)
                    continue  # 10⁶ × 100-dim trajectories do not fit comfortably in memory
                bar.set_postfix_str(f"{name} x{b}")
                inv_rows.append({"case": name, **time_batched(inv, f, x0, b, repeats)})
                bar.update(1)
        cm = chains_case()
        for c in chains:
            if over_budget(f"{c} chains"):
                bar.update(1)
                continue
            bar.set_postfix_str(f"{c} chains")
            # a vectorized step costs ~ chains on 2 CPU cores: shorter runs keep 1,024 chains in minutes
            w, s = (warm, samp) if c < 256 else (min(warm, 100), min(samp, 100))
            chain_rows.append(time_chains(cm, c, w, s))
            bar.update(1)
    machine = machine_info()
    (out / f"scaling{suffix}.json").write_text(json.dumps(dict(machine=machine, inverse=inv_rows, chains=chain_rows,
                                                               skipped=skipped), indent=1))
    for rows, name in ((inv_rows, "inverse"), (chain_rows, "chains")):
        if not rows:
            continue
        with open(out / f"scaling_{name}{suffix}.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    _plot(inv_rows, chain_rows, out / f"scaling{suffix}.png", machine)
    print(f"device: {machine['device']} ({machine['cpu']}, {machine['usable_cores']} cores), jax {machine['jax']}")
    print(f"{'case':<28}{'batch':>10}{'evals/s':>14}{'compile s':>11}")
    for r in inv_rows:
        print(f"{r['case']:<28}{r['batch']:>10}{r['evals_per_s']:>14.3g}{r['compile_s']:>11.2f}")
    print(f"{'chains':>8}{'draws/s':>12}{'steady draws/s':>16}{'ESS/s':>10}{'warmup+compile s':>18}")
    for r in chain_rows:
        print(f"{r['chains']:>8}{r['draws_per_s']:>12.3g}{r['steady_draws_per_s']:>16.3g}{r['ess_per_s']:>10.3g}"
              f"{r['warmup_and_compile_s']:>18.2f}")
    if skipped:
        print(f"skipped (time budget): {', '.join(skipped)}")
    return dict(inverse=inv_rows, chains=chain_rows, skipped=skipped)


def _plot(inv_rows, chain_rows, path, machine):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for case in dict.fromkeys(r["case"] for r in inv_rows):
        rs = [r for r in inv_rows if r["case"] == case]
        a1.plot([r["batch"] for r in rs], [r["evals_per_s"] for r in rs], "o-", label=case)
    a1.set(xscale="log", yscale="log", xlabel="inputs per call (vmap)", ylabel="inverse evaluations / s",
           title="batched inverse (x and log|det|)")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3, which="both")
    a2.plot([r["chains"] for r in chain_rows], [r["draws_per_s"] for r in chain_rows], "o-", label="draws / s")
    a2.plot([r["chains"] for r in chain_rows], [r["ess_per_s"] for r in chain_rows], "s--", label="ESS / s")
    a2.set(xscale="log", yscale="log", xlabel="vectorized chains", title="InverseNUTS, product model")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3, which="both")
    fig.suptitle(f"{machine['device']} — {machine['cpu']}, {machine['usable_cores']} cores, jax {machine['jax']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
