"""What the structural rules share: a log|det| known to be zero, and the exception with which a
placement or an entry-by-entry split declines."""

from __future__ import annotations


def _zero(z):
    return 0.0  # a log|det| known to be zero: the schedule drops it


class _Decline(Exception):
    pass
