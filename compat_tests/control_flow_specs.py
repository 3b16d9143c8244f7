"""Specs for ops/control_flow_grad.py rules (While and StatelessWhile).

`tf.while_loop` builds a While op when its body holds a stateful op (a
variable read) and a StatelessWhile otherwise. The loops below are chosen
for the cases the rule treats differently: loop variables nothing
downstream reads, captured invariants with and without a gradient, sparse
gradients of a captured table, nested loops."""

import tensorflow as tf

from compat_tests.spec import Spec


def _rnn(h0, w):
  """h <- tanh(h w), three steps; w is captured by the body."""
  _, h = tf.while_loop(lambda i, h: i < 3,
                       lambda i, h: (i + 1, tf.tanh(tf.matmul(h, w))),
                       (tf.constant(0), h0))
  return h


def _rnn_reading_variable(h0, w):
  """As _rnn, the weights read from a variable inside the body (a While)."""
  _, h = tf.while_loop(lambda i, h: i < 3,
                       lambda i, h: (i + 1, tf.tanh(tf.matmul(h, w.read_value()))),
                       (tf.constant(0), h0.read_value()))
  return h


def _coupled_only_one_returned(a0, b0):
  """(a, b) <- (sin(a) + 0.5, b + a * a): only b is returned, yet b's
  gradient toward a0 flows through a's loop variable, which nothing
  downstream reads (it must start from zeros, not be left out)."""
  _, _, b = tf.while_loop(
      lambda i, a, b: i < 3,
      lambda i, a, b: (i + 1, tf.sin(a) + 0.5, b + a * a),
      (tf.constant(0), a0, b0))
  return b


def _invariant_without_gradient(x):
  """The body captures a constant and x; only x needs a gradient."""
  table = tf.constant([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], x.dtype)
  _, h = tf.while_loop(lambda i, h: i < 2,
                       lambda i, h: (i + 1, tf.sin(h) * table + x),
                       (tf.constant(0), tf.zeros_like(x)))
  return h


def _gather_from_captured_table(table, h0):
  """Each step adds a row gathered from the captured table: its gradient
  arrives as IndexedSlices inside the loop."""
  _, h = tf.while_loop(
      lambda i, h: i < 3,
      lambda i, h: (i + 1, tf.tanh(h) * tf.gather(table, i)),
      (tf.constant(0), h0))
  return h


def _nested(x, w):
  """A loop whose body runs a loop: two steps of two steps of h <- sin(h w)."""
  def outer(i, h):
    _, h = tf.while_loop(lambda j, h: j < 2,
                         lambda j, h: (j + 1, tf.sin(tf.matmul(h, w))),
                         (tf.constant(0), h))
    return i + 1, h
  _, h = tf.while_loop(lambda i, h: i < 2, outer, (tf.constant(0), x))
  return h


def _both_outputs(a0, b0):
  """Both loop variables are read after the loop."""
  _, a, b = tf.while_loop(
      lambda i, a, b: i < 2,
      lambda i, a, b: (i + 1, a * b, tf.cos(a) + b),
      (tf.constant(0), a0, b0))
  return [a + 2.0 * b, a]


def _linear_body(h0, x):
  """h <- h * 2.0 + x: the gradient reads no forward value."""
  _, h = tf.while_loop(lambda i, h: i < 3,
                       lambda i, h: (i + 1, h * 2.0 + x), (tf.constant(0), h0))
  return h


def _cond_in_loop(h0, w):
  """Each step takes one of two branches on the sign of the state."""
  def body(i, h):
    h = tf.cond(tf.reduce_sum(h) > 0.0, lambda: tf.sin(h) * w,
                lambda: tf.tanh(h * w))
    return i + 1, h
  _, h = tf.while_loop(lambda i, h: i < 3, body, (tf.constant(0), h0))
  return h


def _maximum_iterations(h0, w):
  """The condition allows 10 steps; maximum_iterations stops after 3."""
  _, h = tf.while_loop(lambda i, h: i < 10,
                       lambda i, h: (i + 1, tf.sin(h * w)),
                       (tf.constant(0), h0), maximum_iterations=3)
  return h


def _gather_from_variable(table, h0):
  """Rows gathered from a captured resource variable (ResourceGather)."""
  _, h = tf.while_loop(
      lambda i, h: i < 3,
      lambda i, h: (i + 1, tf.tanh(h) * tf.gather(table, i)),
      (tf.constant(0), h0.read_value()))
  return h


def _tensor_array_in_loop(x, w):
  """Writes each step's state to a TensorArray, stacked after the loop."""
  ta = tf.TensorArray(x.dtype, size=3)
  def body(i, h, ta):
    h = tf.sin(h * w)
    return i + 1, h, ta.write(i, h)
  _, _, ta = tf.while_loop(lambda i, h, ta: i < 3, body,
                           (tf.constant(0), x, ta))
  return ta.stack()


def _stop_gradient_in_body(x0, y0):
  """y's square enters x through tf.stop_gradient: y's gradient is zeros
  (the loop variable is connected), not None."""
  def body(i, x, y):
    y1 = tf.stop_gradient(tf.square(y))
    return i + 1, tf.square(x) * 0.5 + y1, y
  _, rx, _ = tf.while_loop(lambda i, x, y: i < 2, body,
                           (tf.constant(0), x0, y0))
  return rx


SPECS = [
    Spec("StatelessWhile", _rnn, [(2, 3), (3, 3)], "rnn", domain="unit"),
    Spec("While", _rnn_reading_variable, [(2, 3), (3, 3)], "rnn_variable",
         domain="unit", variables=True),
    Spec("StatelessWhile", _coupled_only_one_returned, [(4,), (4,)],
         "unreached_loop_variable"),
    Spec("StatelessWhile", _invariant_without_gradient, [(2, 3)],
         "invariant_without_gradient"),
    Spec("StatelessWhile", _gather_from_captured_table, [(3, 4), (4,)],
         "gather_captured", domain="unit"),
    Spec("StatelessWhile", _nested, [(2, 3), (3, 3)], "nested",
         domain="unit"),
    Spec("StatelessWhile", _both_outputs, [(3,), (3,)], "both_outputs",
         domain="unit"),
    Spec("StatelessWhile", _linear_body, [(3,), (3,)], "linear_body"),
    Spec("StatelessWhile", _cond_in_loop, [(3,), (3,)], "cond_in_loop",
         domain="unit"),
    Spec("StatelessWhile", _maximum_iterations, [(2, 3), (3,)],
         "maximum_iterations", domain="unit"),
    Spec("While", _gather_from_variable, [(3, 4), (4,)], "gather_variable",
         domain="unit", variables=True),
    Spec("StatelessWhile", _tensor_array_in_loop, [(2,), (2,)],
         "tensor_array", domain="unit"),
    Spec("StatelessWhile", _stop_gradient_in_body, [(3,), (3,)],
         "stop_gradient_in_body", domain="unit", order=0,
         note="tf.stop_gradient: the gradient differs from finite "
         "differences by design; compared with stock only"),
]
