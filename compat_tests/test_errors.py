"""Bad input raises the exception type stock TF raises (and says where)."""

import os
import threading

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


# ----- where a failing gradient op was defined -----

def _failing_matmul_gradient(engine):
  """A gradient MatMul that fails when run: the fed grad_y is [2, 5] where
  y is [2, 4]. Returns the error message of running it in a Session and
  the (file, function) frames of the op's traceback (read while the graph
  lives: TF's traceback objects point into the graph and crash the process
  when read after it is freed, stock's as much as tfgrad's)."""
  graph = tf.Graph()
  with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None, 3])
    y = tf.matmul(x, tf.ones([3, 4]))
    grad_y = tf.compat.v1.placeholder(tf.float32, None)
    grad_x = engine([y], [x], grad_ys=[grad_y])[0]
    with tf.compat.v1.Session() as sess:
      with pytest.raises(tf.errors.InvalidArgumentError) as info:
        sess.run(grad_x, {x: np.ones([2, 3]), grad_y: np.ones([2, 5])})
    frames = _frames(grad_x.op)
  return info.value.message, frames


def _frames(op):
  return [(frame.filename, frame.name) for frame in op.traceback]


def _defined_at(message):
  """The (file, function) lines of TF's "defined at" part of an error."""
  lines = message.split("defined at (most recent call last):")[1]
  lines = lines.split("\nNode:")[0].strip().splitlines()
  return [line.split(",")[0] + "," + line.split(",")[-1] for line in lines
          if line.strip().startswith("File")]


def _is_engine_file(filename):
  root = os.path.dirname(os.path.dirname(os.path.abspath(tfgrad.__file__)))
  return filename.startswith((os.path.join(root, "tfgrad") + os.sep,
                              os.path.join(root, "ops") + os.sep))


def test_a_failing_gradient_op_is_defined_at_the_callers_line_as_in_stock():
  """TF's error message names the frames of the op's creation outside TF:
  for stock's gradient ops the caller's, and so for tfgrad's (not the
  engine's own frames). The op's traceback holds no engine frame."""
  stock_message, stock_trace = _failing_matmul_gradient(tf.gradients)
  ours_message, ours_trace = _failing_matmul_gradient(tfgrad.gradients)
  assert "Matrix size-incompatible" in ours_message
  here = __file__
  assert _defined_at(ours_message) == _defined_at(stock_message)
  assert any(here in line for line in _defined_at(ours_message))
  assert not [f for f, _ in ours_trace if _is_engine_file(f)]
  assert [n for f, n in ours_trace if f == here] == [
      n for f, n in stock_trace if f == here]


def _failing_matmul_gradient_in_function(engine):
  """`_failing_matmul_gradient` inside a `tf.function`: its message."""

  @tf.function(input_signature=[tf.TensorSpec([None, 3]),
                                tf.TensorSpec(None)])
  def grad_x(x, grad_y):
    y = tf.matmul(x, tf.ones([3, 4]))
    return engine([y], [x], grad_ys=[grad_y])[0]

  with pytest.raises(tf.errors.InvalidArgumentError) as info:
    grad_x(np.ones([2, 3], np.float32), np.ones([2, 5], np.float32))
  return info.value.message


def test_in_a_function_a_failing_gradient_op_is_defined_at_the_callers_line():
  stock = _defined_at(_failing_matmul_gradient_in_function(tf.gradients))
  ours = _defined_at(_failing_matmul_gradient_in_function(tfgrad.gradients))
  assert ours == stock
  assert any("grad_x" in line for line in ours)


def test_each_thread_and_each_call_gets_its_callers_trace():
  """The trace is taken per gradient call on its thread: two threads that
  differentiate at the same time through different functions each get
  their own caller's frame, and a later call gets its own line."""
  results = {}
  barrier = threading.Barrier(2)

  def first_caller(graph, y, x):
    barrier.wait()
    with graph.as_default():
      results["first"] = _frames(tfgrad.gradients(y, x)[0].op)

  def second_caller(graph, y, x):
    barrier.wait()
    with graph.as_default():
      results["second"] = _frames(tfgrad.gradients(y, x)[0].op)

  threads = []
  for target in (first_caller, second_caller):
    graph = tf.Graph()
    with graph.as_default():
      x = tf.constant([[1.0, 2.0]])
      y = tf.matmul(x, tf.ones([2, 2]))
    threads.append(threading.Thread(target=target, args=(graph, y, x)))
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  for name in ("first", "second"):
    user = [n for f, n in results[name] if f == __file__]
    assert user[-1] == f"{name}_caller", user
    assert not [f for f, _ in results[name] if _is_engine_file(f)]
