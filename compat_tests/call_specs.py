"""Specs for ops/call_grad.py (PartitionedCall, StatefulPartitionedCall):
calls of tf.function graph functions, nested, reading a variable."""

import tensorflow as tf

from compat_tests.spec import Spec


@tf.function(autograph=False)
def _affine(x, w):
  return tf.matmul(x, w) * 2.0


@tf.function(autograph=False)
def _layer(x, w):
  return tf.tanh(_affine(x, w)) + 0.1 * tf.sin(x)


def _nested_calls(x, w):
  """Two calls of one function that calls another."""
  return _layer(_layer(x, w), w)


@tf.function(autograph=False)
def _read_and_scale(v, x):
  return tf.sin(v.read_value() * x) * v


def _stateful_call(v, x):
  return _read_and_scale(v, x)


SPECS = [
    Spec("PartitionedCall", _nested_calls, [(2, 3), (3, 3)], "nested",
         domain="unit"),
    Spec("StatefulPartitionedCall", _stateful_call, [(3,), (3,)],
         "variable", variables=True),
]
