"""Gradient rules for data-flow ops: dynamic partition and stitch.

Queues, stacks and session handles carry values between steps or sessions,
not functions of their inputs: they are declared not differentiable.
"""

import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_not_differentiable


def _positions(t):
  """int32 tensor of `t`'s shape holding 0, 1, ..., size(t) - 1."""
  shape = _helpers.static_shape(t)
  if shape is not None:
    return tf.reshape(tf.range(int(tf.TensorShape(shape).num_elements())),
                      shape)
  dyn = tf.shape(t)
  return tf.reshape(tf.range(tf.reduce_prod(dyn)), dyn)


def _dense(g):
  return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


# ----- Not differentiable -----

def_not_differentiable(
    "Queue", "QueueClose", "QueueDequeue", "QueueDequeueMany",
    "QueueDequeueUpTo", "QueueEnqueue", "QueueEnqueueMany", "QueueSize",
    "Stack", "StackClose", "StackPop", "StackPush",
    "GetSessionHandle", "GetSessionHandleV2", "GetSessionTensor",
    "DeleteSessionTensor")


# ----- Partition and stitch -----


@RegisterGradient("DynamicPartition")
def _dynamic_partition_grad(op, *grads):
  """d data = the partition grads stitched back to their source positions."""
  data, partitions = op.inputs
  num = op.get_attr("num_partitions")
  where = raw.DynamicPartition(data=_positions(partitions),
                                      partitions=partitions,
                                      num_partitions=num)
  stitched = raw.ParallelDynamicStitch(
      indices=where, data=[_dense(g) for g in grads])
  return tf.reshape(stitched, _helpers.shape_of(data)), None


@RegisterGradient("DynamicStitch")
@RegisterGradient("ParallelDynamicStitch")
def _dynamic_stitch_grad(op, grad):
  """d data[i] = grad rows at indices[i]; the indices get none."""
  n = len(op.inputs) // 2
  if isinstance(grad, tf.IndexedSlices):
    rows = op.outputs[0].shape[0]
    if rows is None:
      rows = tf.shape(op.outputs[0])[0]
    grad = tf.math.unsorted_segment_sum(grad.values, grad.indices, rows)
  return [None] * n + [tf.gather(grad, i) for i in op.inputs[:n]]
