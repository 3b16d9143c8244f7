"""None or zeros for an x that is an output of a multi-output op, against
stock tf.gradients on the same graph, in a tf.Graph and in a tf.function,
for both `unconnected_gradients` modes.

Stock's rule: when backprop processes an op (some output of it got a
gradient) and the op is not stopped and has a rule, or is a function call,
its trainable outputs that got nothing are given zeros for the rule's call,
and an x there gets those zeros. An x on an op nothing reached, on a
stopped op, or on a non-trainable output gets None (zeros under "zero").
"""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import differential


def _c(value, dtype=tf.float32):
  return tf.constant(value, dtype=dtype)


def _split():
  a = _c(np.arange(4.0))
  s = tf.split(a, 2)
  return [tf.reduce_sum(s[0] * s[0])], [s[1], a]


def _split_only_sibling():
  """The split is an xs' op with no x upstream: a stop op, so None."""
  a = _c(np.arange(4.0))
  s = tf.split(a, 2)
  return [tf.reduce_sum(s[0] * s[0])], [s[1]]


def _unstack():
  a = _c(np.ones((3, 2)))
  s = tf.unstack(a)
  return [tf.reduce_sum(s[0])], [s[2], s[1], a]


def _top_k():
  a = _c([3.0, 1.0, 2.0])
  values, indices = tf.math.top_k(a, 2)
  return [tf.reduce_sum(values * values)], [indices, values, a]


def _max_pool_argmax():
  a = _c(np.arange(16.0).reshape(1, 4, 4, 1))
  out, argmax = tf.nn.max_pool_with_argmax(a, 2, 2, "VALID")
  return [tf.reduce_sum(out * out)], [argmax, a]


def _eigh():
  a = _c([[2.0, 1.0], [1.0, 3.0]])
  e, v = tf.linalg.eigh(a)
  return [tf.reduce_sum(e * e)], [v, a]


def _fused_batch_norm(output):
  def build():
    x = _c(np.arange(24.0).reshape(2, 2, 2, 3) / 7.0)
    scale, offset = _c([1.0, 2.0, 0.5]), _c([0.0, 0.1, 0.2])
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, scale, offset, is_training=True)
    outs = {"y": y, "mean": mean, "variance": variance}
    reached = outs.pop(output)
    return [tf.reduce_sum(reached * reached)], list(outs.values()) + [x]
  return build


def _xent():
  logits = _c([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]])
  labels = _c([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
  loss, backprop = tf.raw_ops.SoftmaxCrossEntropyWithLogits(
      features=logits, labels=labels)
  return [tf.reduce_sum(loss)], [backprop, logits]


def _sparse_xent():
  logits = _c([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]])
  loss, backprop = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
      features=logits, labels=tf.constant([0, 2]))
  return [tf.reduce_sum(loss)], [backprop, logits]


def _identity_n():
  a, b = _c([1.0]), _c([2.0])
  p, q = tf.raw_ops.IdentityN(input=[a, b])
  return [p * 2.0], [q, a, b]


def _cond():
  a, b = _c(2.0), _c(3.0)
  p, q = tf.cond(a > 0, lambda: (a * 2.0, b * 3.0), lambda: (a, b))
  return [p], [q, a, b]


def _while():
  a, b = _c(2.0), _c(3.0)
  _, p, q = tf.while_loop(lambda i, p, q: i < 3,
                          lambda i, p, q: (i + 1, p * 2.0, q * 3.0), [0, a, b])
  return [p], [q, a, b]


def _custom_gradient():
  @tf.custom_gradient
  def f(a, b):
    def grad(ga, gb):
      return 2.0 * ga, 3.0 * gb
    return (a * 1.0, b * 1.0), grad
  a, b = _c(2.0), _c(3.0)
  p, q = f(a, b)
  return [p], [q, a, b]


@tf.function
def _two_outputs(a, b):
  return a * 2.0, b * 3.0


def _function_call():
  a, b = _c(2.0), _c(3.0)
  p, q = _two_outputs(a, b)
  return [p], [q, a, b]


def _function_call_stopped():
  """The call is an xs' op with no x upstream (a stop op): stock gives
  zeros to every output of a stopped call all the same."""
  a, b = _c(2.0), _c(3.0)
  p, q = _two_outputs(a, b)
  return [p], [q]


def _x_is_a_y():
  a = _c(np.arange(4.0))
  s = tf.split(a, 2)
  return [s[0]], [s[1], a]


def _xs_are_ys():
  a = _c(np.arange(4.0))
  s = tf.split(a, 2)
  return [s[0]], [s[1], s[0]]


def _upstream_only_through_stop_gradient():
  """The only x upstream of the split is behind a StopGradient: stock still
  processes the split (its walk crosses StopGradient), so zeros."""
  b = _c(np.arange(4.0))
  s = tf.split(tf.stop_gradient(b) * 2.0, 2)
  return [tf.reduce_sum(s[0] * 3.0)], [s[1], b]


def _upstream_only_through_floor():
  b = _c(np.arange(4.0) / 3.0)
  s = tf.split(tf.floor(b) * 2.0, 2)
  return [tf.reduce_sum(s[0] * 3.0)], [s[1], b]


def _unreached_op():
  a = _c(np.arange(4.0))
  s = tf.split(a, 2)
  return [tf.reduce_sum(a * a)], [s[1], s[0], a]


def _stopped_by_argument():
  a = _c(np.arange(4.0))
  s = tf.split(a * 2.0, 2)
  return [tf.reduce_sum(s[0] * s[0]) + tf.reduce_sum(a)], [s[1], a], [s[0]]


def _x_also_stopped():
  a = _c(np.arange(4.0))
  s = tf.split(a * 2.0, 2)
  return [tf.reduce_sum(s[0] * s[0])], [s[1], a], [s[1]]


_CASES = {
    "split": _split,
    "split_only_sibling": _split_only_sibling,
    "unstack": _unstack,
    "top_k": _top_k,
    "max_pool_argmax": _max_pool_argmax,
    "eigh": _eigh,
    "batch_norm_y": _fused_batch_norm("y"),
    "batch_norm_mean": _fused_batch_norm("mean"),
    "softmax_xent": _xent,
    "sparse_softmax_xent": _sparse_xent,
    "identity_n": _identity_n,
    "cond": _cond,
    "while": _while,
    "custom_gradient": _custom_gradient,
    "function_call": _function_call,
    "function_call_stopped": _function_call_stopped,
    "x_is_a_y": _x_is_a_y,
    "xs_are_ys": _xs_are_ys,
    "upstream_only_through_stop_gradient":
        _upstream_only_through_stop_gradient,
    "upstream_only_through_floor": _upstream_only_through_floor,
    "unreached_op": _unreached_op,
    "stopped_by_argument": _stopped_by_argument,
    "x_also_stopped": _x_also_stopped,
}


def _engines(build, mode):
  """Both engines on the case's graph: (ours, theirs). A case may return
  (ys, xs, stop_gradients)."""
  built = build()
  ys, xs = built[:2]
  kwargs = {"unconnected_gradients": mode}
  if len(built) == 3:
    kwargs["stop_gradients"] = built[2]
  return (tfgrad.gradients(ys, xs, **kwargs),
          tf.gradients(ys, xs, **kwargs))


def _values(sess, grads):
  values = iter(sess.run([g for g in grads if g is not None]))
  return [None if g is None else next(values) for g in grads]


@pytest.mark.parametrize("mode", ["none", "zero"])
@pytest.mark.parametrize("name", sorted(_CASES))
def test_matches_stock_in_graph(name, mode):
  graph = tf.Graph()
  with graph.as_default():
    ours, theirs = _engines(_CASES[name], mode)
    with tf.compat.v1.Session(graph=graph) as sess:
      ours_v, theirs_v = _values(sess, ours), _values(sess, theirs)
  differential.assert_same(ours, theirs, ours_v, theirs_v)


@pytest.mark.parametrize("mode", ["none", "zero"])
@pytest.mark.parametrize("name", sorted(_CASES))
def test_matches_stock_in_function(name, mode):
  structure = {}

  @tf.function
  def run():
    ours, theirs = _engines(_CASES[name], mode)
    structure["ours"] = [differential.describe(g) for g in ours]
    structure["theirs"] = [differential.describe(g) for g in theirs]
    return [g for g in ours if g is not None], [
        g for g in theirs if g is not None]

  ours_v, theirs_v = run()
  assert structure["ours"] == structure["theirs"]
  for a, b in zip(ours_v, theirs_v):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


def test_sibling_of_a_processed_output_gets_zeros():
  """The case that motivates the table: stock returns zeros, not None."""
  with tf.Graph().as_default():
    ys, xs = _split()
    ours = tfgrad.gradients(ys, xs)
    assert ours[0] is not None
    with tf.compat.v1.Session() as sess:
      np.testing.assert_array_equal(sess.run(ours[0]), [0.0, 0.0])
