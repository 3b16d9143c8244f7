"""Gradient rules for state ops and their functional tensor_scatter and
strided-slice-update counterparts.

Assignments and scatters into reference variables mutate state in place:
they are declared not differentiable. The functional ops return a new
tensor: the replaced entries pass their gradient to the updates, the rest
to the input tensor.
"""

import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_not_differentiable


def _dense(g):
  return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


def _shape(x, dtype):
  """`x`'s shape as `dtype`: a constant when static, else a Shape op."""
  static = _helpers.static_shape(x)
  if static is not None:
    return tf.constant(static, dtype)
  return tf.shape(x, out_type=dtype)


def _scatter_min_max_grad(op, grad):
  """Splits grad between x and the updates that equal the output, evenly
  among ties."""
  x, indices, updates = op.inputs
  out = op.outputs[0]
  policy = op.get_attr("bad_indices_policy")
  x_hits = tf.cast(tf.equal(x, out), grad.dtype)
  picked = raw.GatherNd(params=out, indices=indices,
                               bad_indices_policy=policy)
  u_hits = tf.cast(tf.equal(updates, picked), grad.dtype)
  counts = x_hits + raw.ScatterNd(
      indices=indices, updates=u_hits, shape=_shape(x, indices.dtype),
      bad_indices_policy=policy)
  share = grad / counts
  du = raw.GatherNd(params=share, indices=indices,
                           bad_indices_policy=policy) * u_hits
  return share * x_hits, None, du


# ----- Not differentiable -----

def_not_differentiable(
    "Assign", "AssignAdd", "AssignSub",
    "ScatterAdd", "ScatterSub", "ScatterMul", "ScatterDiv",
    "ScatterNdUpdate", "ScatterNdAdd", "ScatterNdSub", "ScatterNdMul",
    "ScatterNdDiv")


# ----- Functional scatters -----


@RegisterGradient("TensorScatterUpdate")
def _tensor_scatter_update_grad(op, grad):
  """d tensor = grad with the replaced entries zeroed; d updates = their grad."""
  _, indices, updates = op.inputs
  grad = _dense(grad)
  cleared = tf.tensor_scatter_nd_update(grad, indices, tf.zeros_like(updates))
  return cleared, None, tf.gather_nd(grad, indices)


@RegisterGradient("TensorScatterAdd")
def _tensor_scatter_add_grad(op, grad):
  """d tensor = grad; d updates = grad at the indices."""
  return grad, None, tf.gather_nd(grad, op.inputs[1])


@RegisterGradient("TensorScatterSub")
def _tensor_scatter_sub_grad(op, grad):
  """d tensor = grad; d updates = -grad at the indices."""
  return grad, None, -tf.gather_nd(grad, op.inputs[1])


@RegisterGradient("TensorScatterMax")
def _tensor_scatter_max_grad(op, grad):
  """grad goes to whichever of x and the updates attains the max."""
  return _scatter_min_max_grad(op, _dense(grad))


@RegisterGradient("TensorScatterMin")
def _tensor_scatter_min_grad(op, grad):
  """grad goes to whichever of x and the updates attains the min."""
  return _scatter_min_max_grad(op, _dense(grad))


# ----- Strided slice update -----


@RegisterGradient("TensorStridedSliceUpdate")
def _tensor_strided_slice_update_grad(op, grad):
  """d input = grad with the slice zeroed; d value = the slice of grad,
  summed over the dimensions value was broadcast along."""
  _, begin, end, strides, value = op.inputs
  masks = {k: op.get_attr(k) for k in (
      "begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
      "shrink_axis_mask")}
  grad = _dense(grad)
  dslice = raw.StridedSlice(input=grad, begin=begin, end=end,
                                   strides=strides, **masks)
  dx = raw.TensorStridedSliceUpdate(
      input=grad, begin=begin, end=end, strides=strides,
      value=tf.zeros_like(dslice), **masks)
  return dx, None, None, None, _helpers.unbroadcast(dslice, value)
