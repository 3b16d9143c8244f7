"""`tfgrad.explain(ys, xs)`: an x is explained as connected exactly where
stock tf.gradients builds a gradient for it, and each kind of None gets its
reason and the blocking op, in a tf.Graph and inside a tf.function."""

import pytest
import tensorflow as tf

import tfgrad


def _program():
  """(ys, xs, stop_gradients, expected reasons, expected blocking op types)."""
  a = tf.constant([1.0, 2.0], name="a")
  b = tf.constant([3.0, 4.0], name="b")
  c = tf.constant(1.7, name="c")
  r = tf.constant([0.4], name="r")
  m = tf.constant(2.0, name="m")
  s = tf.constant(3.0, name="s")
  far = tf.constant(5.0, name="far")
  both = tf.constant(0.5, name="both")
  alpha = tf.constant([2.0], name="alpha")
  stopped = tf.multiply(s, 3.0, name="stopped")
  y = (tf.reduce_sum(a * a) + tf.reduce_sum(tf.stop_gradient(b))
       + tf.cast(tf.cast(c, tf.int32), tf.float32)
       + tf.reduce_sum(tf.round(r))
       + tf.cast(tf.argmax(tf.stack([m, 1.0])), tf.float32)
       + stopped + tf.stop_gradient(both) + tf.round(both))
  y2 = tf.reduce_sum(tf.raw_ops.RandomGammaGrad(alpha=alpha, sample=alpha))
  xs = [a, b, c, r, m, s, far, both]
  expected = ["connected", "stopped", "integer", "not_differentiable",
              "not_differentiable", "stopped", "no_path", "mixed"]
  blockers = [[], ["StopGradient"], ["Cast"], ["Round"], ["ArgMax"], ["Mul"],
              [], ["Round", "StopGradient"]]
  return [y], xs, [stopped], expected, blockers, (y2, alpha)


def _check(ys, xs, stop, expected, blockers):
  found = tfgrad.explain(ys, xs, stop_gradients=stop)
  stock = tf.gradients(ys, xs, stop_gradients=stop)
  assert [e.connected for e in found] == [g is not None for g in stock]
  assert [e.reason for e in found] == expected
  assert [[b.op_type for b in e.blockers] for e in found] == blockers
  for e, x in zip(found, xs):
    for b in e.blockers:
      assert b.path[0] == x.op.name and b.path[-1] == ys[0].op.name
      assert b.op in b.path
    assert e.describe()


def test_reasons_in_a_graph():
  with tf.Graph().as_default():
    ys, xs, stop, expected, blockers, _ = _program()
    _check(ys, xs, stop, expected, blockers)


def test_reasons_in_a_function():
  @tf.function
  def f():
    ys, xs, stop, expected, blockers, _ = _program()
    _check(ys, xs, stop, expected, blockers)
    return ys[0]
  f()


def test_op_without_a_rule():
  with tf.Graph().as_default():
    *_, (y2, alpha) = _program()
    (found,) = tfgrad.explain(y2, alpha)
    assert found.reason == "no_rule"
    assert [b.op_type for b in found.blockers] == ["RandomGammaGrad"]
    with pytest.raises(LookupError):
      tf.gradients(y2, alpha)


def test_variables_and_a_y_that_is_an_x():
  with tf.Graph().as_default():
    v = tf.Variable([1.0, 2.0])
    unused = tf.Variable(3.0)
    y = tf.reduce_sum(v * 2.0)
    found = tfgrad.explain(y, [v, unused, y])
    stock = tf.gradients(y, [v, unused, y])
    assert [e.reason for e in found] == ["connected", "no_path", "connected"]
    assert [e.connected for e in found] == [g is not None for g in stock]
