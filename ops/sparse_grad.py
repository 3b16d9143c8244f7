"""Gradient rules for COO sparse-tensor ops (TF's sparse_grad.py family).

A sparse tensor enters these ops as (indices, values, dense_shape); only the
values (and any dense operand) are differentiable, so indices, shapes,
thresholds and reduction axes always get None.
"""

import numpy as np
import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_not_differentiable

from tfgrad.emit import raw


def _with_shape_of(t, like):
  """`t` with `like`'s static shape merged in (the grad ops drop it)."""
  t.set_shape(like.shape)
  return t


def _broadcast_positions(sp_indices, sp_shape, dense):
  """Index rows into `dense` for each entry of a sparse tensor it
  broadcasts against (dense's rank <= the sparse rank; size-1 dims repeat)."""
  dense_shape = _helpers.static_shape(dense)
  full_shape = tf.get_static_value(sp_shape)
  if dense_shape is not None and full_shape is not None:
    lead = len(full_shape) - len(dense_shape)
    keep = np.array([0 if d == 1 else 1 for d in dense_shape], np.int64)
    rows = sp_indices[:, lead:] if lead else sp_indices
    if keep.all():
      return rows
    return rows * tf.constant(keep, sp_indices.dtype)
  dense_dims = tf.shape(dense, out_type=tf.int64)
  lead = tf.size(sp_shape, out_type=tf.int64) - tf.size(dense_dims,
                                                         out_type=tf.int64)
  rows = sp_indices[:, lead:]
  return rows * tf.cast(tf.not_equal(dense_dims, 1), sp_indices.dtype)


def _scatter_to(dense, positions, updates):
  """Sums `updates` at `positions` into a zero tensor shaped like `dense`."""
  shape = _helpers.shape_of(dense)
  return tf.scatter_nd(positions, updates, tf.cast(shape, positions.dtype))


# ----- Structure: reorder, slice, fill, add -----


@RegisterGradient("SparseReorder")
def _sparse_reorder_grad(op, unused_indices_grad, values_grad):
  """Routes each output value's gradient back to its input position."""
  indices, shape = op.inputs[0], op.inputs[2]
  static = tf.get_static_value(indices)
  if static is not None and static.ndim == 2:
    order = np.lexsort(static.T[::-1]) if static.size else np.zeros(0, int)
    inverse = tf.constant(np.argsort(order).astype(np.int32))
  else:
    entries = tf.range(tf.shape(indices)[0])
    _, order = raw.SparseReorder(input_indices=indices, input_values=entries,
                                 input_shape=shape)
    inverse = tf.math.invert_permutation(order)
  return None, tf.gather(values_grad, inverse), None


@RegisterGradient("SparseSlice")
def _sparse_slice_grad(op, unused_indices_grad, values_grad, unused_shape_grad):
  """Values kept by the slice get their gradient; the rest get zero."""
  grad = raw.SparseSliceGrad(backprop_val_grad=values_grad,
                             input_indices=op.inputs[0],
                             input_start=op.inputs[3],
                             output_indices=op.outputs[0])
  return None, _with_shape_of(grad, op.inputs[1]), None, None, None


@RegisterGradient("SparseFillEmptyRows")
def _sparse_fill_empty_rows_grad(op, unused_indices_grad, values_grad,
                                 unused_indicator_grad, unused_map_grad):
  """Input values take their output's gradient; the default takes the rest."""
  d_values, d_default = raw.SparseFillEmptyRowsGrad(
      reverse_index_map=op.outputs[3], grad_values=values_grad)
  return None, d_values, None, d_default


@RegisterGradient("SparseAdd")
def _sparse_add_grad(op, unused_indices_grad, values_grad, unused_shape_grad):
  """d(a + b) = da + db, read off at each operand's entries of the sum."""
  a_grad, b_grad = raw.SparseAddGrad(backprop_val_grad=values_grad,
                                     a_indices=op.inputs[0],
                                     b_indices=op.inputs[3],
                                     sum_indices=op.outputs[0])
  a_grad = _with_shape_of(a_grad, op.inputs[1])
  b_grad = _with_shape_of(b_grad, op.inputs[4])
  return None, a_grad, None, None, b_grad, None, None


def _sparse_extremum_grad(op, grad):
  """Each output entry's grad goes to the operand whose value it took
  (a on ties, as Maximum/Minimum do); absent entries count as 0."""
  a_indices, a_values, a_shape, b_indices, b_values, _ = op.inputs
  out_indices, out_values = op.outputs
  a_on_output = raw.SparseAdd(
      a_indices=a_indices, a_values=a_values, a_shape=a_shape,
      b_indices=out_indices, b_values=tf.zeros_like(out_values),
      b_shape=a_shape, thresh=tf.zeros([], a_values.dtype)).sum_values
  from_a = tf.equal(a_on_output, out_values)
  zeros = tf.zeros_like(grad)
  a_grad = raw.SparseAddGrad(backprop_val_grad=tf.where(from_a, grad, zeros),
                             a_indices=a_indices, b_indices=b_indices,
                             sum_indices=out_indices).a_val_grad
  b_grad = raw.SparseAddGrad(backprop_val_grad=tf.where(from_a, zeros, grad),
                             a_indices=a_indices, b_indices=b_indices,
                             sum_indices=out_indices).b_val_grad
  return (None, _with_shape_of(a_grad, a_values), None, None,
          _with_shape_of(b_grad, b_values), None)


@RegisterGradient("SparseSparseMaximum")
def _sparse_sparse_maximum_grad(op, unused_indices_grad, values_grad):
  """max(a, b) over the union of entries (absent = 0): grad to the larger."""
  return _sparse_extremum_grad(op, values_grad)


@RegisterGradient("SparseSparseMinimum")
def _sparse_sparse_minimum_grad(op, unused_indices_grad, values_grad):
  """min(a, b) over the union of entries (absent = 0): grad to the smaller."""
  return _sparse_extremum_grad(op, values_grad)


@RegisterGradient("SparseToDense")
def _sparse_to_dense_grad(op, grad):
  """Values read grad at their indices; the default gets the remainder."""
  indices, output_shape = op.inputs[0], op.inputs[1]
  values_grad = tf.gather_nd(grad, indices)
  default_grad = tf.reduce_sum(grad) - tf.reduce_sum(values_grad)
  return (tf.zeros_like(indices), tf.zeros_like(output_shape), values_grad,
          default_grad)


# ----- Sparse with dense -----


@RegisterGradient("SparseTensorDenseAdd")
def _sparse_tensor_dense_add_grad(op, grad):
  """d(sp + dense): values read grad at their indices; dense takes grad."""
  return None, tf.gather_nd(grad, op.inputs[0]), None, grad


@RegisterGradient("SparseDenseCwiseAdd")
def _sparse_dense_cwise_add_grad(op, grad):
  """sp + broadcast(dense) at sp's entries: dense sums grads it fed."""
  indices, dense = op.inputs[0], op.inputs[3]
  positions = _broadcast_positions(indices, op.inputs[2], dense)
  return None, grad, None, _scatter_to(dense, positions, grad)


def _sparse_dense_cwise_grad(op, grad, d_values, d_dense):
  """Shared by Mul/Div: `d_*(x, y, grad)` are the entrywise partials."""
  indices, x, dense = op.inputs[0], op.inputs[1], op.inputs[3]
  positions = _broadcast_positions(indices, op.inputs[2], dense)
  y = tf.gather_nd(dense, positions)
  dense_grad = _scatter_to(dense, positions, d_dense(x, y, grad))
  return None, d_values(x, y, grad), None, dense_grad


@RegisterGradient("SparseDenseCwiseMul")
def _sparse_dense_cwise_mul_grad(op, grad):
  """x * y at sp's entries: dx = grad * y, dy sums grad * x."""
  return _sparse_dense_cwise_grad(op, grad, lambda x, y, g: g * y,
                                  lambda x, y, g: g * x)


def _div_dense_partial(x, y, g):
  return g * (-x / tf.square(y))


@RegisterGradient("SparseDenseCwiseDiv")
def _sparse_dense_cwise_div_grad(op, grad):
  """x / y at sp's entries: dx = grad / y, dy sums -grad * x / y^2."""
  return _sparse_dense_cwise_grad(op, grad, lambda x, y, g: g / y,
                                  _div_dense_partial)


def _sampled_matmul_grad(grad, b, rows, cols, adj_a, adj_b):
  """The entries (rows, cols) of d(op(A)) = grad @ adjoint(op(B)), made
  d(A) entries: conjugated when A enters adjointed."""
  b_rows = tf.transpose(b) if adj_b else _helpers.conj(b)
  grad_rows, b_at = (cols, rows) if adj_a else (rows, cols)
  values = tf.reduce_sum(tf.gather(grad, grad_rows) * tf.gather(b_rows, b_at),
                         axis=-1)
  return _helpers.conj(values) if adj_a else values


@RegisterGradient("SparseTensorDenseMatMul")
def _sparse_tensor_dense_mat_mul_grad(op, grad):
  """C = op(A) op(B): dA = grad op(B)^H at A's entries,
  d op(B) = op(A)^H grad."""
  indices, values, shape, b = op.inputs
  adj_a, adj_b = op.get_attr("adjoint_a"), op.get_attr("adjoint_b")
  b_grad = raw.SparseTensorDenseMatMul(a_indices=indices, a_values=values,
                                       a_shape=shape, b=grad,
                                       adjoint_a=not adj_a)
  if adj_b:
    b_grad = tf.linalg.adjoint(b_grad)
  values_grad = _sampled_matmul_grad(grad, b, indices[:, 0], indices[:, 1],
                                     adj_a, adj_b)
  return None, values_grad, None, b_grad


# ----- Reductions and softmax -----


@RegisterGradient("SparseReduceSum")
def _sparse_reduce_sum_grad(op, grad):
  """Each value gets the grad of the sum it went into."""
  indices, shape, axes = op.inputs[0], op.inputs[2], op.inputs[3]
  static_shape, static_axes = (tf.get_static_value(shape),
                               tf.get_static_value(axes))
  if static_shape is not None and static_axes is not None:
    kept = _helpers.reduced_shape(static_shape, static_axes)
    keep = np.array([0 if k == 1 and d != 1 else 1
                     for k, d in zip(kept, static_shape)], np.int64)
    kept_grad = tf.reshape(grad, kept)
    positions = indices * tf.constant(keep) if not keep.all() else indices
    return None, tf.gather_nd(kept_grad, positions), None, None
  rank = tf.size(shape, out_type=axes.dtype)
  reduced = tf.expand_dims((axes + rank) % rank, 1)
  kept = tf.tensor_scatter_nd_update(shape, reduced,
                                     tf.ones_like(reduced[:, 0], tf.int64))
  kept_grad = tf.reshape(grad, kept)
  return None, tf.gather_nd(kept_grad, indices // (shape // kept)), None, None


@RegisterGradient("SparseSoftmax")
def _sparse_softmax_grad(op, grad):
  """(grad - sum_row(grad * y)) * y over each row's present entries."""
  indices, shape = op.inputs[0], op.inputs[2]
  y = op.outputs[0]
  row_sums = raw.SparseReduceSum(input_indices=indices, input_values=grad * y,
                                 input_shape=shape,
                                 reduction_axes=tf.constant([-1]))
  return None, (grad - tf.gather_nd(row_sums, indices[:, :-1])) * y, None


# ----- Not differentiable -----

def_not_differentiable(
    "SparseAddGrad", "SparseConcat",
    # set operations: integer/string outputs
    "SetSize", "DenseToDenseSetOperation", "DenseToSparseSetOperation",
    "SparseToSparseSetOperation")
