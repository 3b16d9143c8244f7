"""ops/not_differentiable.py: every declaration agrees with TF's registry."""

import pytest
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

import tfgrad
from tfgrad import registry
from tfgrad.ops import not_differentiable  # noqa: F401


@pytest.mark.parametrize("op_type", not_differentiable.NOT_DIFFERENTIABLE)
def test_tf_declares_it_not_differentiable(op_type):
  assert tf_ops.gradient_registry.lookup(op_type) is None
  assert op_type in registry.GRADIENTS
  assert registry.GRADIENTS.lookup(op_type) is None


def test_declared_once():
  types = not_differentiable.NOT_DIFFERENTIABLE
  assert len(types) == len(set(types))


def test_gradient_stops_at_a_not_differentiable_op():
  """The integer path through BitwiseAnd adds nothing to x's gradient."""
  with tf.Graph().as_default():
    x = tf.constant([1.5, 2.5], tf.float64)
    bits = tf.bitwise.bitwise_and(tf.cast(x, tf.int32), 3)
    y = x * tf.cast(bits, tf.float64)
    ours = tfgrad.gradients(y, x, strict=True)
    theirs = tf.gradients(y, x)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([ours[0], theirs[0]])
  assert (a == b).all()
