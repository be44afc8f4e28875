"""The dispatch table of ``compare.py``: which methods run on which model, with the hand-written
baselines and the notes each model needs (:data:`SPECS`, :func:`methods_for`)."""

from __future__ import annotations

import models
from experiments.baselines import (
    hand_bilinear,
    hand_enzyme_assay,
    hand_isotope_mixing,
    hand_lotka_volterra,
    hand_product_lognormal,
)
from models import INVERTIBLE_MODELS, bilinear

EPSILONS = (0.1, 0.01, 0.001)
SOFT = tuple(f"soft_{e:g}" for e in EPSILONS)
ALL_METHODS = ("ppinv", "ppinv_jump", "ppinv_mh", *SOFT, "hand", "mici", "abc")
MODULES = {**INVERTIBLE_MODELS, "bilinear": bilinear}

# =====================================================================================
# models: what to compare and against what (the dispatch table)
# =====================================================================================
SPECS = {
    # name: extra ppinv variants, hand-written model, mici, abc, valid-start source, notes
    "product_lognormal": dict(extra=(), hand=hand_product_lognormal, hand_init=lambda lat: {"a": lat["a"]},
                              mici=True, abc=True),
    "linear_gaussian": dict(extra=()),
    "gamma_sum": dict(extra=()),
    "arithmetic_tree": dict(extra=()),
    "arm": dict(extra=(), soft_model=lambda: models.arm.make_direct_model(3)),
    "logistic_map": dict(extra=("ppinv_jump", "ppinv_mh"), ref_kernel="mh"),
    "lotka_volterra": dict(extra=(), hand=hand_lotka_volterra, hand_init=lambda lat: {"u_z": lat["u_z"]}, mici=True,
                           soft_slow=True),
    "network_tomography": dict(extra=(), soft=("soft_0.01",), fixed_start=True, soft_slow=True),
    "manifold_toy": dict(extra=("ppinv_jump", "ppinv_mh")),
    "sine": dict(extra=("ppinv_mh",), no_nuts=True),
    "kepler": dict(extra=()),
    "enzyme_assay": dict(extra=(), hand=hand_enzyme_assay,
                         hand_init=lambda lat: {"Vmax": lat["Vmax"], "Km": lat["Km"]}),
    "isotope_mixing": dict(extra=(), hand=hand_isotope_mixing, hand_init=lambda lat: {"source": lat["source"]}),
    "village_totals": dict(extra=()),
    "stick_breaking_abundance": dict(extra=()),
    "binding_equilibrium": dict(extra=()),
    "vote_shares": dict(extra=()),
    "drifter_currents": dict(extra=()),
    "bilinear": dict(extra=(), hand=hand_bilinear, hand_init=lambda lat: {"x1": lat["x1"], "x2": lat["x2"]}, mici=True,
                     abc=True),
}


def methods_for(name):
    spec = SPECS[name]
    out = [] if spec.get("no_nuts") else ["ppinv"]
    out += list(spec["extra"])
    out += list(spec.get("soft", SOFT))
    if spec.get("hand"):
        out.append("hand")
    if spec.get("mici"):
        out.append("mici")
    if spec.get("abc"):
        out.append("abc")
    return out
