"""How often ppinv's kernels trace and compile (compilation dominates short runs).

As BlackJAX's ``tests/test_compilation.py`` does, these count compilations and
traces: JAX reports every XLA compilation through ``jax.monitoring`` (event
``/jax/core/compile/backend_compile_duration``, with the program's name), and a
wrapper counts the traces of the start-up. The start-up (best of the PGF
starts + the initial state) and the post-processing must compile once per
kernel, whatever the number of chains and runs.
"""

import collections
import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC

import ppinv
from models import bilinear
from ppinv.infer import InverseHMC, InverseMH, InverseNUTS
from ppinv.infer import _base
from ppinv.infer._args import ModelArgs
from tests.helpers import assert_mean, assert_var, run_mcmc

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compilations():
    """Counter of XLA compilations by program name while active."""
    counts = collections.Counter()

    def listen(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            counts[kwargs.get("fun_name", "?")] += 1

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


@pytest.fixture
def start_traces(monkeypatch):
    """Number of times the start-up's PGF start is traced (a counter inside the traced function)."""
    calls = []
    real = _base.start_point

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_base, "start_point", counting)
    return calls


def _ppinv_programs(counts):
    return {k: v for k, v in counts.items() if "ppinv" in k}


def _short_hmc(cm):
    """HMC with 3 leapfrog steps: NUTS's start-up (the same programs) at a fraction of its loop's compile time."""
    return InverseHMC(cm, num_steps=3, trajectory_length=None)


def test_sequential_chains_and_a_second_run_compile_the_start_up_once(start_traces):
    """The benchmark model (x0 + x1·x2 = 1), 2 sequential chains, then MCMC.run again."""
    cm = bilinear.conditioned()
    cm.plan()
    mcmc = MCMC(_short_hmc(cm), num_warmup=5, num_samples=5, num_chains=2, chain_method="sequential",
                progress_bar=False)
    with compilations() as counts:
        mcmc.run(jax.random.PRNGKey(0))
    assert _ppinv_programs(counts) == {"jit(ppinv_start_one)": 1, "jit(ppinv_postprocess)": 1}, counts
    traced = len(start_traces)
    with compilations() as again:
        mcmc.run(jax.random.PRNGKey(1))
    assert _ppinv_programs(again) == {}, again
    assert len(start_traces) == traced  # nothing of the start-up traced again
    s = mcmc.get_samples()
    np.testing.assert_allclose(s["x0"] + s["x1"] * s["x2"], 1.0, atol=1e-12)


def test_vectorized_chains_compile_the_start_up_once(start_traces):
    """4 vectorized chains: one start-up program for all keys, reused when the chains start again."""
    cm = bilinear.conditioned()
    cm.plan()
    mcmc = MCMC(_short_hmc(cm), num_warmup=5, num_samples=5, num_chains=4, chain_method="vectorized",
                progress_bar=False)
    with compilations() as counts:
        mcmc.run(jax.random.PRNGKey(0))
    assert _ppinv_programs(counts) == {"jit(ppinv_start)": 1, "jit(ppinv_postprocess)": 1}, counts
    assert mcmc.get_samples(group_by_chain=True)["x0"].shape == (4, 5)
    traced = len(start_traces)
    with compilations() as again:  # what MCMC.run does at its next start: init with 4 new keys
        mcmc.sampler.init(jax.random.split(jax.random.PRNGKey(1), 4), 5, None, (), {})
    assert _ppinv_programs(again) == {}
    assert len(start_traces) == traced


def test_nuts_start_up_once_for_sequential_and_once_for_vectorized_chains():
    """What MCMC asks of InverseNUTS: one init per sequential chain, or one for all vectorized chains."""
    kernel = InverseNUTS(bilinear.conditioned())
    with compilations() as counts:
        for key in range(2):
            kernel.init(jax.random.PRNGKey(key), 5, None, (), {})
        for key in range(2):
            kernel.init(jax.random.split(jax.random.PRNGKey(key), 4), 5, None, (), {})
    assert _ppinv_programs(counts) == {"jit(ppinv_start_one)": 1, "jit(ppinv_start)": 1}, counts


def test_mh_kernel_shares_the_compiled_start_up():
    """InverseMH has the same start-up: sequential chains (one init per key) compile it once."""
    kernel = InverseMH(bilinear.conditioned())
    with compilations() as counts:
        for key in range(3):
            kernel.init(jax.random.PRNGKey(key), 5, None, (), {})
    assert _ppinv_programs(counts) == {"jit(ppinv_start_one)": 1}, counts


def test_postprocess_is_one_program():
    """MCMC applies the post-processing (θ → latents) eagerly to the first state: one program, once."""
    cm = bilinear.conditioned()
    kernel = InverseNUTS(cm)
    state = kernel.init(jax.random.PRNGKey(0), 5, None, (), {})
    with compilations() as counts:
        out = kernel.postprocess_fn((), {})(state.z)
        kernel.postprocess_fn((), {})(state.z)
    assert dict(counts) == {"jit(ppinv_postprocess)": 1}, counts
    np.testing.assert_allclose(out["x0"] + out["x1"] * out["x2"], 1.0, atol=1e-12)


def linear_with_argument(c):
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.deterministic("y", x[0] + x[1] * c)


def test_new_data_of_the_same_shape_reuses_the_programs():
    """Model arguments are traced: new values of the same shapes compile nothing new."""
    kernel = InverseNUTS(ppinv.condition(linear_with_argument, {"y": 1.0}))
    kernel.init(jax.random.PRNGKey(0), 5, None, (jnp.asarray(2.0),), {})
    with compilations() as counts:
        state = kernel.init(jax.random.PRNGKey(1), 5, None, (jnp.asarray(3.0),), {})
        x = kernel.postprocess_fn((jnp.asarray(3.0),), {})(state.z)["x"]
    assert _ppinv_programs(counts) == {"jit(ppinv_postprocess)": 1}, counts
    np.testing.assert_allclose(x[0] + 3.0 * x[1], 1.0, atol=1e-12)


def _start_program_hlo(init_tries):
    kernel = InverseNUTS(bilinear.conditioned(), init_tries=init_tries)
    margs = ModelArgs((), {})
    progs = kernel._programs_for(10, margs)
    return progs.start_one.lower(jax.random.PRNGKey(0), 0, margs.dynamic).as_text()


def test_start_up_program_does_not_grow_with_the_number_of_tries():
    """The tries run in a loop: 4 or 512 tries give the same program but for a constant."""
    small, large = _start_program_hlo(4), _start_program_hlo(512)
    assert len(small.splitlines()) == len(large.splitlines())
    digits = re.compile(r"\d+")  # the number of tries appears in shapes and loop bounds only
    assert digits.sub("N", small) == digits.sub("N", large)


def _inner_jaxprs(param):
    if isinstance(param, (tuple, list)):
        for p in param:
            yield from _inner_jaxprs(p)
    elif hasattr(param, "eqns"):
        yield param
    elif hasattr(getattr(param, "jaxpr", None), "eqns"):
        yield param.jaxpr


def _count_primitives(jaxpr, names):
    """Equations of the given primitives in ``jaxpr`` and every jaxpr nested in it."""
    total = 0
    for eqn in jaxpr.eqns:
        total += eqn.primitive.name in names
        for p in eqn.params.values():
            for inner in _inner_jaxprs(p):
                total += _count_primitives(inner, names)
    return total


def _key_passes_through(kernel, state):
    """Whether one step returns the state's key unchanged (read off the step's jaxpr)."""
    closed = jax.make_jaxpr(lambda st: kernel.step(st, (), {}))(state)
    leaves = jax.tree_util.tree_leaves(state)
    i = next(j for j, leaf in enumerate(leaves) if leaf is state.rng_key)
    return closed.jaxpr.outvars[i] is closed.jaxpr.invars[i]


RANDOM = {"random_split", "random_bits", "random_fold_in", "threefry2x32"}


def test_no_key_split_per_step_without_discrete_theta_or_jumps():
    """ppinv adds no PRNG work to NUTS's step when there is nothing of its own to draw."""
    kernel = InverseNUTS(bilinear.conditioned())
    state = kernel.init(jax.random.PRNGKey(0), 5, None, (), {})
    assert _key_passes_through(kernel, state)
    core = kernel._current.core["sample_kernel"]
    ours = jax.make_jaxpr(lambda s: kernel.step(s, (), {}))(state).jaxpr
    theirs = jax.make_jaxpr(lambda h: core(h, model_args=(state.discrete, (), {}), model_kwargs={}))(
        state.hmc_state).jaxpr
    assert _count_primitives(ours, RANDOM) == _count_primitives(theirs, RANDOM) > 0


def test_discrete_theta_and_jumps_still_draw_their_own_keys():
    def model():
        x = numpyro.sample("x", dist.Normal(0.3, 1.0))
        numpyro.deterministic("y", x * x)

    kernel = InverseNUTS(ppinv.condition(model, {"y": 1.0}))
    assert not _key_passes_through(kernel, kernel.init(jax.random.PRNGKey(0), 5, None, (), {}))
    jumps = InverseNUTS(bilinear.conditioned(), jump_every=3)
    assert not _key_passes_through(jumps, jumps.init(jax.random.PRNGKey(0), 5, None, (), {}))



def _step_draws(kernel, state):
    """Key splits and random draws in one step's jaxpr."""
    jaxpr = jax.make_jaxpr(lambda s: kernel.step(s, (), {}))(state).jaxpr
    return {name: _count_primitives(jaxpr, {name}) for name in ("random_split", "random_bits")}


def test_mh_splits_its_key_once_per_step():
    """InverseMH: one split per step, the random walk's noise over all sites one draw, no key for a part
    that draws nothing; with jumps, the jump adds its per-site keys (one split) and its draws."""
    walk = InverseMH(bilinear.conditioned(), jump_prob=0.0)
    assert _step_draws(walk, walk.init(jax.random.PRNGKey(0), 5, None, (), {})) == {
        "random_split": 1, "random_bits": 2}  # the walk's noise and its acceptance
    jumps = InverseMH(bilinear.conditioned(), jump_prob=0.2)
    n_theta = len(jumps.setup(5).theta_refs)  # x1, x2
    assert _step_draws(jumps, jumps.init(jax.random.PRNGKey(0), 5, None, (), {})) == {
        "random_split": 2, "random_bits": 2 + 1 + n_theta + 1}  # + whether to jump, θ's proposals, acceptance


def lognormal_product():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("y", a * b)


def test_mh_random_walk_samples_the_closed_form_posterior():
    """a, b ~ LogNormal(0, 1), a·b = y observed: log a | y ~ N(log y / 2, 1/2) (the random walk and the jumps)."""
    y = 2.0
    s = run_mcmc(InverseMH(ppinv.condition(lognormal_product, {"y": y})), num_warmup=500, num_samples=3000).get_samples()
    np.testing.assert_allclose(s["a"] * s["b"], y, rtol=1e-12)
    log_a = np.log(np.asarray(s["a"]))
    assert_mean(log_a, np.log(y) / 2, sd=np.sqrt(0.5))
    assert_var(log_a, 0.5)

@pytest.mark.slow
def test_startup_experiment_quick(tmp_path):
    """experiments/startup.py at tiny sizes: a cold process fills the cache, the next one reads every program."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "startup.py"
    spec = importlib.util.spec_from_file_location("ppinv_experiments_startup", path)
    startup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup)
    result = startup.main(["--quick", "--methods", "ppinv", "--modes", "fill,warm", "--warmup", "5", "--samples", "5",
                           "--out", str(tmp_path)])
    for name in ("startup_quick.csv", "startup_quick.md", "startup_quick.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    by = {r["mode"]: r for r in result["runs"]}
    assert by["fill"]["cache_hits"] < by["fill"]["programs"]
    assert by["warm"]["cache_hits"] == by["warm"]["programs"] > 0
    assert by["warm"]["violation"] <= 1e-9


# -- many data sets through one MCMC object ---------------------------------------------------------
def bilinear_observed_at(y_obs):
    """The benchmark model with its observation a model argument: ``Delta(x0 + x1·x2)`` observed at ``y_obs``."""
    x0 = numpyro.sample("x0", dist.Normal(0.0, 1.0))
    x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
    x2 = numpyro.sample("x2", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Delta(x0 + x1 * x2), obs=y_obs)


def test_new_observations_as_a_model_argument_compile_nothing_on_later_runs():
    """Simulation-based calibration's pattern: one MCMC, ``jit_model_args=True``, the observation an argument.

    The second and third runs, on new observations of the same shape, compile no program at
    all (ppinv's start-up and post-processing, NumPyro's step), and their samples satisfy
    the new observation exactly. Without a progress bar ppinv still compiles nothing, but
    NumPyro (≤ 0.22) re-jits its loop at every run: its ``fori_collect`` wraps the step in a
    fresh ``jit`` per run, a static argument of the loop's ``jit`` (fixed upstream in
    pyro-ppl/numpyro#2171); a hand-written model does the same.
    """
    mcmc = MCMC(_short_hmc(ppinv.condition(bilinear_observed_at)), num_warmup=5, num_samples=5,
                jit_model_args=True)
    per_run = []
    for i, (y, progress_bar) in enumerate([(1.0, True), (2.5, True), (-0.5, True), (0.3, False)]):
        mcmc.progress_bar = progress_bar  # set after MCMC(): it turns the bar off where CI or PYTEST_XDIST_WORKER is set
        with compilations() as counts:
            mcmc.run(jax.random.PRNGKey(i), jnp.asarray(y))
        s = mcmc.get_samples()
        np.testing.assert_allclose(s["x0"] + s["x1"] * s["x2"], y, atol=1e-12)  # each run's own observation
        per_run.append(dict(counts))
    first, second, third, without_bar = per_run
    assert {"jit(ppinv_start_one)", "jit(ppinv_postprocess)"} <= set(first), first
    assert second == {} and third == {}, (second, third)
    assert set(without_bar) <= {"jit(_fori_collect_loop)"}, without_bar


def test_kernels_refuse_handlers_around_a_conditioned_model_with_the_recipe():
    """``handlers.condition(cm, {"y": new})`` given to a ppinv kernel: the error names the handler and the recipe."""
    from numpyro import handlers

    from ppinv.errors import ConditionError

    cm = bilinear.conditioned()
    with pytest.raises(ConditionError, match=r"handlers \(condition\).*model argument.*jit_model_args"):
        InverseNUTS(handlers.condition(cm, {"y": 2.0}))
