"""Specs for ops/data_flow_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops

_WITH_COMPLEX = ("float64", "float32", "complex128")


def _partition(partitions, sizes):
  """DynamicPartition of x, each part reshaped to its known static size."""
  def build(x):
    parts = tf.dynamic_partition(x, partitions, len(sizes))
    return [tf.reshape(p, s) for p, s in zip(parts, sizes)]
  return build


def _gathered_stitch(a, b):
  """A gather after the stitch: the stitch's gradient is IndexedSlices."""
  stitched = tf.dynamic_stitch([[0, 2], [1, 3]], [a, b])
  return tf.gather(stitched, [3, 0, 3])


SPECS = [
    Spec("DynamicPartition", _partition([0, 1, 0, 1], [(2,), (2,)]), [(4,)],
         "vector", dtypes=_WITH_COMPLEX),
    Spec("DynamicPartition", _partition([1, 0, 1], [(1, 2), (2, 2)]),
         [(3, 2)], "rows"),
    Spec("DynamicPartition",
         _partition([[0, 2], [2, 2]], [(1,), (0,), (3,)]), [(2, 2)],
         "matrix_partitions_empty_part"),
    Spec("DynamicStitch",
         lambda a, b: tf.dynamic_stitch([[0, 2], [1, 3]], [a, b]),
         [(2,), (2,)], "vector", dtypes=_WITH_COMPLEX),
    Spec("DynamicStitch",
         lambda a, b: tf.dynamic_stitch([[2], [0, 1]], [a, b]),
         [(1, 3), (2, 3)], "rows"),
    Spec("DynamicStitch", _gathered_stitch, [(2,), (2,)], "indexed_slices"),
    Spec("ParallelDynamicStitch",
         lambda a, b: raw.ParallelDynamicStitch(indices=[[1], [0, 2]],
                                                data=[a, b]),
         [(1, 2), (2, 2)]),
]
