"""``pmap`` / ``shard_map`` over one device is a call: its body sees the whole arrays (``ir/importer.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

import ppinv
from ppinv.testing import check_inverse


def pmapped(x):
    return jax.pmap(lambda v: jnp.exp(v) + 2.0 * v)(x)


def shard_mapped(x):
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("i",))
    body = jax.shard_map(lambda v: jnp.sinh(v) * 3.0, mesh=mesh, in_specs=PartitionSpec("i"),
                         out_specs=PartitionSpec("i"))
    return body(x)


@pytest.mark.parametrize("f, arg", [(pmapped, jnp.asarray([0.4])), (shard_mapped, jnp.asarray([0.4, -1.0, 2.0]))])
def test_a_map_over_one_device_is_inverted_exactly(f, arg):
    inv = ppinv.inverse(f, arg)
    report = check_inverse(f, arg, inv=inv, n_points=2, rtol=1e-8, log_det_atol=1e-8, dense_points=1,
                           grad_points=1)
    assert report.n_in_domain > 0
    assert inv.n_theta == 0


def test_a_map_with_a_collective_is_refused_naming_it():
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("i",))

    def f(x):
        return jax.shard_map(lambda v: jnp.exp(v) + jax.lax.psum(v, "i"), mesh=mesh, in_specs=PartitionSpec("i"),
                             out_specs=PartitionSpec("i"))(x)

    with pytest.raises(ppinv.InversionError, match="shard_map"):
        ppinv.inverse(f, jnp.ones(2))
