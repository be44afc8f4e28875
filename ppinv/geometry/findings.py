"""What a geometry report finds: a wall, fold or singular point and how divergences relate to it
(:class:`GeometryFeature`), a discrete θ stuck on one branch (:class:`StuckBranch`), and the
report of both (:class:`GeometryReport`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GeometryFeature:
    """One wall, fold or singular point of the schedule, and how the divergences relate to it.

    ``margin_divergent`` / ``margin_other``: median margin (posterior standard deviations to the
    edge) at the divergent draws and at the others; ``association``: the probability that a
    divergent draw is nearer the edge than a non-divergent one (0.5: unrelated);
    ``concentrated``: divergences concentrate here.
    """

    kind: str
    relation: str
    what: str
    margin_divergent: float
    margin_other: float
    association: float
    n_divergent: int
    concentrated: bool = False

    def __str__(self):
        flag = "divergences concentrate here" if self.concentrated else "not where divergences are"
        return (f"{self.kind} ({self.what}) made by\n      {self.relation}\n      median margin "
                f"{self.margin_divergent:.3g} sd at divergent draws vs {self.margin_other:.3g} sd elsewhere, "
                f"association {self.association:.2f}: {flag}")


@dataclass
class StuckBranch:
    """A discrete θ site that kept one value over a whole chain while other branches have mass."""

    site: str
    chain: int
    value: object
    other_mass: float
    evidence: str

    def __str__(self):
        return (f"discrete θ '{self.site}' stayed at {self.value} over chain {self.chain}; other branches "
                f"hold about {self.other_mass:.1%} of the mass ({self.evidence})")


@dataclass
class GeometryReport:
    """What :func:`geometry_report` found. ``concentrated`` lists the features where the
    divergent transitions concentrate, most associated first."""

    n_draws: int
    n_divergent: int
    features: list = field(default_factory=list)
    stuck: list = field(default_factory=list)

    @property
    def concentrated(self):
        return [f for f in self.features if f.concentrated]

    def __str__(self):
        lines = [f"θ geometry: {self.n_divergent} divergent of {self.n_draws} transitions"]
        if not self.features:
            lines.append("  no walls, folds or singular points in the schedule")
        for f in self.features:
            lines.append(f"  {'*' if f.concentrated else '-'} {f}")
        for s in self.stuck:
            lines.append(f"  ! {s}")
        return "\n".join(lines)
