"""Gradient rules for resource-variable ops.

A variable's gradient is taken at its handle: reads pass the gradient
through, gathers give IndexedSlices over the variable's full shape.
"""

import tensorflow as tf

from tfgrad import emit
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
      return emit.const(shape.as_list(), dtype)
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
    values = raw.Reshape(tensor=grad,
                         shape=emit.const([n] + tail.as_list(), tf.int32))
    flat_indices = raw.Reshape(tensor=indices, shape=emit.const([n], tf.int32))
  else:
    n = tf.size(indices)
    values = tf.reshape(grad, tf.concat([[n], shape[1:]], 0))
    flat_indices = tf.reshape(indices, [n])
  return tf.IndexedSlices(values, flat_indices, shape), None


@RegisterGradient("ResourceGatherNd")
def _resource_gather_nd_grad(op, grad):
  """d var = grad scattered (summed) back to the gathered positions."""
  handle, indices = op.inputs
  shape = _variable_shape(handle, indices.dtype)
  if indices.shape.rank == 2 and indices.shape[-1] == 1:
    return tf.IndexedSlices(grad, raw.Squeeze(input=indices, axis=[-1]),
                            shape), None
  return raw.ScatterNd(indices=indices, updates=grad, shape=shape), None
