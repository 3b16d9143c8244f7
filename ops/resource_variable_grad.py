"""Gradient rules for resource-variable ops.

A variable's gradient is taken at its handle: reads pass the gradient
through, gathers give IndexedSlices over the variable's full shape.
"""

import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient
from tfgrad.registry import passes_gradients_through

from tfgrad.ops.registrars import def_not_differentiable


def _variable_shape(handle, dtype=tf.int32):
  """The variable's shape: a constant when its handle op declares a fully
  known shape, else a VariableShape op."""
  if handle.op.type == "VarHandleOp":
    shape = tf.TensorShape(handle.op.get_attr("shape"))
    if shape.is_fully_defined():
      return tf.constant(shape.as_list(), dtype)
  return raw.VariableShape(input=handle, out_type=dtype)


# ----- Not differentiable -----

def_not_differentiable("VarIsInitializedOp", "VariableShape")


# ----- Reads -----


@RegisterGradient("ReadVariableOp")
@passes_gradients_through
def _read_variable_grad(op, grad):
  """The handle receives the read's gradient unchanged."""
  del op
  return grad


@RegisterGradient("ResourceGather")
def _resource_gather_grad(op, grad):
  """d var = IndexedSlices of grad's rows at the gathered indices."""
  handle, indices = op.inputs
  shape = _variable_shape(handle)
  if isinstance(grad, tf.IndexedSlices):
    grad = tf.convert_to_tensor(grad)
  n = indices.shape.num_elements()
  tail = grad.shape[indices.shape.rank:] if n is not None else None
  if tail is not None and tail.is_fully_defined():
    values_shape = [n] + tail.as_list()
  else:
    n = tf.size(indices)
    values_shape = tf.concat([[n], shape[1:]], 0)
  values = tf.reshape(grad, values_shape)
  return tf.IndexedSlices(values, tf.reshape(indices, [n]), shape), None


@RegisterGradient("ResourceGatherNd")
def _resource_gather_nd_grad(op, grad):
  """d var = grad scattered (summed) back to the gathered positions."""
  handle, indices = op.inputs
  shape = _variable_shape(handle, indices.dtype)
  if indices.shape.rank == 2 and indices.shape[-1] == 1:
    return tf.IndexedSlices(grad, tf.squeeze(indices, -1), shape), None
  return tf.scatter_nd(indices, grad, shape), None
