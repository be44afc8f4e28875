"""Are branches with real mass visited in proportion? InverseNUTS against independent branch masses.

For every model in ``models/`` whose default conditioned inverse has discrete θ (found from the
plan: θ specs with a discrete support), the default ``InverseNUTS`` runs a few chains and each
branch's visited fraction is compared with a reference mass computed without ppinv's density:

* ``sine``, ``drifter_currents`` — closed form (the models' own formulas);
* ``manifold_toy``, ``arm`` — adaptive quadrature (scipy ``quad``) over the one free coordinate,
  branch by branch, with the fold endpoints found by root finding;
* ``logistic_map`` — 2²⁰ root tuples, so one row per root element: at stratified random rates
  ``b`` every backward orbit of the observation is enumerated exactly (NumPy), weighted by
  ``Beta(2, 2)(x₀) / Π|b(1 − 2xₜ)|``; the reference's own standard error (from the strata) is
  part of the z-score.

A branch is a value of the tuple of discrete θ (or, for the logistic map, one root element's
value); reference points are labelled by the same tuple through the PGF (``cm.theta_of``).
z = (visited − reference) / √(MCSE² + SE_ref²), the MCSE by batch means of the branch indicator
(batches of √n draws within each chain, pooled over chains; never below the i.i.d. value
√(p(1 − p)/N), so a branch that is never left or never visited still gets a finite z).

    python experiments/branch_mass.py             # 4 chains × 1200 draws, before and after (~30 min on 2 cores)
    python experiments/branch_mass.py --quick     # smoke test (2 chains, short)
    python experiments/branch_mass.py --models arm sine

"before" is ``InverseNUTS(cm, branch_jumps=False)`` (Gibbs sweep only), "after" the default
(``branch_jumps=True``, :mod:`ppinv.infer._branch_moves`). Writes
``experiments/results/branch_mass.{md,json}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from numpyro.infer import MCMC  # noqa: E402
from scipy import integrate, optimize, stats  # noqa: E402

import ppinv  # noqa: E402
from experiments.machine import machine_info  # noqa: E402
from models import INVERTIBLE_MODELS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: rows are shown for branches holding at least this much reference mass (or visited as often)
SHOWN = 0.01


# -- which models, and their branches -------------------------------------------------------------
def discrete_theta_sites(cm):
    """The conditioned model's discrete θ sites, in the plan's order."""
    plan = cm.plan()
    return [plan.theta_sites[n] for n, s in plan.schedule.theta.items() if s.discrete]


def models_with_discrete_theta():
    found = {}
    for name, mod in INVERTIBLE_MODELS.items():
        cm = mod.conditioned()
        if discrete_theta_sites(cm):
            found[name] = cm
    return found


def branch_codes(cm, latents, batch_ndims):
    """The discrete θ of latent values (by the PGF) as one integer row per point."""
    theta = cm.theta_of(latents, batch_ndims=batch_ndims)
    sites = discrete_theta_sites(cm)
    lead = np.shape(theta[sites[0]])[:batch_ndims]
    return np.concatenate([np.asarray(theta[s]).reshape(*lead, -1) for s in sites], axis=-1)


# -- references -----------------------------------------------------------------------------------
class TupleReference:
    """Branch masses given at representative latent points (one per branch)."""

    def __init__(self, method, latents, mass):
        self.method, self.latents, self.mass = method, latents, np.asarray(mass, float)

    def events(self, cm):
        codes = branch_codes(cm, self.latents, 1)
        table = {}
        for code, m in zip(map(tuple, codes.tolist()), self.mass):
            table[code] = table.get(code, 0.0) + m
        total = sum(table.values())
        return {("tuple", c): (m / total, 0.0) for c, m in table.items()}


def sine_reference(cm):
    from models import sine

    ref = sine.reference_posterior()
    return TupleReference("closed form", {"x": ref["x"]}, ref["weights"])


def drifter_reference(cm):
    from models import drifter_currents as dc

    a, n = dc.along_channel_magnitudes(), len(dc.CROSS)
    m0, t0 = dc.MEAN_PRIOR
    cov = dc.SPREAD**2 * np.eye(n) + t0**2 * np.ones((n, n))
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n)))
    logw = stats.multivariate_normal.logpdf(signs * a, m0 * np.ones(n), cov)
    latents = {"u": signs * a, "mean": np.full(len(signs), m0)}
    return TupleReference("closed form", latents, np.exp(logw - logw.max()))


def manifold_toy_reference(cm):
    from models import manifold_toy as mt

    r = mt.t0_range()
    half = lambda t0: mt.reference_density(t0) / 2  # one sign of θ₁  # noqa: E731
    masses, t0s, t1s = [], [], []
    for s0, s1 in itertools.product((-1.0, 1.0), repeat=2):
        lo, hi = (0.0, r) if s0 > 0 else (-r, 0.0)
        masses.append(integrate.quad(half, lo, hi, limit=200)[0])
        t0 = s0 * r / 2
        t0s.append(t0)
        t1s.append(s1 * np.sqrt(mt.Y - t0**2 * (t0**2 - 0.5)))
    latents = {"t0": np.array(t0s), "t1": np.array(t1s)}
    return TupleReference("quadrature (quad over θ₀ per quadrant)", latents, masses)


def arm_reference(cm, turns=range(-2, 3)):
    """The 3-link arm: for each q₀ both elbows and whole turns of the last two joints in closed form."""
    from models import arm

    l1, l2, l3 = arm.LENGTHS[3]
    px, py = arm.TARGET[3]

    def cosine(q0):
        ux, uy = px - l1 * np.cos(q0), py - l1 * np.sin(q0)
        return (ux * ux + uy * uy - l2 * l2 - l3 * l3) / (2 * l2 * l3), ux, uy

    def joints(q0, s):
        c, ux, uy = cosine(q0)
        d = s * np.arccos(np.clip(c, -1, 1))
        return np.arctan2(uy, ux) - np.arctan2(l3 * np.sin(d), l2 + l3 * np.cos(d)) - q0, d

    def density(q0, s, k, m):
        c, _, _ = cosine(q0)
        if abs(c) >= 1:
            return 0.0
        q1, q2 = joints(q0, s)
        q = np.array([q0, q1 + 2 * np.pi * k, q2 + 2 * np.pi * m])
        return float(np.prod(stats.norm.pdf(q, 0, arm.SCALE)) / abs(l2 * l3 * np.sin(q2)))

    grid = np.linspace(-np.pi, np.pi, 20001)
    inside = np.abs(cosine(grid)[0]) < 1
    edges = np.flatnonzero(np.diff(inside.astype(int)))
    ends = [optimize.brentq(lambda t: abs(cosine(t)[0]) - 1, grid[i], grid[i + 1]) for i in edges]
    bounds = ([grid[0]] if inside[0] else []) + ends + ([grid[-1]] if inside[-1] else [])
    pieces = list(zip(bounds[::2], bounds[1::2]))
    masses, points = [], []
    coarse = grid[inside][::50]
    branches = list(itertools.product((1.0, -1.0), turns, turns))
    peaks = [max(coarse, key=lambda t: density(t, *br)) for br in branches]  # a representative point each
    top = max(density(q0, *br) for q0, br in zip(peaks, branches))
    for (s, k, m), q0 in zip(branches, peaks):
        # a whole turn away the prior is e^(−79) smaller: below 1e-12 of the top nothing is integrated
        heavy = density(q0, s, k, m) > 1e-12 * top
        masses.append(sum(integrate.quad(density, a, b, args=(s, k, m), limit=200)[0] for a, b in pieces) if heavy
                      else 0.0)
        q1, q2 = joints(q0, s)
        points.append([q0, q1 + 2 * np.pi * k, q2 + 2 * np.pi * m])
    return TupleReference("quadrature (quad over q₀ per elbow and turns)", {"angles": np.array(points)}, masses)


class ElementReference:
    """Marginal masses of single discrete elements: ``(code index, value) -> (mass, SE)``."""

    def __init__(self, method, table):
        self.method, self.table = method, table

    def events(self, cm):
        return {("element", j, v): pm for (j, v), pm in self.table.items()}


def logistic_orbits(b, xn, n_steps):
    """Every backward orbit of ``xn`` under ``x ↦ b x (1 − x)``: x₀, log weights, x₀..x_{n−1}."""
    xs = np.array([[xn]])  # columns: x_t, x_{t+1}, ..., x_n (newest first)
    logw = np.zeros(1)
    for _ in range(n_steps):
        disc = 1 - 4 * xs[:, 0] / b
        ok = disc >= 0
        xs, logw, root = xs[ok], logw[ok], np.sqrt(disc[ok])
        prev = np.concatenate([(1 - root) / 2, (1 + root) / 2])
        xs = np.concatenate([xs, xs])
        logw = np.concatenate([logw, logw]) - np.log(np.abs(b * (1 - 2 * prev)))
        xs = np.concatenate([prev[:, None], xs], axis=1)
    x0 = xs[:, 0]
    logw = logw + np.log(6 * x0 * (1 - x0))  # Beta(2, 2); b's prior is flat on [3, 4]
    return x0, logw, xs[:, :-1]


def logistic_reference(cm, strata=400, seed=0):
    """Per root element: P(root = 1), by exact enumeration at 2 stratified random rates per stratum."""
    from models import logistic_map as lm

    xn, n = float(lm.DATA["xn"]), lm.N_STEPS
    rng = np.random.default_rng(seed)
    lows = 3.0 + np.arange(strata) / strata
    rates = np.concatenate([lows + rng.uniform(0, 1 / strata, strata) for _ in range(2)])
    weight, above, probe_x0, probe_b, probe_above = [], [], [], [], []
    for b in rates:
        x0, logw, xs = logistic_orbits(b, xn, n)
        w = np.exp(logw)
        weight.append(w.sum())
        above.append(w @ (xs > 0.5))
        pick = rng.choice(len(x0), min(3, len(x0)), replace=False)
        probe_x0.append(x0[pick]), probe_b.append(np.full(len(pick), b)), probe_above.append(xs[pick] > 0.5)
    # which root value means the orbit point above ½: read off the PGF at sampled orbits
    codes = branch_codes(cm, {"x0": np.concatenate(probe_x0), "b": np.concatenate(probe_b)}, 1)
    states = np.concatenate(probe_above)
    value_of_above = _root_value_of_above(codes, states)
    weight, above = np.array(weight).reshape(2, strata), np.array(above).reshape(2, strata, n)
    ratio = above.sum((0, 1)) / weight.sum()
    # SE of the ratio: linearised, from the differences within each stratum
    e = (above - ratio * weight[..., None]) / weight.mean()
    se = np.sqrt(np.sum((e[0] - e[1]) ** 2, axis=0) / 4) / strata
    # one row per element (a root is one of two values): P(root = 1)
    table = {(t, 1): (ratio[t] if value_of_above == 1 else 1 - ratio[t], se[t]) for t in range(n)}
    method = f"exact orbit enumeration at {2 * strata} stratified rates b (SE from strata)"
    return ElementReference(method, table)


def _root_value_of_above(codes, states):
    """The root θ value for which element t of the code is the orbit point x_t > ½ (checked on every probe)."""
    for value in (0, 1):
        if np.array_equal(codes == value, states):
            return value
    raise AssertionError("the logistic map's root θ does not match the orbit points above ½ element by element")


REFERENCES = {
    "sine": sine_reference,
    "drifter_currents": drifter_reference,
    "manifold_toy": manifold_toy_reference,
    "arm": arm_reference,
    "logistic_map": logistic_reference,
}


# -- the chains -----------------------------------------------------------------------------------
def run_chains(cm, chains, warmup, draws, seed, branch_jumps):
    kernel = ppinv.infer.InverseNUTS(cm, branch_jumps=branch_jumps)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=draws, num_chains=chains, chain_method="vectorized",
                progress_bar=False)
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed))
    seconds = time.perf_counter() - start
    samples = mcmc.get_samples(group_by_chain=True)
    plan = cm.plan()
    latents = {k: samples[k] for k in plan.upstream}
    return branch_codes(cm, latents, 2), seconds


def indicator(codes, event):
    if event[0] == "tuple":
        return np.all(codes == np.asarray(event[1]), axis=-1).astype(float)
    _, j, v = event
    return (codes[..., j] == v).astype(float)


def batch_means_mcse(series, floor_p):
    """MCSE of the mean of ``series`` (chains × draws) by batch means, at least the i.i.d. value at ``floor_p``."""
    chains, n = series.shape
    size = max(1, int(np.sqrt(n)))
    batches = series[:, : (n // size) * size].reshape(chains, -1, size).mean(-1).ravel()
    mcse = np.std(batches, ddof=1) / np.sqrt(len(batches)) if len(batches) > 1 else np.inf
    return max(mcse, np.sqrt(floor_p * (1 - floor_p) / series.size)), batches.var(ddof=1) if len(batches) > 1 else 0.0


def compare(events, codes):
    rows = []
    for event, (ref, ref_se) in sorted(events.items(), key=lambda kv: -kv[1][0]):
        series = indicator(codes, event)
        seen = float(series.mean())
        if ref < SHOWN and seen < SHOWN:
            continue
        mcse, _ = batch_means_mcse(series, ref)
        p = min(max(seen, 1e-12), 1 - 1e-12)
        ess = p * (1 - p) / mcse**2
        z = (seen - ref) / np.sqrt(mcse**2 + ref_se**2)
        rows.append(dict(branch=_label(event), reference=ref, reference_se=ref_se, visited=seen, mcse=mcse,
                         ess=ess, z=z, chains_visiting=int(np.sum(series.max(-1) > 0))))
    if all(event[0] == "tuple" for event in events):  # the rest of the mass, and branches the reference lacks
        rows.append(dict(branch="all others", reference=1 - sum(r["reference"] for r in rows),
                         visited=1 - sum(r["visited"] for r in rows)))
    return rows


def _label(event):
    if event[0] == "tuple":
        return "(" + ", ".join(str(v) for v in event[1]) + ")"
    return f"root[{event[1]}] = {event[2]}"


# -- the report -----------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 chains, 150 + 300 draws, a coarse logistic reference")
    parser.add_argument("--models", nargs="*", help="only these models")
    parser.add_argument("--variants", nargs="*", default=["before", "after"], choices=["before", "after"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)
    chains, warmup, draws = (2, 150, 300) if opts.quick else (4, 400, 1200)
    strata = 40 if opts.quick else 400
    machine = machine_info()
    found = models_with_discrete_theta()
    names = [n for n in found if not opts.models or n in opts.models]
    report = dict(machine=machine, chains=chains, warmup=warmup, draws=draws, models={})
    for name in names:
        cm = found[name]
        t0 = time.perf_counter()
        maker = REFERENCES[name]
        reference = maker(cm, strata=strata) if name == "logistic_map" else maker(cm)
        events = reference.events(cm)
        entry = dict(reference_method=reference.method, reference_seconds=time.perf_counter() - t0,
                     discrete_sites=discrete_theta_sites(cm), variants={})
        for variant in opts.variants:
            codes, seconds = run_chains(cm, chains, warmup, draws, opts.seed, branch_jumps=variant == "after")
            rows = compare(events, codes)
            entry["variants"][variant] = dict(seconds=seconds, rows=rows)
            worst = max((abs(r["z"]) for r in rows if "z" in r and r["reference"] >= SHOWN), default=0.0)
            print(f"{name:18s} {variant:6s} {seconds:6.1f}s  max|z| (branches ≥ 1 %) = {worst:.1f}", flush=True)
        report["models"][name] = entry
    opts.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if opts.quick else ""
    (opts.out / f"branch_mass{suffix}.json").write_text(json.dumps(report, indent=1, default=float))
    (opts.out / f"branch_mass{suffix}.md").write_text(markdown(report))
    return report


def markdown(report):
    m = report["machine"]
    lines = [
        "# Branch masses under InverseNUTS against independent references",
        "",
        f"`python experiments/branch_mass.py` — {report['chains']} chains × ({report['warmup']} warm-up + "
        f"{report['draws']} draws), `chain_method='vectorized'`. before: `InverseNUTS(cm, branch_jumps=False)` "
        "(Gibbs sweep of discrete θ only); after: the default (sweep + branch jump, `ppinv/infer/_branch_moves.py`).",
        "z = (visited − reference)/√(MCSE² + SE_ref²), MCSE by batch means of the branch indicator; "
        f"rows for branches with ≥ {SHOWN:.0%} of the reference mass or as often visited.",
        "",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores, jax {m['jax']}, numpyro {m['numpyro']}, "
        f"ppinv {m['ppinv_commit']}{' (dirty)' if m['ppinv_dirty'] else ''}, {m['date']}.",
        "",
    ]
    for name, entry in report["models"].items():
        lines += [f"## {name}", "", f"discrete θ: {', '.join(entry['discrete_sites'])}; reference: "
                  f"{entry['reference_method']} ({entry['reference_seconds']:.1f} s)", ""]
        variants = list(entry["variants"])
        columns = " | ".join(f"{v}: visited ± MCSE | {v}: z | {v}: chains" for v in variants)
        head = f"| branch | reference | {columns} |"
        lines += [head, "|" + "---|" * (2 + 3 * len(variants))]
        by_branch = [{r["branch"]: r for r in entry["variants"][v]["rows"]} for v in variants]
        for row in entry["variants"][variants[0]]["rows"]:
            cells = [row["branch"], _mass(row["reference"], row.get("reference_se", 0.0))]
            for table in by_branch:
                r = table.get(row["branch"], {})
                if "z" in r:
                    cells += [f"{r['visited']:.3f} ± {r['mcse']:.3f}", f"{r['z']:+.1f}", str(r["chains_visiting"])]
                else:
                    cells += [f"{r.get('visited', float('nan')):.3f}", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        times = ", ".join(f"{v} {entry['variants'][v]['seconds']:.0f} s" for v in variants)
        lines += ["", f"Run time (compile included): {times}.", ""]
    return "\n".join(lines) + "\n"


def _mass(p, se):
    return f"{p:.3f} ± {se:.3f}" if se else f"{p:.3f}"


if __name__ == "__main__":
    main()
