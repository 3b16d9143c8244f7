"""Specs for ops/xla_grad.py rules.

XlaSharding has a CPU kernel (an identity) and gets both checks; the other
ops only compile under XLA, so their specs compare the gradient graph's
structure with stock TF without running it. XlaClusterOutput's rule only
raises: test_xla_grad.py checks it.
"""

import tensorflow as tf
from tensorflow.compiler.tf2xla.ops import gen_xla_ops
from tensorflow.compiler.xla import xla_data_pb2

from compat_tests.spec import Spec

_NOTE = "XLA-only op without a CPU kernel: graph structure compared only"
_C = ("float64", "float32", "complex128")
_EINSUM_DTYPES = ("float32", "complex64")  # all XlaEinsum allows (and bf16)


def _tiled(*tiles):
  """A serialized OpSharding splitting each dimension into `tiles` parts."""
  devices = 1
  for t in tiles:
    devices *= t
  return xla_data_pb2.OpSharding(
      type=xla_data_pb2.OpSharding.OTHER,
      tile_assignment_dimensions=list(tiles),
      tile_assignment_devices=list(range(devices))).SerializeToString()


_REPLICATED = xla_data_pb2.OpSharding(
    type=xla_data_pb2.OpSharding.REPLICATED).SerializeToString()
SHARDING = _tiled(2, 1)


def sharding(spec, unspecified_dims=()):
  return lambda x: gen_xla_ops.xla_sharding(
      x, sharding=spec, unspecified_dims=list(unspecified_dims))


def _full_to_shard(x):
  return gen_xla_ops.xla_spmd_full_to_shard_shape(
      x, manual_sharding=SHARDING, dim=-1, unspecified_dims=[])


def _shard_to_full(x):
  return gen_xla_ops.xla_spmd_shard_to_full_shape(
      x, manual_sharding=SHARDING, full_shape=[4, 2], dim=-1,
      unspecified_dims=[])


def _einsum(equation):
  return lambda a, b: gen_xla_ops.xla_einsum(a, b, equation=equation)


SPECS = [
    Spec("XlaSharding", sharding(SHARDING), [(4, 2)], "tiled", dtypes=_C),
    Spec("XlaSharding", sharding(_REPLICATED), [()], "replicated_scalar"),
    Spec("XlaSharding", sharding(_tiled(1, 2), [0]), [(3, 2)],
         "unspecified_dims"),
    Spec("XlaSpmdFullToShardShape", _full_to_shard, [(4, 2)], runs=False,
         order=0, note=_NOTE),
    Spec("XlaSpmdShardToFullShape", _shard_to_full, [(2, 2)], runs=False,
         order=0, note=_NOTE),
    Spec("XlaEinsum", _einsum("ab,bc->ac"), [(2, 3), (3, 4)], "matmul",
         dtypes=_EINSUM_DTYPES, runs=False, order=0, note=_NOTE),
    Spec("XlaEinsum", _einsum("abc,acd->bad"), [(2, 3, 4), (2, 4, 3)],
         "batch_transposed", dtypes=_EINSUM_DTYPES,
         runs=False, order=0, note=_NOTE),
]
