"""Gradient rules for RaggedTensor kernels (TF's ragged/*.py).

A ragged tensor is row partitions (integer splits or row ids, never
differentiated) over a dense `flat_values` tensor; every rule here returns
None for the partitions and routes the output gradient back to the flat
values it came from.
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers

from tfgrad.emit import raw


def _leading_shape(t, n):
  """The first `n` dimensions of `t`'s shape: constant when static."""
  static = t.shape[:n]
  if static.is_fully_defined():
    return tf.constant(static.as_list(), tf.int32)
  return tf.shape(t)[:n]


def _innermost_splits(nested_splits):
  """Splits from the outermost rows straight into the flat values."""
  splits = nested_splits[0]
  for inner in nested_splits[1:]:
    splits = tf.gather(inner, splits)
  return splits


# ----- Gather -----


@RegisterGradient("RaggedGather")
def _ragged_gather_grad(op, *grads):
  """d flat_values: the gradient rows scattered back (as IndexedSlices) to
  the flat-value rows each gathered row spans."""
  nested_splits = op.inputs[:-2]
  values, indices = op.inputs[-2], op.inputs[-1]
  splits = _innermost_splits(nested_splits)
  rows = tf.reshape(indices, [-1])
  positions = raw.RaggedRange(starts=tf.gather(splits, rows),
                              limits=tf.gather(splits[1:], rows),
                              deltas=tf.ones([], splits.dtype)).rt_dense_values
  values_grad = tf.IndexedSlices(grads[-1], positions,
                                 _helpers.shape_of(values))
  return [None] * len(nested_splits) + [values_grad, None]


# ----- Conversions -----


@RegisterGradient("RaggedTensorToTensor")
def _ragged_tensor_to_tensor_grad(op, grad):
  """d values: grad at the padded slots each value filled (IndexedSlices);
  d default: grad summed over the slots left at the default."""
  values, default = op.inputs[1], op.inputs[2]
  partitions = op.inputs[3:]
  types = op.get_attr("row_partition_types")
  ragged_rank = sum(1 for t in types if t != b"FIRST_DIM_SIZE")
  n = values.shape[0] if values.shape[0] is not None else tf.shape(values)[0]
  source = raw.RaggedTensorToTensor(
      shape=_leading_shape(grad, ragged_rank + 1),
      values=tf.range(n), default_value=tf.constant(-1),
      row_partition_tensors=partitions, row_partition_types=types)
  filled = tf.not_equal(source, -1)
  values_grad = tf.IndexedSlices(tf.boolean_mask(grad, filled),
                                 tf.boolean_mask(source, filled),
                                 _helpers.shape_of(values))
  padded = tf.reduce_sum(tf.boolean_mask(grad, tf.logical_not(filled)), 0)
  default_grad = _helpers.unbroadcast(padded, default)
  return [None, values_grad, default_grad] + [None] * len(partitions)


@RegisterGradient("RaggedTensorToSparse")
def _ragged_tensor_to_sparse_grad(op, *grads):
  """d flat_values: the sparse values' gradient in flat_values' shape."""
  values, values_grad = op.inputs[-1], grads[1]
  shape = _helpers.static_shape(values)
  if shape is None or shape != _helpers.static_shape(values_grad):
    values_grad = tf.reshape(values_grad, _helpers.shape_of(values))
  return [None] * (len(op.inputs) - 1) + [values_grad]


def _batched_encoding(op):
  """Whether a RaggedTensorFromVariant input holds one ragged tensor per
  element (a vector) rather than a single one (a scalar)."""
  rank = op.inputs[0].shape.rank
  if rank is None:
    outer = op.get_attr("output_ragged_rank")
    inner = op.get_attr("input_ragged_rank")
    return outer - inner == 1 if inner >= 0 else outer > 0
  if rank > 1:
    raise ValueError("RaggedTensorFromVariant gradients support scalar or "
                     f"vector encodings only, not rank {rank}")
  return rank == 1


@RegisterGradient("RaggedTensorFromVariant")
def _ragged_tensor_from_variant_grad(op, *grads):
  """The decoded values' gradient encoded on the decoded row partitions."""
  encoded = raw.RaggedTensorToVariant(
      rt_nested_splits=op.outputs[:-1], rt_dense_values=grads[-1],
      batched_input=_batched_encoding(op))
  return [encoded]


@RegisterGradient("RaggedTensorToVariant")
def _ragged_tensor_to_variant_grad(op, grad):
  """d dense_values: the flat values of the encoded gradient (a kernel
  without a gradient of its own: first order only)."""
  splits, values = op.inputs[:-1], op.inputs[-1]
  row_splits = splits[0] if splits else tf.constant(0, tf.int64)
  values_grad = raw.RaggedTensorToVariantGradient(
      encoded_ragged_grad=grad, row_splits=row_splits,
      dense_values_shape=_helpers.shape_of(values), Tvalues=values.dtype)
  return [None] * len(splits) + [values_grad]


# ----- Row filling -----


@RegisterGradient("RaggedFillEmptyRows")
def _ragged_fill_empty_rows_grad(op, *grads):
  """d values = g[reverse_index_map]; d default = sum of g over the values
  inserted into empty rows."""
  rowids, _, empty_rows, reverse_map = op.outputs
  grad = grads[1]
  inserted = tf.gather(empty_rows, rowids)
  default_grad = tf.reduce_sum(tf.where(inserted, grad, tf.zeros_like(grad)))
  return None, tf.gather(grad, reverse_map), None, default_grad
