"""Specs for ops/ragged_grad.py rules.

Each builder wraps its float input (the flat values) in a RaggedTensor with
fixed row partitions and ends in a dense output, so the flat values are the
differentiable input.
"""

import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops
_WITH_COMPLEX = ("float64", "float32", "complex128")

# Rows of lengths 2, 0, 3 over five flat values; a ragged-rank-2 tensor of
# two rows holding [[v0, v1], [v2]] and [[v3, v4, v5]].
_SPLITS = [0, 2, 2, 5]
_OUTER, _INNER = [0, 2, 3], [0, 2, 3, 6]


def _rows(values):
  return tf.RaggedTensor.from_row_splits(values, tf.constant(_SPLITS, tf.int64))


def _nested(values):
  return tf.RaggedTensor.from_nested_row_splits(
      values, [tf.constant(_OUTER, tf.int64), tf.constant(_INNER, tf.int64)])


def _shaped(shape, build):
  """`build` with its (dynamically shaped) output given a static `shape`."""
  def shaped(*xs):
    y = build(*xs)
    y.set_shape(shape)
    return y
  return shaped


def _gather(make, indices):
  return lambda values: tf.gather(make(values), indices).flat_values


def _to_tensor(make, **kwargs):
  return lambda values, default: make(values).to_tensor(default, **kwargs)


def _to_sparse(make):
  return lambda values: make(values).to_sparse().values


def _variant_round_trip(make, batched):
  """Encodes the ragged tensor (per row when batched) and decodes it."""
  def build(values):
    rt = make(values)
    encoded = raw.RaggedTensorToVariant(
        rt_nested_splits=rt.nested_row_splits, rt_dense_values=rt.flat_values,
        batched_input=batched)
    rank = rt.ragged_rank
    decoded = raw.RaggedTensorFromVariant(
        encoded_ragged=encoded, input_ragged_rank=rank - 1 if batched else rank,
        output_ragged_rank=rank, Tvalues=values.dtype)
    return decoded.output_dense_values * 1.0
  return build


def _fill_empty_rows(values, default):
  filled = raw.RaggedFillEmptyRows(
      value_rowids=tf.constant([0, 0, 2, 2, 2], tf.int64), values=values,
      nrows=tf.constant(4, tf.int64), default_value=default)
  return filled.output_values



SPECS = [
    Spec("RaggedGather", _shaped([8], _gather(_rows, [2, 0, 2])), [(5,)],
         dtypes=_WITH_COMPLEX),
    Spec("RaggedGather", _shaped([8], _gather(_rows, [[1, 2], [0, 2]])),
         [(5,)], "matrix_indices"),
    Spec("RaggedGather", _shaped([9], _gather(_nested, [1, 0, 1])), [(6,)],
         "ragged_rank2"),
    Spec("RaggedGather", _shaped([5, 2], _gather(_rows, [2, 0])), [(5, 2)],
         "inner_dims"),
    Spec("RaggedTensorToTensor", _shaped([3, 3], _to_tensor(_rows)),
         [(5,), ()], dtypes=_WITH_COMPLEX),
    Spec("RaggedTensorToTensor", _to_tensor(_rows, shape=[2, 2]),
         [(5,), ()], "truncated"),
    Spec("RaggedTensorToTensor", _shaped([2, 2, 3], _to_tensor(_nested)),
         [(6,), ()], "ragged_rank2"),
    Spec("RaggedTensorToTensor", _shaped([3, 3, 2], _to_tensor(_rows)),
         [(5, 2), (2,)], "inner_dims"),
    Spec("RaggedTensorToTensor", _shaped([3, 3, 2], _to_tensor(_rows)),
         [(5, 2), ()], "broadcast_default"),
    Spec("RaggedTensorToTensor", _shaped([3, 3, 2, 3], _to_tensor(_rows)),
         [(5, 2, 3), (1, 3)], "broadcast_default_rows"),
    Spec("RaggedTensorToSparse", _shaped([5], _to_sparse(_rows)), [(5,)],
         dtypes=_WITH_COMPLEX),
    Spec("RaggedTensorToSparse", _shaped([6], _to_sparse(_nested)), [(6,)],
         "ragged_rank2"),
    Spec("RaggedTensorToSparse", _shaped([10], _to_sparse(_rows)), [(5, 2)],
         "inner_dims"),
    Spec("RaggedTensorFromVariant",
         _shaped([5], _variant_round_trip(_rows, False)), [(5,)], "scalar"),
    Spec("RaggedTensorFromVariant",
         _shaped([6], _variant_round_trip(_nested, True)), [(6,)], "batched"),
    Spec("RaggedTensorToVariant",
         _shaped([5, 2], _variant_round_trip(_rows, True)), [(5, 2)],
         "batched"),
    Spec("RaggedTensorToVariant",
         _shaped([6], _variant_round_trip(_nested, False)), [(6,)], "scalar"),
    Spec("RaggedFillEmptyRows", _shaped([7], _fill_empty_rows), [(5,), ()],
         dtypes=_WITH_COMPLEX),
]
