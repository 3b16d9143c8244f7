"""Gradient rules for math ops (TF's math_grad.py family)."""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_binary

# ----- Broadcasting binary -----

def_binary("AddV2", dx=lambda x, y, g: g, dy=lambda x, y, g: g)
def_binary("Mul", dx=lambda x, y, g: g * y, dy=lambda x, y, g: x * g)


# ----- Reductions -----

@RegisterGradient("Sum")
def _sum_grad(op, grad):
  """Broadcasts grad back over the reduced axes."""
  x = op.inputs[0]
  shape = _helpers.static_shape(x)
  axes = tf.get_static_value(op.inputs[1])
  if shape is not None and axes is not None:
    grad = tf.reshape(grad, _helpers.reduced_shape(shape, axes))
    return [tf.broadcast_to(grad, shape), None]
  x_shape = tf.shape(x)
  kept = tf.tensor_scatter_nd_update(
      x_shape, tf.reshape(tf.math.floormod(op.inputs[1], tf.size(x_shape)),
                          [-1, 1]),
      tf.ones_like(tf.reshape(op.inputs[1], [-1]), dtype=x_shape.dtype))
  return [tf.broadcast_to(tf.reshape(grad, kept), x_shape), None]
