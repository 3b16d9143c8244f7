"""Bad input raises the exception type stock TF raises (and says where)."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad

ENGINES = {"tfgrad": tfgrad.gradients, "stock": tf.gradients}


def _raises_like_tf(build, exc_type, match=None, **kwargs):
  """Both engines raise `exc_type` for the same graph and arguments."""
  for name, engine in ENGINES.items():
    graph = tf.Graph()
    with graph.as_default():
      ys, xs = build()
      with pytest.raises(exc_type) as info:
        engine(ys, xs, **kwargs)
    if name == "tfgrad" and match:
      assert info.match(match)


def _square():
  x = tf.constant([1.0, 2.0])
  return x * x, [x]


def test_eager_mode_is_a_runtime_error():
  x = tf.constant(1.0)
  for engine in ENGINES.values():
    with pytest.raises(RuntimeError, match="eager"):
      engine(x * x, [x])


def test_grad_ys_length_mismatch():
  _raises_like_tf(_square, ValueError, match="Length mismatch",
                  grad_ys=[np.float32([1.0, 1.0])] * 2)


def test_complex_y_needs_grad_ys():
  def build():
    x = tf.constant([1.0 + 1.0j], tf.complex64)
    return x * x, [x]
  _raises_like_tf(build, TypeError, match="complex")


def test_real_y_with_complex_grad_y():
  _raises_like_tf(_square, TypeError, match="must be real or integer",
                  grad_ys=[np.complex64([1.0, 1.0])])


def test_complex_y_with_real_grad_y():
  def build():
    x = tf.constant([1.0 + 1.0j], tf.complex64)
    return x * x, [x]
  _raises_like_tf(build, TypeError, match="must be complex",
                  grad_ys=[np.float32([1.0])])


def test_non_numeric_y():
  def build():
    x = tf.constant([1.0])
    return tf.strings.as_string(x), [x]
  _raises_like_tf(build, TypeError, match="numeric",
                  grad_ys=[np.array([b"a"])])


def test_unknown_unconnected_gradients():
  _raises_like_tf(_square, ValueError, match="unconnected_gradients",
                  unconnected_gradients="sometimes")


def test_unknown_aggregation_method():
  def build():
    x = tf.constant([1.0, 2.0])
    return x * x + x, [x]
  _raises_like_tf(build, ValueError, match="aggregation_method",
                  aggregation_method=7)


def test_missing_gradient_is_a_lookup_error_naming_op_and_path():
  def build():
    x = tf.constant([1.0, 2.0])
    with tf.compat.v1.get_default_graph().gradient_override_map(
        {"Square": "TfgradNoSuchGradient"}):
      y = tf.square(x, name="the_square")
    return tf.reduce_sum(y, name="the_sum"), [x]
  _raises_like_tf(build, LookupError,
                  match=r"the_square.*Square.*the_sum <- the_square")


@tf.RegisterGradient("TfgradTestBadArity")
def _bad_arity(op, grad):
  del op
  return [grad, grad]


@tf.RegisterGradient("TfgradTestBadShape")
def _bad_shape(op, grad):
  del op, grad
  return tf.zeros([3])


@pytest.mark.parametrize("override,match", [
    ("TfgradTestBadArity", r"'bad'.*Square.*returned 2 gradients.*1 inputs"),
    ("TfgradTestBadShape", r"'bad'.*input index 0.*\(2,\).*\(3,\)")])
def test_rule_returning_wrong_gradients_is_a_value_error(override, match):
  def build():
    x = tf.constant([1.0, 2.0])
    with tf.compat.v1.get_default_graph().gradient_override_map(
        {"Square": override}):
      y = tf.square(x, name="bad")
    return y, [x]
  _raises_like_tf(build, ValueError, match=match)


def test_prevent_gradient_is_a_lookup_error():
  def build():
    x = tf.constant([1.0, 2.0])
    return tf.raw_ops.PreventGradient(input=x, message="no way") * 2.0, [x]
  _raises_like_tf(build, LookupError, match="no way")


def test_invalid_aggregation_method_is_refused_even_when_nothing_aggregates():
  """Deliberate difference: stock TF checks the method only once some
  gradient needs aggregating, so here it accepts the bad value."""
  graph = tf.Graph()
  with graph.as_default():
    x, unused = tf.constant(1.0), tf.constant(2.0)
    tf.gradients(x * 2.0, [unused], aggregation_method=7)
    with pytest.raises(ValueError, match="aggregation_method"):
      tfgrad.gradients(x * 2.0, [unused], aggregation_method=7)
