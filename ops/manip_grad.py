"""Gradient rules for manipulation ops (TF's manip_grad.py family)."""

import tensorflow as tf

from tfgrad.registry import RegisterGradient


# ----- Rolling -----

@RegisterGradient("Roll")
def _roll_grad(op, grad):
  """Rolling is a permutation: its adjoint rolls grad back by -shift."""
  _, shift, axis = op.inputs
  return tf.roll(grad, -shift, axis), None, None
