"""Summing the gradient contributions that reach one tensor.

Semantics follow stock TF: one contribution passes through untouched; dense
contributions are summed with one `AddN` per device (ADD_N) or pairwise
(EXPERIMENTAL_TREE / EXPERIMENTAL_ACCUMULATE_N); contributions that are all
`IndexedSlices` stay sparse (values and indices concatenated); a mix of dense
and sparse is summed densely.
"""

import collections

import tensorflow as tf

from tfgrad import emit
from tfgrad import tf_compat
from tfgrad.emit import raw


class AggregationMethod:
  """Ways to combine gradient contributions; same values as
  `tf.AggregationMethod`, whose constants are accepted as well."""
  ADD_N = 0
  DEFAULT = ADD_N
  EXPERIMENTAL_TREE = 1
  EXPERIMENTAL_ACCUMULATE_N = 2


_VALID = (AggregationMethod.ADD_N, AggregationMethod.EXPERIMENTAL_TREE,
          AggregationMethod.EXPERIMENTAL_ACCUMULATE_N)


def check_method(method):
  """Returns the method to use; ValueError (as TF) for unknown values."""
  if method is None:
    return AggregationMethod.DEFAULT
  if method not in _VALID:
    raise ValueError(f"Invalid `aggregation_method` specified {method}. "
                     f"Accepted values are {list(_VALID)}.")
  return method


def aggregate(contributions, op, index, method, gradient_uid):
  """Sums the contributions to `op.outputs[index]`; None if there are none."""
  if not contributions:
    return None
  for g in contributions:
    if not isinstance(g, (tf.Tensor, tf.IndexedSlices, emit.Known)):
      raise TypeError(f"Invalid gradient {contributions} [index = {index}] "
                      f"for op '{op.name}': gradients have to be either all "
                      "Tensors or all IndexedSlices")
  if len(contributions) == 1:
    return contributions[0]
  if all(isinstance(g, tf.Tensor) for g in contributions):
    if method == AggregationMethod.ADD_N:
      return _add_n_per_device(contributions, gradient_uid)
    with tf.compat.v1.name_scope(op.name + "_gradient_sum"):
      total = contributions[0]
      for g in contributions[1:]:
        total = raw.AddN(inputs=[total, g])
      return total
  return _sum_with_slices(contributions)


def _add_n_per_device(tensors, gradient_uid):
  """One AddN per device, colocated with that device's first summand, then
  one AddN over the partial sums (none when all share a device)."""
  by_device = collections.defaultdict(list)
  for t in tensors:
    by_device[t.device or ""].append(t)
  partial = []
  for device in sorted(by_device):
    group = by_device[device]
    with tf_compat.colocate_for_gradient(group[0].op, gradient_uid,
                                         ignore_existing=True):
      partial.append(raw.AddN(inputs=group) if len(group) > 1 else group[0])
  return partial[0] if len(partial) == 1 else raw.AddN(inputs=partial)


def _sum_with_slices(grads):
  """Sum of contributions at least one of which is IndexedSlices."""
  if any(isinstance(g, tf.Tensor) for g in grads):
    return tf.math.add_n(grads)  # densifies the IndexedSlices, as TF does
  grads = [_flatten_nested(g) for g in grads]
  index_dtypes = {g.indices.dtype for g in grads}
  if len(index_dtypes) > 1:
    grads = [tf.IndexedSlices(g.values, tf.cast(g.indices, tf.int64),
                              g.dense_shape) for g in grads]
  return tf.IndexedSlices(
      raw.ConcatV2(values=[g.values for g in grads], axis=0),
      raw.ConcatV2(values=[g.indices for g in grads], axis=0),
      grads[0].dense_shape)


def _flatten_nested(grad):
  """IndexedSlices whose values are IndexedSlices, as one IndexedSlices."""
  if isinstance(grad.values, tf.IndexedSlices):
    inner = _flatten_nested(grad.values)
    return tf.IndexedSlices(inner.values, tf.gather(grad.indices, inner.indices),
                            inner.dense_shape)
  return grad
