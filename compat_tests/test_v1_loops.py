"""v1 while loops (control flow v2 off) differentiated by tfgrad's own loop
state (`tfgrad/v1_loops.py`) and rules (`ops/v1_control_flow_grad.py`),
against stock `tf.gradients` on the same graph: values, None pattern,
dtype, static shape, dense vs IndexedSlices, in strict mode (no rule of
TF's registry, no TF engine). Finite differences check the values; the
`ours_only` fixture proves nothing of TF's v1 gradient machinery runs.
"""

import numpy as np
import pytest
import tensorflow as tf

from tensorflow.python.ops import control_flow_util

import tfgrad
from compat_tests import differential

v1 = tf.compat.v1


@pytest.fixture(autouse=True)
def _control_flow_v1(monkeypatch):
  """v1 control flow (Enter/Exit frames) for graphs built in the test."""
  monkeypatch.setattr(control_flow_util, "ENABLE_CONTROL_FLOW_V2", False)


def _c(value, dtype=tf.float32):
  return tf.constant(np.asarray(value), dtype=dtype)


def _frames(graph):
  return {op.type for op in graph.get_operations()}


def compare(build, feed=None, rtol=1e-5, **kwargs):
  """Both engines on `build()`'s (ys, xs) in one tf.Graph (tfgrad strict);
  returns tfgrad's values."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    assert _frames(graph) & {"Exit", "Enter", "Switch"}
    ours = tfgrad.gradients(ys, xs, strict=True, **kwargs)
    theirs = tf.gradients(ys, xs, **kwargs)
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      fetch = lambda gs: [tf.convert_to_tensor(g) for g in gs if g is not None]
      ours_v = iter(sess.run(fetch(ours), feed_dict=feed))
      theirs_v = iter(sess.run(fetch(theirs), feed_dict=feed))
      ours_v = [None if g is None else next(ours_v) for g in ours]
      theirs_v = [None if g is None else next(theirs_v) for g in theirs]
  assert [differential.describe(g) for g in ours] == \
      [differential.describe(g) for g in theirs]
  for i, (a, b) in enumerate(zip(ours_v, theirs_v)):
    if a is None or b is None:
      assert a is None and b is None, f"gradient {i}: None pattern differs"
    else:
      np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol,
                                 err_msg=f"gradient {i} differs")
  return ours_v


# ----- plain loops -----

def _one_var():
  x = _c(1.3)
  _, z = v1.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * x),
                       [tf.constant(0), x])
  return z, [x]


def _several_vars_and_invariants():
  x, w = _c([0.5, -0.2, 0.1]), _c([[0.3, 0.1, 0.0], [0.2, -0.4, 0.5],
                                   [0.1, 0.1, 0.1]])
  b = _c([0.1, 0.2, 0.3])

  def body(i, h, acc):
    h = tf.tanh(tf.linalg.matvec(w, h) + b)
    return i + 1, h, acc + tf.reduce_sum(h * h)
  _, h, acc = v1.while_loop(lambda i, h, acc: i < 4, body,
                            [tf.constant(0), x, _c(0.0)])
  return [tf.reduce_sum(h), acc], [x, w, b]


def _unused_output_and_stop_gradient():
  """A TF1 user's case: stock gives zeros for y (its exit is not used, and
  its only way into x's results is through tf.stop_gradient)."""
  x, y = _c([1.3, 0.5]), _c(2.0)

  def body(a, b):
    b1 = tf.stop_gradient(tf.square(b))
    return tf.square(a) * 0.5 + b1 * 0.01, b1
  rx, _ = v1.while_loop(lambda a, b: tf.reduce_sum(a) < 10.0, body, (x, y),
                        maximum_iterations=5)
  return rx, [x, y]


def _unreached_loop_var():
  """A loop variable nothing reached (its Exit unused) that feeds the one
  asked for: zeros enter the gradient loop for it."""
  x, y = _c(0.7), _c(1.1)
  _, a, _ = v1.while_loop(lambda i, a, b: i < 3,
                          lambda i, a, b: (i + 1, a * b, b + a),
                          [tf.constant(0), x, y])
  return a, [x, y]


def _not_depending_on_input():
  """The body's result does not depend on the loop variable's input: the
  gradient loop's Merge gets zeros from the second iteration on."""
  x, w = _c(2.0), _c(3.0)
  _, a = v1.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, w * 2.0),
                       [tf.constant(0), x])
  return a, [x, w]


def _maximum_iterations():
  x = _c([0.3, 0.4])
  _, a = v1.while_loop(lambda i, a: i < 100, lambda i, a: (i + 1, tf.sin(a)),
                       (tf.constant(0), x), maximum_iterations=7)
  return a, [x]


def _parallel_and_swap(parallel_iterations, swap_memory):
  def build():
    x, w = _c([0.3, 0.4, 0.5]), _c([1.1, 0.9, 1.2])
    _, a = v1.while_loop(
        lambda i, a: i < 5, lambda i, a: (i + 1, tf.sin(a) * w + a * a * 0.1),
        [tf.constant(0), x], parallel_iterations=parallel_iterations,
        swap_memory=swap_memory)
    return a, [x, w]
  return build


def _unknown_shapes():
  x = v1.placeholder(tf.float32, [None, 2], name="x")
  _, a = v1.while_loop(lambda i, a: i < 3,
                       lambda i, a: (i + 1, tf.concat([a, a * 2.0], 0)),
                       [tf.constant(0), x],
                       shape_invariants=[tf.TensorShape([]),
                                         tf.TensorShape([None, 2])])
  return tf.reduce_sum(tf.sin(a)), [x]


def _gather_of_invariant():
  """A gather from a loop invariant: IndexedSlices accumulated per
  iteration."""
  params = _c(np.arange(12.0).reshape(4, 3) / 10.0)

  def body(i, acc):
    return i + 1, acc + tf.gather(params, tf.stack([i % 4, (i + 1) % 4]))
  _, acc = v1.while_loop(lambda i, acc: i < 3, body,
                         [tf.constant(0), tf.zeros([2, 3])])
  return tf.reduce_sum(acc * acc), [params]


def _resource_variable():
  w = tf.Variable([0.5, -1.0])

  def body(i, a):
    return i + 1, a * w + tf.reduce_sum(w)
  _, a = v1.while_loop(lambda i, a: i < 3, body, [tf.constant(0), _c([1.0, 2.0])])
  return a, [w]


def _loop_exit_is_also_x():
  x = _c(0.4)
  _, a = v1.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * 1.5),
                       [tf.constant(0), x])
  return tf.square(a), [a, x]


def _integer_loop_var_and_float():
  x = _c(1.5)
  i, a = v1.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * x),
                       [tf.constant(0), x])
  return [a, tf.cast(i, tf.float32)], [x]


def _indexed_slices_into_exit():
  """A gather of the loop's result: IndexedSlices enter the gradient loop."""
  x = _c(np.linspace(0.1, 1.2, 12).reshape(4, 3))
  _, a = v1.while_loop(lambda i, a: i < 2, lambda i, a: (i + 1, a * 1.5),
                       [tf.constant(0), x])
  return tf.reduce_sum(tf.gather(a, [0, 2])), [x]


def _ref_variable():
  w = v1.Variable([0.5, -1.0], use_resource=False)

  def body(i, a):
    return i + 1, a * w + 1.0
  _, a = v1.while_loop(lambda i, a: i < 3, body,
                       [tf.constant(0), _c([1.0, 2.0])])
  return a, [w]


def _exit_used_twice():
  x = _c([0.2, 0.9])
  _, a, b = v1.while_loop(lambda i, a, b: i < 3,
                          lambda i, a, b: (i + 1, tf.sin(a) + b, b * a),
                          [tf.constant(0), x, x * 2.0])
  return [a * b, a], [x]


PLAIN = {
    "ref_variable": _ref_variable,
    "exit_used_twice": _exit_used_twice,
    "one_var": _one_var,
    "several_vars_and_invariants": _several_vars_and_invariants,
    "unused_output_and_stop_gradient": _unused_output_and_stop_gradient,
    "unreached_loop_var": _unreached_loop_var,
    "not_depending_on_input": _not_depending_on_input,
    "maximum_iterations": _maximum_iterations,
    "parallel_1": _parallel_and_swap(1, False),
    "parallel_10_swap": _parallel_and_swap(10, True),
    "gather_of_invariant": _gather_of_invariant,
    "resource_variable": _resource_variable,
    "loop_exit_is_also_x": _loop_exit_is_also_x,
    "integer_loop_var_and_float": _integer_loop_var_and_float,
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_plain_loop_matches_tf(name):
  compare(PLAIN[name])


def test_unknown_shapes_match_tf():
  compare(_unknown_shapes, feed={"x:0": np.ones([2, 2], np.float32)})


def test_stop_gradient_case_gives_zeros_as_stock():
  values = compare(_unused_output_and_stop_gradient)
  assert values[1] == 0.0


@pytest.mark.parametrize("unconnected", ["none", "zero"])
def test_grad_ys_and_unconnected(unconnected):
  def build():
    x, other = _c([0.5, 1.5]), _c(3.0)
    _, a = v1.while_loop(lambda i, a: i < 2, lambda i, a: (i + 1, a * a),
                         [tf.constant(0), x])
    return a, [x, other]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    gy = _c([2.0, -1.0])
    ours = tfgrad.gradients(ys, xs, grad_ys=gy, strict=True,
                            unconnected_gradients=unconnected)
    theirs = tf.gradients(ys, xs, grad_ys=gy,
                          unconnected_gradients=unconnected)
    assert [differential.describe(g) for g in ours] == \
        [differential.describe(g) for g in theirs]
    with v1.Session() as sess:
      for a, b in zip(ours, theirs):
        if a is not None:
          np.testing.assert_allclose(*sess.run([a, b]), rtol=1e-6)


def test_two_gradient_calls_on_one_loop():
  graph = tf.Graph()
  with graph.as_default():
    z, xs = _one_var()
    first = tfgrad.gradients(z, xs, strict=True)
    second = tfgrad.gradients(z * 2.0, xs, strict=True)
    theirs = tf.gradients(z, xs)
    with v1.Session() as sess:
      a, b, c = sess.run([first[0], second[0], theirs[0]])
  np.testing.assert_allclose(a, c, rtol=1e-6)
  np.testing.assert_allclose(b, 2 * c, rtol=1e-6)


@pytest.mark.parametrize("options", [
    dict(colocate_gradients_with_ops=True), dict(gate_gradients=True),
    dict(aggregation_method=tf.AggregationMethod.EXPERIMENTAL_TREE)],
                         ids=["colocate", "gate", "tree"])
def test_v1_options(options):
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _several_vars_and_invariants()
    ours = tfgrad.compat.v1.gradients(ys, xs, strict=True, **options)
    theirs = v1.gradients(ys, xs, **options)
    with v1.Session() as sess:
      for a, b in zip(sess.run(ours), sess.run(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-5)


# ----- v1 conds outside loops (the same rules) -----

def _cond_other_branch_ignores_x():
  x, w = _c([0.5, -1.5]), _c(2.0)
  y = v1.cond(tf.reduce_sum(x) < 0.0, lambda: tf.sin(x) * w, lambda: w * 3.0)
  return tf.reduce_sum(y), [x, w]


def _nested_conds():
  x = _c([0.5, 1.5])
  y = v1.cond(x[0] > 0.0,
              lambda: v1.cond(x[1] > 1.0, lambda: x * x, lambda: tf.exp(x)),
              lambda: -x)
  return tf.reduce_sum(y), [x]


def _cond_reading_variable():
  w = tf.Variable([0.5, -0.25])
  x = _c([1.0, 2.0])
  y = v1.cond(x[0] > 0.0, lambda: x * w, lambda: x)
  return tf.reduce_sum(y), [w, x]


def _cond_gather():
  params = _c(np.arange(6.0).reshape(3, 2))
  y = v1.cond(params[0, 0] < 1.0, lambda: tf.gather(params, [0, 2]),
              lambda: params[:2] * 2.0)
  return tf.reduce_sum(y * y), [params]


CONDS = {
    "other_branch_ignores_x": _cond_other_branch_ignores_x,
    "nested_conds": _nested_conds,
    "reading_variable": _cond_reading_variable,
    "gather": _cond_gather,
}


@pytest.mark.parametrize("name", sorted(CONDS))
def test_v1_cond_matches_tf(name):
  compare(CONDS[name])


# ----- nesting: loops in loops, conds in loops, loops in conds -----

def _nested_loops():
  x, w = _c([0.5, 0.2]), _c([1.1, 0.7])

  def outer(i, h):
    _, h = v1.while_loop(lambda j, h: j < i + 1,
                         lambda j, h: (j + 1, tf.sin(h) * w + h), [0, h])
    return i + 1, h
  _, h = v1.while_loop(lambda i, h: i < 3, outer, [tf.constant(0), x])
  return tf.reduce_sum(h * h), [x, w]


def _nested_unknown_shape():
  x = v1.placeholder(tf.float32, [None], name="x")
  w = _c(0.9)

  def outer(i, h):
    _, h = v1.while_loop(lambda j, h: j < 2, lambda j, h: (j + 1, h * w + 0.1),
                         [0, h])
    return i + 1, tf.sin(h)
  _, h = v1.while_loop(lambda i, h: i < 3, outer, [tf.constant(0), x])
  return tf.reduce_sum(h), [x, w]


def _cond_in_loop():
  x, w = _c([0.5, -0.3]), _c(1.7)

  def body(i, h):
    h = v1.cond(i % 2 > 0, lambda: tf.sin(h) * w, lambda: h * h + w)
    return i + 1, h
  _, h = v1.while_loop(lambda i, h: i < 4, body, [tf.constant(0), x])
  return tf.reduce_sum(h), [x, w]


def _cond_in_loop_one_branch_constant():
  x = _c([0.5, 2.0])

  def body(i, h):
    h = v1.cond(tf.reduce_sum(h) > 1.0, lambda: h * 0.5, lambda: _c([1., 1.]))
    return i + 1, h
  _, h = v1.while_loop(lambda i, h: i < 3, body, [tf.constant(0), x])
  return tf.reduce_sum(h), [x]


def _loop_in_cond():
  x, w = _c([0.5, 0.25]), _c(1.2)

  def true_fn():
    _, h = v1.while_loop(lambda i, h: i < 3, lambda i, h: (i + 1, h * w),
                         [tf.constant(0), x])
    return h
  y = v1.cond(tf.reduce_sum(x) > 0.0, true_fn, lambda: x * 3.0)
  return tf.reduce_sum(y), [x, w]


def _nested_unused_inner_var():
  """An inner loop variable nobody reads after the inner loop: zeros for
  its Exit, built in the outer gradient loop."""
  x = v1.placeholder(tf.float32, [None], name="x")

  def outer(i, h):
    _, h, _ = v1.while_loop(lambda j, h, u: j < 2,
                            lambda j, h, u: (j + 1, h * u, u + h),
                            [0, h, h * 0.5])
    return i + 1, h
  _, h = v1.while_loop(lambda i, h: i < 2, outer, [tf.constant(0), x])
  return tf.reduce_sum(h), [x]


def _loop_in_cond_in_loop():
  x, w = _c([0.5, 0.25]), _c(1.2)

  def outer(i, h):
    def true_fn():
      return v1.while_loop(lambda j, g: j < 2,
                           lambda j, g: (j + 1, tf.sin(g) * w), [0, h])[1]
    return i + 1, v1.cond(i % 2 > 0, true_fn, lambda: h * w)
  _, h = v1.while_loop(lambda i, h: i < 3, outer, [tf.constant(0), x])
  return tf.reduce_sum(h), [x, w]


NESTED = {
    "loop_in_cond_in_loop": _loop_in_cond_in_loop,
    "nested_loops": _nested_loops,
    "cond_in_loop": _cond_in_loop,
    "cond_in_loop_one_branch_constant": _cond_in_loop_one_branch_constant,
    "loop_in_cond": _loop_in_cond,
}


@pytest.mark.parametrize("name", sorted(NESTED))
def test_nested_matches_tf(name):
  compare(NESTED[name])


def test_nested_unused_inner_var_matches_tf():
  compare(_nested_unused_inner_var,
          feed={"x:0": np.array([0.3, 0.6], np.float32)})


def test_nested_unknown_shape_matches_tf():
  compare(_nested_unknown_shape, feed={"x:0": np.array([0.3, 0.6, -0.2],
                                                        np.float32)})


# ----- TensorArray, scan, map_fn, foldl, dynamic_rnn -----

def _tensor_array_loop():
  x = _c(np.linspace(-1.0, 1.0, 12).reshape(4, 3))
  w = _c([0.5, 1.5, -0.5])
  inp = tf.TensorArray(tf.float32, size=4).unstack(x)

  def body(i, h, out):
    h = tf.tanh(inp.read(i) * w + h)
    return i + 1, h, out.write(i, h * h)
  _, _, out = v1.while_loop(lambda i, h, out: i < 4, body,
                            [tf.constant(0), tf.zeros([3]),
                             tf.TensorArray(tf.float32, size=4)])
  return tf.reduce_sum(out.stack()), [x, w]


def _scan():
  x, w = _c(np.linspace(0.1, 1.0, 10).reshape(5, 2)), _c([0.9, 1.1])
  ys = tf.scan(lambda a, e: tf.sin(a * w + e), x, initializer=_c([0.0, 0.0]))
  return tf.reduce_sum(ys), [x, w]


def _nested_scan():
  x = _c(np.linspace(0.1, 1.0, 12).reshape(3, 4))
  w = _c(0.8)

  def row(acc, r):
    inner = tf.scan(lambda a, e: a * w + tf.sin(e), r, initializer=_c(0.0))
    return acc + inner
  ys = tf.scan(row, x, initializer=tf.zeros([4]))
  return tf.reduce_sum(ys * ys), [x, w]


def _map_fn():
  x, w = _c(np.linspace(-1, 1, 8).reshape(4, 2)), _c([[0.5, 0.1], [0.2, 0.4]])
  ys = tf.map_fn(lambda r: tf.tanh(tf.linalg.matvec(w, r)), x)
  return tf.reduce_sum(ys), [x, w]


def _foldl():
  x, w = _c([0.5, 0.6, 0.7, 0.8]), _c(1.3)
  total = tf.foldl(lambda a, e: a * w + tf.sin(e), x, initializer=_c(0.1))
  return total, [x, w]


def _cells():
  import tf_keras  # pylint: disable=g-import-not-at-top
  return tf_keras.layers


def _dynamic_rnn(cell_name, bidirectional=False):
  def build():
    cells = _cells()
    x = _c(np.random.RandomState(0).uniform(-1, 1, (2, 6, 3)))
    make = lambda: getattr(cells, cell_name)(4)
    if bidirectional:
      (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(make(), make(), x,
                                                    dtype=tf.float32)
      out = tf.concat([fw, bw], -1)
    else:
      out, _ = v1.nn.dynamic_rnn(make(), x, dtype=tf.float32)
    xs = [x] + v1.trainable_variables()
    return tf.reduce_sum(out * out), xs
  return build


def _dynamic_rnn_sequence_length():
  cells = _cells()
  x = _c(np.random.RandomState(1).uniform(-1, 1, (3, 5, 2)))
  out, state = v1.nn.dynamic_rnn(cells.LSTMCell(3), x, dtype=tf.float32,
                                 sequence_length=tf.constant([5, 2, 4]))
  return [tf.reduce_sum(out), tf.reduce_sum(state[0])], \
      [x] + v1.trainable_variables()


def _dynamic_rnn_swap_memory():
  cells = _cells()
  x = _c(np.random.RandomState(2).uniform(-1, 1, (2, 4, 3)))
  out, _ = v1.nn.dynamic_rnn(cells.GRUCell(3), x, dtype=tf.float32,
                             swap_memory=True, parallel_iterations=4)
  return tf.reduce_sum(out), [x] + v1.trainable_variables()


SEQUENCES = {
    "dynamic_rnn_swap_memory": _dynamic_rnn_swap_memory,
    "dynamic_rnn_sequence_length": _dynamic_rnn_sequence_length,
    "tensor_array_loop": _tensor_array_loop,
    "scan": _scan,
    "nested_scan": _nested_scan,
    "map_fn": _map_fn,
    "foldl": _foldl,
    "dynamic_rnn_lstm": _dynamic_rnn("LSTMCell"),
    "dynamic_rnn_gru": _dynamic_rnn("GRUCell"),
    "bidirectional_dynamic_rnn_lstm": _dynamic_rnn("LSTMCell", True),
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_sequences_match_tf(name):
  compare(SEQUENCES[name])


# ----- finite differences -----

def _fd_one_var(x, w):
  _, a = v1.while_loop(lambda i, a: i < 3,
                       lambda i, a: (i + 1, tf.sin(a) * w + a),
                       [tf.constant(0), x])
  return a


def _fd_cond_in_loop(x, w):
  def body(i, h):
    return i + 1, v1.cond(i % 2 > 0, lambda: tf.sin(h) * w, lambda: h * w)
  return v1.while_loop(lambda i, h: i < 4, body, [tf.constant(0), x])[1]


def _fd_nested(x, w):
  def outer(i, h):
    return i + 1, v1.while_loop(lambda j, h: j < 2,
                                lambda j, h: (j + 1, tf.tanh(h * w)), [0, h])[1]
  return v1.while_loop(lambda i, h: i < 2, outer, [tf.constant(0), x])[1]


def _fd_scan(x, w):
  return tf.scan(lambda a, e: tf.sin(a * w) + e, x,
                 initializer=tf.zeros([2], tf.float64))


@pytest.mark.parametrize("fn", [_fd_one_var, _fd_cond_in_loop, _fd_nested,
                                _fd_scan], ids=lambda f: f.__name__)
def test_finite_differences_first_order(fn):
  x = np.array([[0.3, -0.4], [0.2, 0.5], [0.1, 0.7]]) if fn is _fd_scan \
      else np.array([0.3, -0.4])
  # along random directions: Jacobians by pfor do not vectorize v1 stacks
  report = tfgrad.check_gradients(fn, [x, np.array([0.8, 1.1])], order=1,
                                  strict=True, directions=4)
  assert report.checked > 0 and report.ok, report


def test_second_order_raises_like_stock():
  """Stock TF refuses the gradient of a v1 gradient loop (TypeError);
  tfgrad does too, naming the loop and op."""
  messages = []
  for engine in (tf.gradients,
                 lambda y, x: tfgrad.gradients(y, x, strict=True)):
    with tf.Graph().as_default():
      z, xs = _one_var()
      g = engine(z, xs)[0]
      with pytest.raises(TypeError) as error:
        engine(g, xs)
      messages.append(str(error.value))
  assert "Second-order" in messages[0] and "Second-order" in messages[1]
  assert "gradients/while/while_context" in messages[1]


# ----- bad input -----

def test_initial_value_from_inside_body_raises_like_stock():
  for engine in (tf.gradients,
                 lambda y, x: tfgrad.gradients(y, x, strict=True)):
    graph = tf.Graph()
    with graph.as_default():
      x = _c(1.3, tf.float32)
      errors = []

      def body(i, a, engine=engine):
        a2 = a * 2.0
        try:
          engine(a2, x)
        except ValueError as e:
          errors.append(e)
        return i + 1, a2
      _, z = v1.while_loop(lambda i, a: i < 3, body, [tf.constant(0), x])
      assert len(errors) == 1
      assert "initial value" in str(errors[0])
      assert f"'{x.op.name}'" in str(errors[0])
      # the graph still differentiates afterwards
      if engine is tf.gradients:
        continue
      assert "while/while_context" in str(errors[0])
      ours = tfgrad.gradients(z, [x], strict=True)[0]
      with v1.Session() as sess:
        np.testing.assert_allclose(sess.run(ours), 8.0)


def test_indexed_slices_into_loop_exit_raises_like_stock():
  """A gather of a loop's result sends IndexedSlices into the gradient
  loop, whose back edge then needs the gradient's dense shape: stock TF
  raises InvalidArgumentError when it closes the edge; so does tfgrad.
  The same graph then differentiates a dense use of the loop."""
  kinds = []
  for engine in (tf.gradients,
                 lambda y, x: tfgrad.gradients(y, x, strict=True)):
    with tf.Graph().as_default():
      ys, xs = _indexed_slices_into_exit()
      with pytest.raises(tf.errors.InvalidArgumentError) as error:
        engine(ys, xs)
      kinds.append(type(error.value))
      if engine is tf.gradients:
        continue  # stock leaves the graph inside its gradient loop's context
      dense = tf.reduce_sum(ys.op.inputs[0].op.inputs[0] * 2.0)
      ours = tfgrad.gradients(dense, xs, strict=True)[0]
      theirs = tf.gradients(dense, xs)[0]
      with v1.Session() as sess:
        np.testing.assert_allclose(*sess.run([ours, theirs]), rtol=1e-6)
  assert kinds[0] is kinds[1]


def test_back_prop_false_gives_none_like_stock():
  def build():
    x = _c(1.3)
    _, z = v1.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * x),
                         [tf.constant(0), x], back_prop=False)
    return z + x, [x]
  assert compare(build) == [1.0]


def test_gradient_inside_cond_in_loop_from_outside_raises_like_stock():
  """tf.gradients of a tensor inside a cond branch of a loop body, asked
  outside the loop: both engines raise ValueError at the op that would
  read the branch's value from outside its frame; tfgrad's message names
  the op whose gradient was being built. The graph works afterwards."""
  errors = []
  for engine in (tf.gradients,
                 lambda y, x: tfgrad.gradients(y, x, strict=True)):
    with tf.Graph().as_default():
      x = _c(1.3)
      box = {}

      def true_fn():
        box["t"] = tf.sin(x)
        return box["t"] * 2.0

      def body(i, a):
        return i + 1, a + v1.cond(x > 0.0, true_fn, lambda: x)
      _, z = v1.while_loop(lambda i, a: i < 2, body, [tf.constant(0), x])
      with pytest.raises(ValueError) as error:
        engine(box["t"], x)
      errors.append(str(error.value))
      if len(errors) == 2:
        ours = tfgrad.gradients(z, x, strict=True)[0]
        theirs = tf.gradients(z, x)[0]
        with v1.Session() as sess:
          np.testing.assert_allclose(*sess.run([ours, theirs]), rtol=1e-6)
  assert "while" in errors[0]
  assert "while/cond/Sin" in errors[1] and "while loop" in errors[1]


# ----- proof that the gradient is tfgrad's -----

_V1_TYPES = ("Switch", "Merge", "Enter", "Exit", "NextIteration", "RefSwitch",
             "RefMerge", "RefEnter", "RefExit", "RefNextIteration")


def _refuse(what):
  def refused(*args, **kwargs):
    raise AssertionError(f"{what} was called")
  return refused


@pytest.fixture
def ours_only(monkeypatch):
  """Within the test body: TF's engine (`_GradientsHelper`, also as kept in
  `tf_compat`), TF's registered rules for v1 control flow, and
  every function and class of TF's `control_flow_state` raise when used;
  tfgrad runs in strict mode. monkeypatch restores all afterwards."""
  from tensorflow.python.framework import ops as tf_ops  # pylint: disable=g-import-not-at-top
  from tensorflow.python.ops import control_flow_state  # pylint: disable=g-import-not-at-top
  from tensorflow.python.ops import gradients_util  # pylint: disable=g-import-not-at-top

  def apply():
    monkeypatch.setattr(gradients_util, "_GradientsHelper",
                        _refuse("TF's _GradientsHelper"))
    monkeypatch.setattr(tfgrad.tf_compat, "ORIGINAL_GRADIENTS_HELPER",
                        _refuse("TF's _GradientsHelper"))
    registry = tf_ops.gradient_registry._registry  # pylint: disable=protected-access
    for op_type in _V1_TYPES:
      entry = dict(registry[op_type])
      entry["type"] = _refuse(f"TF's {op_type} gradient")
      monkeypatch.setitem(registry, op_type, entry)
    for name in dir(control_flow_state):
      value = getattr(control_flow_state, name)
      if callable(value) and getattr(value, "__module__", None) == \
          control_flow_state.__name__:
        monkeypatch.setattr(control_flow_state, name,
                            _refuse(f"control_flow_state.{name}"))
    monkeypatch.setenv("TFGRAD_STRICT", "1")
  return apply


ALL_CASES = {**PLAIN, **NESTED, **SEQUENCES, **CONDS}


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_ours_without_tf_machinery(name, ours_only):
  """Stock's gradient is built first; then, with TF's machinery refusing
  every call, tfgrad's; both run in one Session and must agree."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = ALL_CASES[name]()
    theirs = tf.gradients(ys, xs)
    ours_only()
    ours = tfgrad.gradients(ys, xs)
    assert [differential.describe(g) for g in ours] == \
        [differential.describe(g) for g in theirs]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      for a, b in zip(ours, theirs):
        if a is not None:
          a, b = sess.run([tf.convert_to_tensor(a), tf.convert_to_tensor(b)])
          np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_proof_fixture_bites(ours_only):
  """The fixture's patches are live: stock tf.gradients of a v1 loop
  fails under it."""
  with tf.Graph().as_default():
    z, xs = _one_var()
    ours_only()
    with pytest.raises(AssertionError, match="_GradientsHelper"):
      tf.gradients(z, xs)


# ----- training -----

def _lstm_classifier_losses(install):
  """A 2-layer dynamic_rnn LSTM classifier trained 5 steps by a v1 Adam
  optimizer, its gradients from tfgrad (`tfgrad.installed()`) or stock;
  returns the losses and final weights."""
  cells = _cells()
  rng = np.random.RandomState(3)
  inputs = rng.uniform(-1, 1, (4, 7, 3)).astype(np.float32)
  labels = rng.randint(0, 3, 4)
  graph = tf.Graph()
  with graph.as_default():
    x = tf.constant(inputs)
    h = x
    for layer in range(2):
      with v1.variable_scope(f"layer{layer}"):
        cell = cells.LSTMCell(
            5, kernel_initializer=tf.constant_initializer(
                rng.uniform(-0.5, 0.5, (h.shape[-1], 20))),
            recurrent_initializer=tf.constant_initializer(
                rng.uniform(-0.5, 0.5, (5, 20))))
        h, _ = v1.nn.dynamic_rnn(cell, h, dtype=tf.float32)
    w = tf.Variable(rng.uniform(-0.5, 0.5, (5, 3)).astype(np.float32))
    logits = tf.matmul(h[:, -1], w)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.constant(labels), logits=logits))
    optimizer = v1.train.AdamOptimizer(0.05)
    if install:
      with tfgrad.installed(), tfgrad.strict_mode():
        train = optimizer.minimize(loss)
    else:
      train = optimizer.minimize(loss)
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      losses = [sess.run([loss, train])[0] for _ in range(5)]
      weights = sess.run(v1.trainable_variables())
  return losses, weights


def test_two_layer_lstm_classifier_trains_as_stock():
  ours, ours_w = _lstm_classifier_losses(install=True)
  theirs, theirs_w = _lstm_classifier_losses(install=False)
  np.testing.assert_allclose(ours, theirs, rtol=1e-5)
  assert ours[-1] < ours[0]
  assert len(ours_w) == len(theirs_w) == 7  # 2 x (kernel, recurrent, bias), w
  for a, b in zip(ours_w, theirs_w):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_gradients_inside_the_loop_body():
  """tf.gradients called inside a v1 loop body, with respect to a loop
  invariant and to the body's own input: allowed, built in the forward
  loop; values per iteration as stock's."""
  results = []
  for engine in (tf.gradients,
                 lambda y, x: tfgrad.gradients(y, x, strict=True)):
    with tf.Graph().as_default():
      w = _c([0.5, 2.0])

      def body(i, a, acc, engine=engine):
        y = tf.reduce_sum(tf.sin(a * w))
        gw, ga = engine(y, [w, a])
        return i + 1, a * 1.1, acc + gw + ga
      _, _, acc = v1.while_loop(lambda i, a, acc: i < 3, body,
                                [tf.constant(0), _c([0.3, -0.7]),
                                 tf.zeros([2])])
      with v1.Session() as sess:
        results.append(sess.run(acc))
  np.testing.assert_allclose(results[1], results[0], rtol=1e-6)


def test_two_threads_differentiate_one_loop():
  """Two threads build gradients of the same v1 loop at once (each call
  adds its own counters and stacks to the forward loop, taking turns on
  the graph); both equal stock's."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _several_vars_and_invariants()
    theirs = tf.gradients(ys, xs)
  results = differential.gradients_on_two_threads(graph, ys, xs, strict=True)
  with v1.Session(graph=graph) as sess:
    want = sess.run(theirs)
    for got in sess.run(results):
      for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize("swap", [False, True])
def test_history_stacks_honour_swap_memory(swap):
  """Every forward value the gradient loop reads is pushed with the loop's
  swap_memory, as stock's pushes are."""
  pushes = []
  for engine in (tf.gradients,
                 lambda y, x: tfgrad.gradients(y, x, strict=True)):
    with tf.Graph().as_default() as graph:
      ys, xs = _parallel_and_swap(4, swap)()
      before = len(graph.get_operations())
      engine(ys, xs)
      pushes.append([op.get_attr("swap_memory")
                     for op in graph.get_operations()[before:]
                     if op.type == "StackPushV2"])
  assert pushes[1] and set(pushes[1]) == {swap}
  assert set(pushes[0]) == {swap}


def _each_engine(build):
  """For stock TF, then tfgrad in strict mode: a new graph with `build()`'s
  model, differentiated; yields (ops the gradient added, the gradients)
  inside the graph, so the caller can run them."""
  for engine in (tf.gradients,
                 lambda y, x: tfgrad.gradients(y, x, strict=True)):
    with tf.Graph().as_default() as graph:
      ys, xs = build()
      before = len(graph.get_operations())
      grads = engine(ys, xs)
      yield graph.get_operations()[before:], grads


def test_one_history_per_forward_value():
  """In a nested tf.scan, stock TF pushes a value of the outer loop that
  both gradient loops read onto two stacks; tfgrad keeps one history per
  value (one stack fewer) with the same gradients (test_sequences)."""
  stock, ours = [[op.inputs[1].name for op in added
                  if op.type == "StackPushV2"]
                 for added, _ in _each_engine(_nested_scan)]
  assert len(set(ours)) == len(ours)
  assert set(ours) == set(stock) and len(ours) < len(stock)


def _pushed_reads(build):
  """Per engine: the pushed values that are variable reads (or an
  identity of one), and the gradient values (stock first)."""
  out = []
  for added, grads in _each_engine(build):
    pushed = [op.inputs[1] for op in added if op.type == "StackPushV2"]
    pushed = [t.name for t in pushed if "ReadVariableOp" in
              {t.op.type} | {i.op.type for i in t.op.inputs}]
    with v1.Session() as sess:
      sess.run(v1.global_variables_initializer())
      out.append((pushed, sess.run(grads)))
  return out


def test_unwritten_variable_is_read_again_not_stacked():
  """A resource variable read in the loop body that no op writes: stock
  pushes its value every iteration; tfgrad reads it again in the gradient
  loop. Same gradients."""
  def build():
    w = tf.Variable([[0.5, -0.3], [0.2, 0.4]])
    x = _c([[0.1, 0.2]])
    _, h = v1.while_loop(lambda i, h: i < 5,
                         lambda i, h: (i + 1, tf.tanh(tf.matmul(h, w))),
                         [tf.constant(0), x])
    return tf.reduce_sum(h), [w, x]
  (stock_pushed, stock), (ours_pushed, ours) = _pushed_reads(build)
  assert stock_pushed and not ours_pushed
  for a, b in zip(ours, stock):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_variable_written_in_the_loop_is_stacked_as_stock():
  """A variable the loop body assigns: its reads differ per iteration, so
  tfgrad keeps their history as stock does; same gradients."""
  def build():
    w = tf.Variable([0.5, -0.3])
    x = _c([0.1, 0.2])

    def body(i, h):
      with tf.control_dependencies([w.assign_add([0.1, 0.1])]):
        return i + 1, tf.sin(h * w.read_value())
    _, h = v1.while_loop(lambda i, h: i < 4, body, [tf.constant(0), x],
                         parallel_iterations=1)
    return tf.reduce_sum(h), [x]
  (stock_pushed, stock), (ours_pushed, ours) = _pushed_reads(build)
  assert stock_pushed and len(ours_pushed) == len(stock_pushed)
  np.testing.assert_allclose(ours[0], stock[0], rtol=1e-6)


def _fd_cond(x, w):
  return v1.cond(tf.reduce_sum(x) > 0.0, lambda: tf.sin(x) * w * x,
                 lambda: tf.exp(x) * w)


@pytest.mark.parametrize("order", [1, 2])
def test_finite_differences_v1_cond(order):
  """v1 conds (outside loops) also at second order, which stock supports
  there (not through v1 loops: see test_second_order_raises_like_stock)."""
  for x in (np.array([0.3, 0.4]), np.array([-0.3, -0.4])):
    report = tfgrad.check_gradients(_fd_cond, [x, np.array([0.8, 1.1])],
                                    order=order, strict=True, directions=4)
    assert report.checked > 0 and report.ok, report


def test_second_order_through_v1_cond_matches_stock():
  with tf.Graph().as_default():
    x, w = _c([0.3, 0.4], tf.float64), _c([0.8, 1.1], tf.float64)
    y = tf.reduce_sum(_fd_cond(x, w))
    theirs = tf.gradients(tf.reduce_sum(tf.gradients(y, x)[0]), [x, w])
    first = tfgrad.gradients(y, x, strict=True)[0]
    ours = tfgrad.gradients(tf.reduce_sum(first), [x, w], strict=True)
    with v1.Session() as sess:
      for a, b in zip(*sess.run([ours, theirs])):
        np.testing.assert_allclose(a, b, rtol=1e-9)


# ----- lean construction in loop contexts, pooled history stacks -----

def _shapes_read_per_iteration():
  """Rules reading the shape of a forward value of unknown shape in the
  gradient loop: its Shape moves into the forward loop (and is pushed)."""
  x = v1.placeholder(tf.float32, [None], name="x")
  w = _c(0.9)
  _, a = v1.while_loop(
      lambda i, a: i < 3,
      lambda i, a: (i + 1, tf.sin(a) * w + tf.reduce_mean(a * a)),
      [tf.constant(0), x])
  return tf.reduce_sum(a), [x, w]


LEAN_CASES = {
    "shapes_read_per_iteration": _shapes_read_per_iteration,
    "several_vars_and_invariants": _several_vars_and_invariants,
    "parallel_1": _parallel_and_swap(1, False),
    "parallel_10_swap": _parallel_and_swap(10, True),
    "cond_in_loop": _cond_in_loop,
    "nested_scan": _nested_scan,
    "unknown_shapes": _unknown_shapes,
    "dynamic_rnn_lstm": _dynamic_rnn("LSTMCell"),
    "dynamic_rnn_sequence_length": _dynamic_rnn_sequence_length,
}


# Set by `Graph.control_dependencies` on the ops it is given, to count how
# often graphs use manual control dependencies; the lean path, outside
# loops too, puts its waits into the op description without it.
_USAGE_MARKS = frozenset(["_has_manual_control_dependencies"])


def _graph_structure(build, lean):
  """tfgrad's gradient of `build()` in a fresh graph, with ops built in v1
  loop contexts by the lean path or (`lean=False`) by TF's constructor:
  per added op, its type, inputs, sorted control inputs, attributes and
  control-flow context; and the graph's GraphDef."""
  from tfgrad import tf_compat  # pylint: disable=g-import-not-at-top
  from tfgrad import v1_loops  # pylint: disable=g-import-not-at-top
  saved = tf_compat._lean_loop_context, v1_loops.add_value  # pylint: disable=protected-access
  if not lean:
    tf_compat._lean_loop_context = lambda *_: None  # pylint: disable=protected-access
    v1_loops.add_value = lambda ctxt, val: ctxt.AddValue(val)
  try:
    with tf.Graph().as_default() as graph:
      ys, xs = build()
      before = len(graph.get_operations())
      tfgrad.gradients(ys, xs, strict=True)
  finally:
    tf_compat._lean_loop_context, v1_loops.add_value = saved  # pylint: disable=protected-access
  ops = {}
  for op in graph.get_operations()[before:]:
    ctxt = op._get_control_flow_context()  # pylint: disable=protected-access
    node = op.node_def
    ops[op.name] = (op.type, [t.name for t in op.inputs],
                    sorted(c.name for c in op.control_inputs),
                    {k: node.attr[k].SerializeToString(deterministic=True)
                     for k in node.attr if k not in _USAGE_MARKS},
                    ctxt.name if ctxt is not None else None,
                    graph.is_fetchable(op))
  return ops, graph.as_graph_def()


@pytest.mark.parametrize("name", sorted(LEAN_CASES))
def test_lean_path_builds_the_graph_tfs_constructor_builds(name):
  """Ops built in a v1 loop context by the lean path get the inputs,
  control inputs, attributes, context and fetchability TF's constructor
  (`WhileContext.AddOp`) would give them; the GraphDef imports into a new
  graph and runs there with the values it has in the original."""
  lean, graph_def = _graph_structure(LEAN_CASES[name], lean=True)
  slow, _ = _graph_structure(LEAN_CASES[name], lean=False)
  assert lean.keys() == slow.keys()
  for op_name, fields in lean.items():
    assert fields == slow[op_name], op_name
  with tf.Graph().as_default():
    tf.graph_util.import_graph_def(graph_def, name="")


@pytest.mark.parametrize("name", sorted(LEAN_CASES))
def test_matches_tf_fetching_one_gradient_at_a_time(name):
  """With several values on one history stack, fetching a single gradient
  (whose pops may be a part of those of the iteration) still takes every
  iteration's own values off the stack: each gradient alone equals
  stock's."""
  feed = {"unknown_shapes": {"x:0": np.array([[0.3, 0.6], [0.1, -0.2]],
                                             np.float32)},
          "shapes_read_per_iteration": {
              "x:0": np.array([0.3, 0.6, -0.2], np.float32)}}.get(name)
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = LEAN_CASES[name]()
    ours = tfgrad.gradients(ys, xs, strict=True)
    theirs = tf.gradients(ys, xs)
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      for i, (a, b) in enumerate(zip(ours, theirs)):
        assert (a is None) == (b is None), i
        if a is None:
          continue
        a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)
        np.testing.assert_allclose(sess.run(a, feed), sess.run(b, feed),
                                   rtol=1e-5, atol=1e-5,
                                   err_msg=f"gradient {i}")


def _stacks(build):
  """Per engine (stock first): the StackV2 ops the gradient added, and
  the (forward loop, dtype) pairs of its pushes."""
  out = []
  for added, _ in _each_engine(build):
    pairs = {(control_flow_util.GetWhileContext(op).name,
              op.get_attr("T")) for op in added if op.type == "StackPushV2"}
    out.append(([op for op in added if op.type == "StackV2"], pairs))
  return out


@pytest.mark.parametrize("name", ["dynamic_rnn_lstm", "nested_scan",
                                  "several_vars_and_invariants"])
def test_one_history_stack_per_dtype_per_loop(name):
  """Values a loop body computes outside its conds share one history stack
  per dtype and loop: fewer stacks than stock's one per value."""
  (stock_stacks, _), (our_stacks, pairs) = _stacks(LEAN_CASES[name])
  assert len(our_stacks) == len(pairs) < len(stock_stacks)


def test_values_of_conds_keep_their_own_stacks():
  """A value computed in a cond branch of the loop is pushed only when the
  branch runs: it keeps a stack of its own (not pooled), as before."""
  (_, _), (our_stacks, pairs) = _stacks(_cond_in_loop)
  assert len(our_stacks) > len(pairs)


def test_shape_of_a_forward_value_moves_to_the_forward_loop():
  """A Shape a rule builds in the gradient loop from a forward value lands
  in the forward loop, as `WhileContext.AddOp` puts it."""
  with tf.Graph().as_default() as graph:
    ys, xs = _shapes_read_per_iteration()
    before = len(graph.get_operations())
    tfgrad.gradients(ys, xs, strict=True)
    moved = [op for op in graph.get_operations()[before:]
             if op.type in ("Shape", "Size", "Rank")
             and control_flow_util.GetWhileContext(op) is not None
             and control_flow_util.GetWhileContext(op).grad_state is None]
  assert moved
