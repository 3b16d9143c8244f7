"""Specs for ops/cond_grad.py (If, StatelessIf, Case, StatelessCase).

`tf.cond` builds an If when a branch holds a stateful op (a variable read)
and a StatelessIf otherwise; `tf.switch_case` a Case or StatelessCase the
same way. The predicate or index is computed from the xs, so the
finite-difference checks stay on one branch near the sampled point."""

import tensorflow as tf

from compat_tests.spec import Spec


def _if(x, w):
  """sin(x) w on one side (saves sin(x)), x * 2 + w on the other."""
  return tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.sin(x) * w,
                 lambda: x * 2.0 + w)


def _if_reading_variable(x, w):
  """A variable read in a branch: a stateful If."""
  return tf.cond(tf.reduce_sum(x.read_value()) > 0.0,
                 lambda: tf.tanh(x * w), lambda: w.read_value() * x)


def _if_nested(x, w):
  def outer():
    inner = tf.cond(tf.reduce_sum(w) > 0.0, lambda: tf.exp(x) * w,
                    lambda: tf.cos(x * w))
    return inner * x
  return tf.cond(tf.reduce_sum(x) > -100.0, outer, lambda: w)


def _case(x, w):
  index = tf.cast(tf.reduce_sum(x) > 0.0, tf.int32) + 1
  return tf.switch_case(index, [lambda: x, lambda: tf.sin(x) * w,
                                lambda: tf.exp(w) * x * x])


def _case_reading_variable(x, w):
  index = tf.cast(tf.reduce_sum(x.read_value()) > 0.0, tf.int32)
  return tf.switch_case(index, [lambda: tf.tanh(x * w),
                                lambda: w.read_value() * w * x])


SPECS = [
    Spec("StatelessIf", _if, [(2, 3), (2, 3)], "one_side_saves"),
    Spec("If", _if_reading_variable, [(3,), (3,)], "variable",
         variables=True),
    Spec("StatelessIf", _if_nested, [(3,), (3,)], "nested", domain="unit"),
    Spec("StatelessCase", _case, [(2,), (2,)], "three_branches",
         domain="unit"),
    Spec("Case", _case_reading_variable, [(3,), (3,)], "variable",
         variables=True),
]
