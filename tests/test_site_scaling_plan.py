"""Planning is linear in the number of separate sites (issue 13), counted in work, not seconds.

A sum observed over N scalar Gamma sites frees N − 1 of them one at a time; before each
freeing the strategies are asked and the freeing order consulted. Each of those must
cost O(1) amortised, not a scan of the program: the search's reads of the state, the
freeing keys computed and the linear-relation tests grow like N (4× the sites: at most
5× the work), and the plan is the one the closed form needs (N − 1 sites freed, the last
solved by subtraction).
"""

import numpyro
import numpyro.distributions as dist

import ppinv
import ppinv.joint.linear as linear_strategy
import ppinv.schedule.ranking as ranking
from ppinv.schedule.search import Search

ALPHA = 2.0


def gamma_sum(n):
    def model():
        xs = [numpyro.sample(f"x{i}", dist.Gamma(ALPHA, 1.0)) for i in range(n)]
        numpyro.deterministic("total", sum(xs))

    return model


def _counting(monkeypatch, owner, name, counts):
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        counts[name] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)


def work_of_planning(monkeypatch, n):
    """Calls of the search's state reads, freeing keys and linearity tests while planning n sites."""
    counts = {"is_known": 0, "_free_key": 0, "is_linear": 0}
    with monkeypatch.context() as m:
        _counting(m, Search, "is_known", counts)
        _counting(m, ranking, "_free_key", counts)
        _counting(m, linear_strategy, "is_linear", counts)
        plan = ppinv.condition(gamma_sum(n), {"total": ALPHA * n}).plan()
    return counts, plan


def test_planning_work_grows_linearly_in_the_number_of_sites(monkeypatch):
    small, _ = work_of_planning(monkeypatch, 50)
    large, plan = work_of_planning(monkeypatch, 200)
    for unit in small:
        assert small[unit] > 0, unit
        assert large[unit] <= 5 * small[unit], f"{unit}: {small[unit]} calls at 50 sites, {large[unit]} at 200"
    steps = plan.schedule.steps
    freed = [s for s in steps if type(s).__name__ == "FreeStep"]
    assert len(freed) == 199 and plan.schedule.n_theta == 199
    assert type(steps[-1]).__name__ == "SolveStep"  # the last site from the total, by subtraction


def test_the_sites_are_freed_in_program_order():
    """The freeing order ties on everything but the variable's place: the first sites are freed
    first (the choice the heap must reproduce), the last one is solved. (Above 6 sites, so that
    the θ choice is not measured: ``ppinv.theta_choice``.)"""
    n = 12
    plan = ppinv.condition(gamma_sum(n), {"total": ALPHA * n}).plan()
    freed = [s.name for s in plan.schedule.steps if type(s).__name__ == "FreeStep"]
    assert freed == [f"x{i}" for i in range(n - 1)]
