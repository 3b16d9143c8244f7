"""ops/control_flow_grad.py: every spec against stock TF and finite
differences; the While rule leaves no dead op."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import control_flow_specs
from compat_tests import harness


@pytest.mark.parametrize(**harness.cases(control_flow_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(control_flow_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


def _dead_ops(added, grads):
  """Added ops no returned gradient depends on (the walk passes through
  the forward graph: a While gradient feeds accumulators into it)."""
  reached, stack = set(), [g.op for g in grads if g is not None]
  while stack:
    op = stack.pop()
    if op not in reached:
      reached.add(op)
      stack.extend(t.op for t in op.inputs)
      stack.extend(op.control_inputs)
  return [op.name for op in added if op not in reached]


def _weights():
  return [tf.Variable(np.full([3, 5], 0.1), dtype=tf.float32),
          tf.Variable(np.eye(5) * 0.5, dtype=tf.float32)]


def _rnn_loss(w, u):
  inputs = tf.constant(np.linspace(-1.0, 1.0, 24).reshape(4, 2, 3),
                       tf.float32)

  def body(t, h):
    return t + 1, tf.tanh(tf.matmul(tf.gather(inputs, t), w)
                          + tf.matmul(h, u))
  _, h = tf.while_loop(lambda t, h: t < 4, body,
                       (tf.constant(0), tf.zeros([2, 5])),
                       maximum_iterations=4)
  return tf.reduce_sum(h * h), [w, u]


def test_no_dead_ops_for_an_rnn_loop():
  """Stock's While gradient builds zeros for the captured inputs and an
  Identity over every output of the gradient loop; tfgrad's builds only
  what a returned gradient uses, with the same values."""
  graph = tf.Graph()
  with graph.as_default():
    xs = _weights()
    loss, xs = _rnn_loss(*xs)
    before = len(graph.get_operations())
    ours = tfgrad.gradients(loss, xs)
    assert not _dead_ops(graph.get_operations()[before:], ours)
    before = len(graph.get_operations())
    theirs = tf.gradients(loss, xs)
    assert _dead_ops(graph.get_operations()[before:], theirs)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      a, b = sess.run([ours, theirs])
  for g, h in zip(a, b):
    np.testing.assert_allclose(g, h, rtol=1e-6)


def test_loop_in_function_matches_stock():
  weights = _weights()

  @tf.function
  def grads(engine):
    loss, xs = _rnn_loss(*weights)
    return engine(loss, xs)
  for g, h in zip(grads(tfgrad.gradients), grads(tf.gradients)):
    np.testing.assert_allclose(g.numpy(), h.numpy(), rtol=1e-6)
