"""Specs for ops/state_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops

_WITH_COMPLEX = ("float64", "float32", "complex128")


def _scatter(fn, indices):
  return lambda x, u: fn(x, tf.constant(indices), u)


def _scatter_specs(op_type, fn, domain="real", dtypes=_WITH_COMPLEX):
  return [
      Spec(op_type, _scatter(fn, [[1], [3]]), [(4,), (2,)], "vector",
           domain=domain, dtypes=dtypes),
      Spec(op_type, _scatter(fn, [[2], [0]]), [(3, 2), (2, 2)], "rows",
           domain=domain),
      Spec(op_type, _scatter(fn, [[0, 1], [1, 2]]), [(2, 3), (2,)],
           "elements", domain=domain),
  ]


def _slice_update(begin, end, strides, **masks):
  return lambda x, v: raw.TensorStridedSliceUpdate(
      input=x, begin=begin, end=end, strides=strides, value=v, **masks)


SPECS = [
    *_scatter_specs("TensorScatterUpdate", tf.tensor_scatter_nd_update),
    *_scatter_specs("TensorScatterAdd", tf.tensor_scatter_nd_add),
    Spec("TensorScatterAdd", _scatter(tf.tensor_scatter_nd_add, [[1], [1]]),
         [(3,), (2,)], "repeated_index"),
    *_scatter_specs("TensorScatterSub", tf.tensor_scatter_nd_sub),
    *_scatter_specs("TensorScatterMax", tf.tensor_scatter_nd_max, "distinct",
                    ("float64", "float32")),
    *_scatter_specs("TensorScatterMin", tf.tensor_scatter_nd_min, "distinct",
                    ("float64", "float32")),
    Spec("TensorStridedSliceUpdate", _slice_update([0, 1], [2, 3], [1, 1]),
         [(3, 4), (2, 2)], "block", dtypes=_WITH_COMPLEX),
    Spec("TensorStridedSliceUpdate", _slice_update([0], [4], [2]),
         [(4,), (2,)], "strided"),
    Spec("TensorStridedSliceUpdate",
         _slice_update([1, 0], [2, 0], [1, 1], shrink_axis_mask=1,
                       end_mask=2), [(3, 4), (4,)], "row_shrink"),
    Spec("TensorStridedSliceUpdate", _slice_update([0, 1], [3, 3], [1, 1]),
         [(3, 4), (1, 2)], "broadcast_value"),
]
