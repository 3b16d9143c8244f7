"""tfgrad.install(): TF's gradient entry points run tfgrad; uninstall()
restores the very same objects."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gradients as gradients_module
from tensorflow.python.ops import gradients_impl
from tensorflow.python.ops import gradients_util

import tfgrad

_ENTRY_POINTS = [
    (tf, "gradients"), (tf.compat.v1, "gradients"),
    (gradients_impl, "gradients"), (gradients_impl, "gradients_v2"),
    (gradients_module, "gradients"),
    (gradients_util, "_GradientsHelper"), (tf, "hessians"),
    (tf.compat.v1, "hessians"), (gradients_impl, "hessians"),
    (gradients_impl, "HessiansV2"), (gradients_module, "hessians")]


@pytest.fixture
def passes(backprop_passes):
  return backprop_passes


def test_install_and_uninstall_restore_the_same_objects():
  before = [getattr(module, name) for module, name in _ENTRY_POINTS]
  tfgrad.install()
  try:
    assert tf.gradients is tfgrad.gradients
    assert tf.compat.v1.gradients is tfgrad.compat.v1.gradients
    assert tf.hessians is tfgrad.hessians
    assert gradients_util._GradientsHelper is not before[-1]  # pylint: disable=protected-access
    tfgrad.install()  # idempotent
  finally:
    tfgrad.uninstall()
  after = [getattr(module, name) for module, name in _ENTRY_POINTS]
  assert all(a is b for a, b in zip(before, after))
  tfgrad.uninstall()  # idempotent
  assert all(getattr(m, n) is b for (m, n), b in zip(_ENTRY_POINTS, before))


def test_context_manager(passes):
  original = tf.gradients
  with tfgrad.installed():
    assert tf.gradients is tfgrad.gradients
    graph = tf.Graph()
    with graph.as_default():
      x = tf.constant(3.0)
      tf.gradients(x * x, [x])
  assert tf.gradients is original
  assert passes


def test_hessians_run_through_tfgrad(passes):
  graph = tf.Graph()
  with graph.as_default():
    x = tf.constant([1.0, 2.0])
    y = tf.reduce_sum(x * x * x)
    stock = tf.hessians(y, x)
    tfgrad.install()
    ours = tf.hessians(y, x)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run((ours, stock))
  assert passes
  np.testing.assert_allclose(a, b)


def test_v1_optimizer_runs_through_tfgrad(passes):
  def train_step():
    graph = tf.Graph()
    with graph.as_default():
      w = tf.Variable([1.0, -2.0])
      loss = tf.reduce_sum(w * w * 3.0)
      step = tf.compat.v1.train.GradientDescentOptimizer(0.1).minimize(loss)
      with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        sess.run(step)
        return sess.run(w)
  stock = train_step()
  tfgrad.install()
  ours = train_step()
  assert passes
  np.testing.assert_allclose(ours, stock)


def test_cond_gradient_inside_function_uses_tfgrad_helper(passes):
  @tf.function
  def run(x):
    y = tf.cond(x > 0.0, lambda: x * x, lambda: -x)
    return tf.gradients(y, [x])[0]
  stock = run(tf.constant(3.0)).numpy()
  tfgrad.install()

  @tf.function
  def run_again(x):
    y = tf.cond(x > 0.0, lambda: x * x, lambda: -x)
    return tf.gradients(y, [x])[0]
  ours = run_again(tf.constant(3.0)).numpy()
  # The outer pass, and the pass over the true branch's body made by the
  # If op's gradient through gradients_util._GradientsHelper.
  assert len(passes) >= 2
  assert ours == stock == 6.0
