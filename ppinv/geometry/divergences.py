"""Divergent draws against a feature's margins: whether divergences concentrate at its edge (the
rank statistic of the divergent draws' margins against the others')."""

from __future__ import annotations

import math

import numpy as np

from .findings import GeometryFeature


def _association(m_div, m_other):
    """P(a divergent draw is nearer the edge than another draw), ties counted half (the
    Mann–Whitney statistic), and its z-score against 0.5 (no relation)."""
    n1, n2 = m_div.size, m_other.size
    if n1 == 0 or n2 == 0:
        return 0.5, 0.0
    a, b = m_div[:, None], m_other[None, :]
    auc = float(np.mean((a < b) + 0.5 * (a == b)))
    return auc, (auc - 0.5) / math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))


def _feature(kind, relation, what, margins, diverging, min_divergent, z_min):
    m, d = margins.reshape(-1), diverging.reshape(-1)
    m_div, m_other = m[d], m[~d]
    assoc, z = _association(m_div, m_other)
    med = lambda x: float(np.median(x)) if x.size else math.nan  # noqa: E731
    # A divergent draw is a point of the trajectory that diverged, not the point where it did:
    # divergent draws lie nearer the edge than the others (significantly: the z-score of the
    # rank statistic), and within the posterior's spread of it.
    near = bool(m_div.size) and float(np.median(m_div)) < 1.0
    concentrated = bool(d.sum() >= min_divergent and z >= z_min and near)
    return GeometryFeature(kind, relation, what, med(m_div), med(m_other), assoc, int(d.sum()), concentrated)
