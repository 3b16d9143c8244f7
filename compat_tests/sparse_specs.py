"""Specs for ops/sparse_grad.py rules.

Each sparse operand is built from constant indices and dense shape around
its values, the differentiable input (so a spec's shapes are the values'
shapes). "dynamic" variants hide the constants' values from the rule
(placeholder_with_default), exercising the dynamic-shape paths.

SPECS get both checks. NUMERIC_ONLY_SPECS get only the finite-difference
check: for the types in TF_RAISES, TF's registered rule raises
(NotImplementedError, or a TypeError from its own signature), so there is
nothing to compare with.
"""

import numpy as np
import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops
_WITH_COMPLEX = ("float64", "float32", "complex128")


def _const(value, dynamic=False):
  """An int64 constant; with `dynamic`, its value unknown to the graph."""
  t = tf.constant(np.asarray(value, np.int64))
  if dynamic:
    return tf.compat.v1.placeholder_with_default(t, [None] * t.shape.rank)
  return t


# A 3x4 matrix with five entries (row-major order) for the matmul specs.
_MAT_IDX = [[0, 1], [0, 3], [1, 0], [2, 2], [2, 3]]
# A 2x3x4 tensor with four entries.
_T3_IDX = [[0, 0, 1], [0, 2, 3], [1, 1, 0], [1, 2, 2]]


# ----- SparseTensorDenseMatMul -----


def _sp_matmul(adj_a, adj_b):
  def build(values, b):
    return raw.SparseTensorDenseMatMul(
        a_indices=_const(_MAT_IDX), a_values=values, a_shape=_const([3, 4]),
        b=b, adjoint_a=adj_a, adjoint_b=adj_b)
  return build


def _matmul_specs():
  specs = []
  for adj_a in (False, True):
    for adj_b in (False, True):
      inner = 3 if adj_a else 4
      b_shape = (2, inner) if adj_b else (inner, 2)
      specs.append(Spec("SparseTensorDenseMatMul", _sp_matmul(adj_a, adj_b),
                        [(5,), b_shape], f"adj_a{int(adj_a)}_adj_b{int(adj_b)}",
                        dtypes=_WITH_COMPLEX))
  return specs


def _sp_matmul_int32_indices(values, b):
  return raw.SparseTensorDenseMatMul(
      a_indices=tf.constant(_MAT_IDX, tf.int32), a_values=values,
      a_shape=_const([3, 4]), b=b)


# ----- SparseToDense, SparseTensorDenseAdd -----

_STD_IDX = [[0, 1], [1, 0], [2, 3]]


def _sparse_to_dense(values, default):
  return raw.SparseToDense(sparse_indices=_const(_STD_IDX),
                           output_shape=_const([3, 4]),
                           sparse_values=values, default_value=default)


def _sparse_dense_add(values, dense):
  return raw.SparseTensorDenseAdd(a_indices=_const(_STD_IDX), a_values=values,
                                  a_shape=_const([3, 4]), b=dense)


# ----- Reductions and softmax -----


def _reduce_sum(axes, keep_dims, dynamic=False):
  def build(values):
    out = raw.SparseReduceSum(
        input_indices=_const(_T3_IDX), input_values=values,
        input_shape=_const([2, 3, 4], dynamic),
        reduction_axes=tf.constant(axes, tf.int32), keep_dims=keep_dims)
    if dynamic:
      out.set_shape(np.delete([2, 3, 4], axes) if not keep_dims
                    else [1 if i in np.array(axes) % 3 else d
                          for i, d in enumerate([2, 3, 4])])
    return out
  return build


_SOFTMAX_IDX = [[0, 0], [0, 2], [0, 3], [1, 1], [2, 0], [2, 1]]
_SOFTMAX_IDX3 = [[0, 0, 1], [0, 0, 2], [0, 1, 0], [1, 0, 0], [1, 0, 3],
                 [1, 1, 2]]


def _sparse_softmax(indices, shape):
  def build(values):
    return raw.SparseSoftmax(sp_indices=_const(indices), sp_values=values,
                             sp_shape=_const(shape))
  return build


# ----- Structure: add, reorder, slice, fill -----


def _sparse_add(a_values, b_values):
  out = raw.SparseAdd(a_indices=_const([[0, 0], [1, 2], [2, 1]]),
                      a_values=a_values, a_shape=_const([3, 3]),
                      b_indices=_const([[0, 0], [0, 2], [2, 1], [2, 2]]),
                      b_values=b_values, b_shape=_const([3, 3]),
                      thresh=tf.zeros([], a_values.dtype.real_dtype))
  out.sum_values.set_shape([5])  # the union of the two patterns
  return out.sum_values


def _reorder(dynamic):
  def build(values):
    out = raw.SparseReorder(
        input_indices=_const([[2, 1], [0, 3], [1, 1], [0, 0]], dynamic),
        input_values=values, input_shape=_const([3, 4]))
    return out.output_values
  return build


def _sparse_slice(values):
  out = raw.SparseSlice(indices=_const([[0, 1], [1, 0], [1, 3], [2, 2],
                                        [3, 1]]),
                        values=values, shape=_const([4, 4]),
                        start=_const([1, 0]), size=_const([2, 3]))
  out.output_values.set_shape([2])  # entries (1, 0) and (2, 2)
  return out.output_values


def _fill_empty_rows(values, default):
  out = raw.SparseFillEmptyRows(indices=_const([[0, 1], [0, 2], [2, 0]]),
                                values=values, dense_shape=_const([4, 3]),
                                default_value=default)
  out.output_values.set_shape([5])  # rows 1 and 3 get the default
  return out.output_values


# ----- Sparse-dense elementwise -----


def _cwise(op, dense_shape_dynamic=False):
  def build(values, dense):
    if dense_shape_dynamic:
      dense = tf.compat.v1.placeholder_with_default(
          dense, [None] * dense.shape.rank)
    return op(sp_indices=_const(_T3_IDX), sp_values=values,
              sp_shape=_const([2, 3, 4], dense_shape_dynamic), dense=dense)
  return build


_DENSE_SHAPES = [("full", (2, 3, 4)), ("broadcast_rank2", (3, 1)),
                 ("broadcast_rank1", (4,)), ("broadcast_ones", (1, 1, 4))]


def _cwise_specs(op_type, domain="real"):
  op = getattr(raw, op_type)
  specs = [Spec(op_type, _cwise(op), [(4,), shape], variant, domain=domain)
           for variant, shape in _DENSE_SHAPES]
  specs.append(Spec(op_type, _cwise(op, True), [(4,), (3, 1)], "dynamic",
                    domain=domain))
  return specs


SPECS = [
    *_matmul_specs(),
    Spec("SparseTensorDenseMatMul", _sp_matmul_int32_indices, [(5,), (4, 2)],
         "int32_indices"),
    Spec("SparseToDense", _sparse_to_dense, [(3,), ()]),
    Spec("SparseTensorDenseAdd", _sparse_dense_add, [(3,), (3, 4)],
         dtypes=_WITH_COMPLEX),
    Spec("SparseReduceSum", _reduce_sum([1], False), [(4,)], "axis1"),
    Spec("SparseReduceSum", _reduce_sum([0, -1], True), [(4,)],
         "axes0_last_keepdims"),
    Spec("SparseReduceSum", _reduce_sum([0, 1, 2], False), [(4,)], "all"),
    Spec("SparseReduceSum", _reduce_sum([-2], True, dynamic=True), [(4,)],
         "dynamic"),
    Spec("SparseSoftmax", _sparse_softmax(_SOFTMAX_IDX, [3, 4]), [(6,)],
         "rank2"),
    Spec("SparseSoftmax", _sparse_softmax(_SOFTMAX_IDX3, [2, 2, 4]), [(6,)],
         "rank3"),
    Spec("SparseAdd", _sparse_add, [(3,), (4,)], dtypes=_WITH_COMPLEX),
    Spec("SparseReorder", _reorder(False), [(4,)], "static"),
    Spec("SparseReorder", _reorder(True), [(4,)], "dynamic"),
    Spec("SparseSlice", _sparse_slice, [(5,)]),
    Spec("SparseFillEmptyRows", _fill_empty_rows, [(3,), ()]),
    *_cwise_specs("SparseDenseCwiseMul"),
    *_cwise_specs("SparseDenseCwiseDiv", domain="nonzero"),
]

def _spread_out(rng, shape):
  """Values about 0.3 apart, on both sides of 0 (absent entries count as 0)."""
  n = int(np.prod(shape))
  return (rng.permutation(n) * 0.3 - 0.45 * (n - 1) / 2 + 0.1
          + rng.uniform(-0.1, 0.1, n)).reshape(shape)


def _sparse_extremum(op):
  def build(a_values, b_values):
    out = op(a_indices=_const([[0, 0], [1, 2], [2, 1]]), a_values=a_values,
             a_shape=_const([3, 3]),
             b_indices=_const([[0, 0], [0, 2], [2, 1], [2, 2]]),
             b_values=b_values, b_shape=_const([3, 3]))
    out.output_values.set_shape([5])  # the union of the two patterns
    return out.output_values
  return build


# TF registers a rule for these that raises instead of returning gradients.
TF_RAISES = ("SparseDenseCwiseAdd", "SparseSparseMaximum",
             "SparseSparseMinimum")

NUMERIC_ONLY_SPECS = [
    Spec(s.op, s.build, s.shapes, s.variant, note="TF's rule raises "
         "NotImplementedError")
    for s in _cwise_specs("SparseDenseCwiseAdd")
] + [
    Spec(op_type, _sparse_extremum(getattr(raw, op_type)), [(3,), (4,)],
         domain=_spread_out, note="TF's rule takes one output grad for a "
         "two-output op (TypeError), and would raise NotImplementedError")
    for op_type in ("SparseSparseMaximum", "SparseSparseMinimum")
]
