"""``scan`` (and ``fori_loop``) inverted by scheduling its body once and running that schedule in a
``lax.scan`` of its own, forwards or backwards; per-step θ stacked along the scan axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ..._compat import SCAN_P, Literal, scan_counts
from ...errors import InversionError, OverdeterminedError
from ...graph import ancestors
from ...theta import ThetaSpec
from ..table import DEFAULT_RULES
from .._base import Solution, Solver
from .bodies import _scan_body


def _stack_spec(spec, length):
    return ThetaSpec((length,) + tuple(spec.shape), spec.dtype, spec.support, spec.kind, spec.origin)


def _observable(v, known_inputs, seen):
    return v.is_float and not v.is_const and v not in known_inputs and v not in seen


# --- scan ------------------------------------------------------------------------------------
class _ScanSolver(Solver):
    def __init__(self, pat, mode):
        from ...schedule import build_schedule

        eqn = pat.eqn
        params = eqn.params
        self.length = int(params["length"])
        self.orig_reverse = bool(params["reverse"])
        nc, nk = scan_counts(params)
        self.nc, self.nk = nc, nk
        body, self.x_slots = _scan_body(eqn, pat.table)
        self.body = body
        self.x_first = _first_positions(self.x_slots)  # one xs position per distinct array
        b_consts, b_carry, b_xs = body.invars[:nc], body.invars[nc : nc + nk], body.invars[nc + nk :]
        b_cout, b_ys = body.outvars[:nk], body.outvars[nk:]
        kin, kout = pat.known_in, pat.known_out
        self.kx = kx = tuple(kin[nc + nk + i] for i in self.x_first)
        self.ky = ky = kout[nk:]
        self.kfinal = kout[:nk]
        self.mode = mode
        if mode == "forward":
            self.kfwd = tuple(range(nk))
        else:
            self.kfwd = _known_forward(body, nc, nk, kin[nc : nc + nk], kx)
        kfwd = set(self.kfwd)
        known = list(b_consts) + [b_carry[j] for j in self.kfwd] + [x for x, k in zip(b_xs, kx) if k]
        unknown = [b_carry[j] for j in range(nk) if j not in kfwd] + [x for x, k in zip(b_xs, kx) if not k]
        known_set = set(known)
        observed, seen = [], set()
        self.obs_carry = []  # carry components solved backwards (observed at each step)
        if mode == "backward":
            for j in range(nk):
                if j in kfwd:
                    continue
                v = b_cout[j]
                if not _observable(v, known_set, seen):
                    raise InversionError(
                        f"cannot run the loop at {eqn.source} backwards: carry component {j} "
                        f"({v!r}) is {'discrete' if not v.is_float else 'passed through unchanged'}; "
                        "only continuous carries computed in the body can be solved step by step."
                    )
                observed.append(v)
                seen.add(v)
                self.obs_carry.append(j)
        self.obs_ys, self.check_ys = [], []
        for j, (v, k) in enumerate(zip(b_ys, ky)):
            if not k:
                continue
            if _observable(v, known_set, seen):
                observed.append(v)
                seen.add(v)
                self.obs_ys.append(j)
            elif not v.is_float or v.is_const:
                self.check_ys.append(j)
            else:  # a continuous y equal to a known value: over-determined
                raise OverdeterminedError(
                    f"loop at {eqn.source}: observed output {j} of each step equals a value already "
                    "known at that step, so observing it over-determines the loop."
                )
        extra = [b_cout[j] for j in range(nk)] + list(b_ys)
        self.sub = build_schedule(body, known, unknown, observed, {}, pat.table, {}, extra)
        if mode == "backward" and self.kfwd:
            pre_known = list(b_consts) + [b_carry[j] for j in self.kfwd] + [x for x, k in zip(b_xs, kx) if k]
            self.pre = build_schedule(body, pre_known, [], [], {}, pat.table, {}, [b_cout[j] for j in self.kfwd])
        else:
            self.pre = None
        self.theta_names = list(self.sub.theta)
        # When every step's carry out is determined by that step's observed outputs alone (a
        # simulator whose whole trajectory is observed), the carries in are known data and the
        # steps are independent: the inverse runs them all at once (vmap), not in sequence.
        self.parallel = mode == "forward" and nk > 0 and self._carry_out_ignores_carry_in(body, b_xs, b_ys)
        self.theta_names = list(self.sub.theta)
        self.theta = tuple(_stack_spec(s, self.length) for s in self.sub.theta.values())
        self.theta_hints = tuple(f"scan_{n}" for n in self.theta_names)
        how = "forwards" if mode == "forward" else "backwards"
        if self.parallel:
            how = "on all steps at once (every step's carry is fixed by the observations)"
        self.description = f"invert the loop body once; run it {how} over {self.length} steps"

    # -- helpers -------------------------------------------------------------------------------
    def _split_ins(self, ins):
        """Consts, initial carry and the distinct scanned arrays; the carry in the body's dtypes
        (a loop's carry keeps its type, whatever type the value it starts from was given)."""
        nc, nk = self.nc, self.nk
        carry = _typed(ins[nc : nc + nk], self.body.invars[nc : nc + nk])
        return ins[:nc], carry, [ins[nc + nk + i] for i in self.x_first]

    def solve(self, ins, outs, theta):
        from ...schedule import run_schedule_extra

        consts, init, xs = self._split_ins(ins)
        nk = self.nk
        xs_known = [x for x, k in zip(xs, self.kx) if k]
        ys_known = [y for y, k in zip(outs[nk:], self.ky) if k]
        kfwd = self.kfwd
        # 1. carries that depend on known values only: a forward pre-pass
        if self.mode == "backward" and self.pre is not None:
            def pre_body(carry, xk):
                _, _, _, extra = run_schedule_extra(self.pre, list(consts) + list(carry) + list(xk), [], {})
                return tuple(extra), tuple(carry)

            fwd_final, fwd_stacked = lax.scan(
                pre_body, tuple(init[j] for j in kfwd), tuple(xs_known), length=self.length, reverse=self.orig_reverse
            )
        else:
            fwd_final, fwd_stacked = (), ()
        obs_carry = self.obs_carry

        def step(carry, per_step):
            xk, yk, fk, th = per_step
            if self.mode == "forward":
                known = list(consts) + list(carry) + list(xk)
                observed = [yk[self.ky_index(j)] for j in self.obs_ys]
            else:
                known = list(consts) + list(fk) + list(xk)
                observed = list(carry) + [yk[self.ky_index(j)] for j in self.obs_ys]
            solved, ld, ok, extra = run_schedule_extra(self.sub, known, observed, dict(zip(self.theta_names, th)))
            couts, ys_all = extra[:nk], extra[nk:]
            for j in self.check_ys:
                ok = jnp.logical_and(ok, jnp.all(ys_all[j] == yk[self.ky_index(j)]))
            if self.mode == "forward":
                new_carry = tuple(couts)
                xs_u = solved
            else:
                n_c = len(obs_carry)
                new_carry = tuple(solved[:n_c])
                xs_u = solved[n_c:]
            ys_u = [ys_all[j] for j in range(len(ys_all)) if not self.ky[j]]
            return new_carry, (tuple(xs_u), tuple(ys_u), ld, ok)

        if self.parallel:
            return self._solve_parallel(ins, outs, init, xs_known, ys_known, theta, step)
        if self.mode == "forward":
            carry0 = tuple(init)
            reverse = self.orig_reverse
        else:
            carry0 = _typed([outs[j] for j in obs_carry], [self.body.invars[self.nc + j] for j in obs_carry])
            reverse = not self.orig_reverse
        per_step = (tuple(xs_known), tuple(ys_known), tuple(fwd_stacked), tuple(theta))
        final, (xs_u, ys_u, lds, oks) = lax.scan(step, carry0, per_step, length=self.length, reverse=reverse)
        new_ins, new_outs = self._with_solved(ins, outs, xs_u, ys_u)
        if self.mode == "forward":
            for j in range(nk):
                new_outs[j] = final[j]
        else:
            for j, val in zip(obs_carry, final):
                new_ins[self.nc + j] = val
            for j, val in zip(kfwd, fwd_final):
                new_outs[j] = val
        return Solution(new_ins, new_outs, jnp.sum(lds), jnp.all(oks))

    def _with_solved(self, ins, outs, xs_u, ys_u):
        """The scan's places with the solved per-step inputs and outputs filled in."""
        new_ins, new_outs = list(ins), list(outs)
        unknown_x = [j for j, k in enumerate(self.kx) if not k]
        for j, val in zip(unknown_x, xs_u):
            for i, slot in enumerate(self.x_slots):  # every position scanning that array
                if slot == j:
                    new_ins[self.nc + self.nk + i] = val
        unknown_y = [j for j, k in enumerate(self.ky) if not k]
        for j, val in zip(unknown_y, ys_u):
            new_outs[self.nk + j] = val
        return new_ins, new_outs

    def _carry_out_ignores_carry_in(self, body, b_xs, b_ys):
        """Whether the inverted step's carry out does not depend on its carry in (traced once)."""
        from ...schedule import run_schedule_extra

        nc, nk = self.nc, self.nk

        def carry_out(consts, carry, xk, yk, th):
            known = list(consts) + list(carry) + list(xk)
            observed = [yk[self.ky_index(j)] for j in self.obs_ys]
            extra = run_schedule_extra(self.sub, known, observed, dict(zip(self.theta_names, th)))[3]
            return extra[:nk]

        def aval(v):
            return jax.ShapeDtypeStruct(v.shape, v.dtype)

        args = (
            [aval(v) for v in body.invars[:nc]],
            [aval(v) for v in body.invars[nc : nc + nk]],
            [aval(x) for x, k in zip(b_xs, self.kx) if k],
            [aval(y) for y, k in zip(b_ys, self.ky) if k],
            [jax.ShapeDtypeStruct(s.shape, s.dtype) for s in self.sub.theta.values()],
        )
        try:
            closed = jax.make_jaxpr(carry_out)(*args)
        except Exception:  # pragma: no cover - keep the sequential inverse
            return False
        jaxpr = closed.jaxpr
        tainted = set(jaxpr.invars[nc : nc + nk])
        for e in jaxpr.eqns:  # nested jaxprs count as depending on all their inputs
            if any(not isinstance(a, Literal) and a in tainted for a in e.invars):
                tainted.update(e.outvars)
        return not any(not isinstance(a, Literal) and a in tainted for a in jaxpr.outvars)

    def _solve_parallel(self, ins, outs, init, xs_known, ys_known, theta, step):
        """Forward mode with carries fixed by the observations: all steps at once."""
        nk = self.nk
        per_step = (tuple(xs_known), tuple(ys_known), (), tuple(theta))
        # pass 1: every step's carry out (independent of the carry in, so any value will do)
        dummy = tuple(jnp.zeros((self.length,) + jnp.shape(c), jnp.result_type(c)) for c in init)
        couts = jax.vmap(step)(dummy, per_step)[0]
        carries_in, finals = [], []
        for c0, co in zip(init, couts):
            first = jnp.expand_dims(jnp.asarray(c0, co.dtype), 0)
            if self.orig_reverse:  # steps run from the end: step t's carry comes from step t + 1
                carries_in.append(jnp.concatenate([co[1:], first]))
                finals.append(co[0])
            else:
                carries_in.append(jnp.concatenate([first, co[:-1]]))
                finals.append(co[-1])
        # pass 2: the steps with their true carries in
        _, (xs_u, ys_u, lds, oks) = jax.vmap(step)(tuple(carries_in), per_step)
        new_ins, new_outs = self._with_solved(ins, outs, xs_u, ys_u)
        for j in range(nk):
            new_outs[j] = finals[j]
        return Solution(new_ins, new_outs, jnp.sum(lds), jnp.all(oks))

    def ky_index(self, j):
        """Position of ys[j] among the known ys."""
        return sum(1 for i in range(j) if self.ky[i])

    def pgf(self, ins, outs):
        from ...schedule import theta_from_env

        if not self.theta_names:
            return ()
        consts, init, xs = self._split_ins(ins)
        body = self.body

        def step(carry, x_t):
            _, env = body.evaluate(*consts, *carry, *x_t, record=True)
            th = theta_from_env(self.sub, env)
            couts = [v.value if v.is_const else env[v] for v in body.outvars[: self.nk]]
            return tuple(couts), tuple(th[n] for n in self.theta_names)

        _, stacked = lax.scan(step, tuple(init), tuple(xs), length=self.length, reverse=self.orig_reverse)
        return stacked


def _known_forward(body, nc, nk, known_init, kx):
    """Carry components computable forwards from known values alone (a loop counter)."""
    b_consts, b_carry, b_xs = body.invars[:nc], body.invars[nc : nc + nk], body.invars[nc + nk :]
    b_cout = body.outvars[:nk]
    fwd = {j for j in range(nk) if known_init[j]}
    known_base = set(b_consts) | {x for x, k in zip(b_xs, kx) if k}
    deps = [ancestors(body, [b_cout[j]]) for j in range(nk)]
    changed = True
    while changed:
        changed = False
        allowed = known_base | {b_carry[j] for j in fwd}
        for j in list(fwd):
            if not deps[j] <= allowed:
                fwd.discard(j)
                changed = True
    return tuple(sorted(fwd))


def _typed(values, variables):
    """``values`` in the dtypes of ``variables`` (``None``, a place not known yet, stays)."""
    return tuple(x if x is None else jnp.asarray(x, v.dtype) for x, v in zip(values, variables))


def _first_positions(slots):
    return [slots.index(j) for j in range(max(slots, default=-1) + 1)]


def _shared_unknown(pat, nc, nk):
    """An unknown variable the loop takes at two places that are not both scanned arrays
    (``(a, a)`` as the initial carry), or ``None``. Solved step by step, the two places would
    be solved separately and could disagree."""
    places = {}
    for i, (v, k) in enumerate(zip(pat.eqn.ins, pat.known_in)):
        if not k and not v.is_const:
            places.setdefault(v, []).append(i)
    for v, where in places.items():
        if len(where) > 1 and any(i < nc + nk for i in where):
            return v
    return None


def _scan_rule(pat):
    eqn = pat.eqn
    nc, nk = scan_counts(eqn.params)
    if not all(pat.known_in[:nc]):
        return None
    init_known = pat.known_in[nc : nc + nk]
    final_known = pat.known_out[:nk]
    ys_known = pat.known_out[nk:]
    x_unknown = not all(pat.known_in[nc + nk :])
    if all(init_known) and not any(final_known):
        if not (x_unknown and any(ys_known)):
            return None
        return _ScanSolver(pat, "forward")
    body, x_slots = _scan_body(eqn, pat.table)
    kx = [pat.known_in[nc + nk + i] for i in _first_positions(x_slots)]
    kfwd = set(_known_forward(body, nc, nk, init_known, kx))
    if all(final_known[j] or j in kfwd for j in range(nk)) and not all(init_known):
        if any(final_known[j] and j in kfwd for j in range(nk)):
            return None
        shared = _shared_unknown(pat, nc, nk)
        if shared is not None:
            if not pat.allow_theta:
                return None  # it may become known later; refuse only when the scheduler is stuck
            raise InversionError(
                f"the loop at {eqn.source} takes the unknown {shared!r} at several places (as more than "
                "one component of its initial carry, or as a carry and a scanned array); run backwards, "
                "the loop would solve those places separately and they could disagree. Pass the value "
                "once (close over it, or carry it once), or declare the inverse with @ppinv.custom_inverse."
            )
        return _ScanSolver(pat, "backward")
    return None


DEFAULT_RULES.register(SCAN_P, _scan_rule)
