"""ops/call_grad.py: gradients of calls of graph functions (tf.function's
PartitionedCall/StatefulPartitionedCall) built by tfgrad, against stock
tf.gradients (a tf.Graph with a Session and a tf.function; strict mode),
by finite differences at orders 1 and 2, with TF's builders made
unavailable, from two threads at once."""


import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import call_specs
from compat_tests import differential
from compat_tests import harness
from compat_tests import tf_builders


@pytest.mark.parametrize(**harness.cases(call_specs.SPECS))
def test_spec_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(call_specs.SPECS))
def test_spec_numeric(spec, order):
  harness.check_numeric(spec, order)


def _x():
  return tf.constant([[0.3, -1.2, 2.0], [0.5, 0.1, -0.4]], tf.float32)


def _w():
  return tf.constant(np.linspace(-1.0, 1.0, 9).reshape(3, 3), tf.float32)


@tf.function(autograph=False)
def _affine(x, w):
  return tf.matmul(x, w) * 2.0


@tf.function(autograph=False)
def _layer(x, w):
  return tf.nn.relu(_affine(x, w)) + 0.1 * tf.sin(x)


def _nested():
  """Three calls of a function calling another (the bench's shape)."""
  x, w = _x(), _w()
  h = x
  for _ in range(3):
    h = _layer(h, w)
  return tf.reduce_sum(h * h), [x, w]


@tf.function(autograph=False)
def _two_outputs(a, b, c):
  return a * 2.0, b * b, tf.stop_gradient(c) * 3.0


def _unreached_output():
  """Only the first output is used: b (reaching only the second) gets
  zeros, as stock's zero-fed backward function gives; c (behind
  stop_gradient) None."""
  a, b, c = _x(), _x() * 2.0, _x() * 3.0
  p, _, _ = _two_outputs(a, b, c)
  return p, [a, b, c]


@tf.function(autograph=False)
def _gather(table, idx):
  return tf.gather(table, idx) * 3.0


def _sparse():
  table = _w()
  return _gather(table, tf.constant([2, 0, 2])), [table]


@tf.function(autograph=False)
def _custom(v):
  @tf.custom_gradient
  def clipped(u):
    def grad(dy):
      return tf.clip_by_value(dy * 3.0, -1.0, 1.0)
    return tf.identity(u), grad
  return clipped(v * v)


def _custom_gradient_inside():
  x = _x()
  return _custom(x), [x]


@tf.function(autograph=False)
def _with_cond(x, flag):
  return tf.cond(flag, lambda: tf.sin(x) * x, lambda: x * 2.0)


def _cond_inside():
  x = _x()
  return _with_cond(x, tf.constant(True)), [x]


def _variable():
  x = _x()
  v = differential.variable([[0.5, -1.0, 2.0]])

  @tf.function(autograph=False)
  def scaled(u):
    return tf.tanh(u * v) * v
  return tf.reduce_sum(scaled(x)), [x, v]


CONSTRUCTS = [_nested, _unreached_output, _sparse, _custom_gradient_inside,
              _cond_inside, _variable]
_IDS = [c.__name__.strip("_") for c in CONSTRUCTS]


@pytest.mark.parametrize("construct", CONSTRUCTS, ids=_IDS)
def test_matches_tf(construct):
  with tfgrad.strict_mode():
    differential.in_graph(construct)
    differential.in_function(construct)


@pytest.mark.parametrize("construct", CONSTRUCTS, ids=_IDS)
def test_without_tf_builders(construct):
  tf_builders.stock_then_ours_in_graph(construct)
  tf_builders.stock_then_ours_in_function(construct)


def _calls(graph):
  return [op for op in graph.get_operations()
          if op.type in ("PartitionedCall", "StatefulPartitionedCall")]


def test_linear_function_adds_no_output():
  """x * 2 and a matmul by a constant need no forward value."""
  @tf.function(autograph=False)
  def linear(x):
    return tf.matmul(x * 2.0, _w())

  with tf.Graph().as_default() as graph:
    x = _x()
    y = linear(x)
    call = _calls(graph)[0]
    before = len(call.outputs)
    tfgrad.gradients(y, x)
    assert len(call.outputs) == before


def test_calls_share_one_gradient_function():
  """The three calls of `_layer` get one gradient function between them
  (and one of `_affine`), each call pointed at the same forward one."""
  with tf.Graph().as_default() as graph:
    ys, xs = _nested()
    ours = tfgrad.gradients(ys, xs)
    names = list(graph._functions)  # pylint: disable=protected-access
    for prefix in ("_layer_grad_", "_affine_grad_", "_layer_forward_"):
      assert len([n for n in names if n.startswith(prefix)]) == 1, names
    layer_calls = [c for c in _calls(graph) if c.name.startswith("Partit")]
    assert len({c.get_attr("f").name for c in layer_calls[:3]}) == 1
    theirs = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([ours, theirs])
  for g, h in zip(a, b):
    np.testing.assert_allclose(g, h, rtol=1e-5)


def _square_fn(x):
  @tf.function(autograph=False)
  def f(u):
    return tf.sin(u) * u * u
  return f(x)


@pytest.mark.parametrize("order", [1, 2])
def test_finite_differences(order):
  report = tfgrad.check_gradients(
      _square_fn, [np.array([0.3, -0.7, 1.1])], order=order, strict=True,
      raise_on_failure=False)
  assert report.ok, str(report)


def _second_order(fn):
  with tf.Graph().as_default() as graph:
    x = _x()
    y = fn(x)
    ours = tfgrad.gradients(tfgrad.gradients(y, x)[0], x)
    theirs = tf.gradients(tf.gradients(y, x)[0], x)
    with tf.compat.v1.Session(graph=graph) as sess:
      values = differential._run(sess, ours + theirs)  # pylint: disable=protected-access
  return ours, theirs, values


def test_second_order_matches_stock():
  """Through a call whose gradient reads forward values."""
  @tf.function(autograph=False)
  def square(u):
    return tf.sin(u) * u

  ours, theirs, values = _second_order(square)
  differential.assert_same(ours, theirs, values[:1], values[1:])


def test_second_order_of_linear_call_is_none():
  """A documented difference: x * 2 in a function. Stock's first
  gradient reads the constant 2 as an output of the forward call, so it
  depends on x and the second gradient is zeros; tfgrad's copies the
  constant, reads nothing of the forward call (no output added), and the
  second gradient is None, as `tf.gradients` gives for any y that does
  not depend on x."""
  @tf.function(autograph=False)
  def linear(u):
    return u * 2.0

  ours, theirs, values = _second_order(linear)
  assert ours == [None]
  assert differential.describe(theirs[0]) == ("Tensor", "float32", [2, 3])
  np.testing.assert_array_equal(values[1], np.zeros([2, 3]))


def test_two_threads_differentiate_one_call():
  with tf.Graph().as_default() as graph:
    ys, xs = _nested()
    results = differential.gradients_on_two_threads(graph, ys, xs,
                                                    strict=True)
    stock = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      a, b, c = sess.run([results[0], results[1], stock])
  for i in range(2):
    np.testing.assert_allclose(a[i], c[i], rtol=1e-5)
    np.testing.assert_allclose(b[i], c[i], rtol=1e-5)


def test_gradient_override_map_inside_function():
  """A user's override name on an op in a tf.function stays the user's."""
  name = "CallGradTestSquareTimesFive"

  @tf.RegisterGradient(name)
  def _five(op, grad):  # pylint: disable=unused-variable
    return grad * 5.0 * op.inputs[0]

  @tf.function(autograph=False)
  def overridden(u):
    with tf.compat.v1.get_default_graph().gradient_override_map(
        {"Square": name}):
      return tf.square(u)

  def build():
    x = _x()
    return overridden(x), [x]
  with tfgrad.strict_mode():
    _, _, ours, _ = differential.in_graph(build)
  np.testing.assert_allclose(ours[0], 5.0 * _x().numpy(), rtol=1e-6)


def test_legacy_defun_call_matches_stock():
  """A legacy Defun call (op type = the function's name) keeps its path:
  the function's own gradient or SymbolicGradient, as stock."""
  from tensorflow.python.framework import function  # pylint: disable=g-import-not-at-top

  @function.Defun(tf.float32)
  def cube(u):
    return u * u * u

  def build():
    x = _x()
    return cube(x), [x]
  differential.in_graph(build)


# ----- function definitions: captures, GraphDef round trips, names -----

@tf.function(autograph=False)
def _branchy(x, w):
  return tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.sin(x) * x,
                 lambda: tf.matmul(x, w) * x)


def _call_and_cond():
  """A call of a function holding a cond, a cond outside any call, and an
  outer tensor captured by a call's body."""
  x, w = _x(), _w()
  scale = tf.constant(1.5) * tf.reduce_mean(w)

  @tf.function(autograph=False)
  def scaled(u):
    return tf.tanh(u * scale) * u

  h = _branchy(x, w)
  h = tf.cond(tf.reduce_max(h) > 1.0, lambda: tf.exp(h * 0.1),
              lambda: h * h)
  return tf.reduce_sum(scaled(h) * _layer(h, w)), [x, w]


def test_graph_def_round_trip_of_call_and_cond_gradients():
  """The gradient graph (function definitions included) exported as a
  GraphDef, imported into a new graph and run, gives the same values."""
  with tf.Graph().as_default() as graph:
    ys, xs = _call_and_cond()
    ours = tfgrad.gradients(ys, xs, strict=True)
    theirs = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      direct, stock = sess.run([ours, theirs])
    graph_def = graph.as_graph_def()
  for g, h in zip(direct, stock):
    np.testing.assert_allclose(g, h, rtol=1e-5)
  again = differential.run_imported(graph_def, ours)
  for g, h in zip(again, direct):
    np.testing.assert_array_equal(g, h)


def test_captures_are_recorded_as_tf_records_them():
  """A capture made by tfgrad's builders looks like `FuncGraph.capture`'s:
  the same placeholder NodeDef, the same entry among the graph's captures
  and inputs, the same trace type."""
  from tensorflow.python.framework import func_graph  # pylint: disable=g-import-not-at-top
  from tensorflow.python.ops import handle_data_util  # pylint: disable=g-import-not-at-top
  from tfgrad import functional  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default():
    outer = tf.constant([[1.0, 2.0]], name="outer/value")
    variable = tf.Variable([3.0], name="v")
    graphs = []
    for capture in (lambda g, t: g.capture(t), functional.lean_capture):
      graph = func_graph.FuncGraph("captures")
      with graph.as_default():
        first = capture(graph, outer)
        assert capture(graph, outer) is first
        capture(graph, variable.handle)
      graphs.append(graph)
    theirs, ours = graphs
    assert ([p.op.node_def for p in ours.inputs]
            == [p.op.node_def for p in theirs.inputs])
    assert ([(e, i.name) for e, i in ours.captures]
            == [(e, i.name) for e, i in theirs.captures])
    assert (ours.function_captures.capture_types
            == theirs.function_captures.capture_types)
    data = handle_data_util.get_resource_handle_data
    assert data(ours.inputs[1]) == data(theirs.inputs[1])
    assert data(ours.inputs[1]).shape_and_type


def test_function_type_is_tfs():
  """The function types given to the function definitions tfgrad makes
  (calls, cond branches, loop bodies, rewritten forward bodies) are the
  ones TF derives from their graphs."""
  from tensorflow.python.eager.polymorphic_function import function_type_utils  # pylint: disable=g-import-not-at-top
  with tf.Graph().as_default() as graph:
    ys, xs = _call_and_cond()
    _, h = tf.while_loop(lambda i, h: i < 3,
                         lambda i, h: (i + 1, tf.tanh(h * xs[0])),
                         (0, xs[0]))
    before = set(graph._functions)  # pylint: disable=protected-access
    tfgrad.gradients([ys, tf.reduce_sum(h)], xs, strict=True)
    checked = 0
    for name, fn in graph._functions.items():  # pylint: disable=protected-access
      body = getattr(fn, "graph", None)
      if body is not None and name not in before:
        assert fn.function_type == function_type_utils.derive_from_graph(
            body), fn.name
        checked += 1
    assert checked >= 8


def _redefined(scale):
  @tf.function(autograph=False)
  def body(x, w):  # the same name each time, a different body
    return tf.sin(tf.matmul(x, w)) * scale
  return body


def test_redefined_functions_with_the_same_names():
  """Functions of one name defined again (in the same graph and in a new
  one) each get their own gradient function."""
  def build():
    x, w = _x(), _w()
    first, second = _redefined(2.0), _redefined(-3.0)
    return tf.reduce_sum(first(x, w) * second(x, w) + second(x * x, w)), [x, w]

  for _ in range(2):  # a second graph: the names come again
    with tfgrad.strict_mode():
      differential.in_graph(build)
      differential.in_function(build)


def test_two_threads_differentiate_one_call_with_cond():
  """Two threads differentiating the same calls and conds at once both get
  stock's values; the forward ops are rewritten once."""
  with tf.Graph().as_default() as graph:
    ys, xs = _call_and_cond()
    results = differential.gradients_on_two_threads(graph, ys, xs,
                                                    strict=True)
    stock = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      a, b, c = sess.run([results[0], results[1], stock])
  for i in range(2):
    np.testing.assert_allclose(a[i], c[i], rtol=1e-5)
    np.testing.assert_allclose(b[i], c[i], rtol=1e-5)


def test_call_and_cond_match_stock():
  with tfgrad.strict_mode():
    differential.in_graph(_call_and_cond)
    differential.in_function(_call_and_cond)


def test_graph_and_function_are_freed_after_gradient():
  """The cache of gradient functions dies with what it serves: after a
  call's gradient (first and second order), dropping the graph and the
  function frees the forward function graph and the outer graph."""
  import gc  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top

  def build():
    @tf.function(autograph=False)
    def f(x):
      return tf.sin(x) * x

    graph = tf.Graph()
    with graph.as_default():
      x = tf.constant([0.5, 1.5])
      y = f(x)
      g = tfgrad.gradients(y, x)[0]
      tfgrad.gradients(g, x)
      body = f.get_concrete_function(x).graph
    return weakref.ref(graph), weakref.ref(body)

  graph, body = build()
  gc.collect()
  assert graph() is None
  assert body() is None


def _stateful_gradient_model(v, path):
  """A called function whose custom gradient writes `v` twice (triple,
  then add one) and prints twice to `path`: in program order, `v` ends at
  3 * v + 1 and the file reads "first", "second"."""
  @tf.custom_gradient
  def scaled(x):
    def grad_fn(dy):
      tf.print("first", output_stream="file://" + path)
      v.assign(v * 3.0)
      v.assign_add(1.0)
      tf.print("second", output_stream="file://" + path)
      return dy * 2.0
    return x * 2.0, grad_fn

  @tf.function(autograph=False)
  def f(x):
    return scaled(x)
  return f


def _assign_add_after_assign(graph_def):
  """Whether the function whose body holds the gradient's AssignAdd has
  it wait (control input) on the Assign before it."""
  for fdef in graph_def.library.function:
    nodes = {n.name: n for n in fdef.node_def}
    adds = [n for n in nodes.values() if n.op == "AssignAddVariableOp"]
    if adds:
      assigns = [n.name for n in nodes.values() if n.op == "AssignVariableOp"]
      return any("^" + a in adds[0].input for a in assigns)
  raise AssertionError("no gradient function with the assignments")


@pytest.mark.parametrize("use_tfgrad", [False, True])
def test_stateful_ops_of_gradient_function_run_in_program_order(
    use_tfgrad, tmp_path):
  """Stateful ops made in a gradient function graph run in the order they
  were made, as in stock's gradient functions: in a Session and inside a
  tf.function (whose own automatic control dependencies do not reach
  into the called gradient function)."""
  gradients = tfgrad.gradients if use_tfgrad else tf.gradients
  path = str(tmp_path / "session.txt")
  graph = tf.Graph()
  with graph.as_default():
    v = tf.Variable(1.0)
    x = tf.constant(0.5)
    dx = gradients(_stateful_gradient_model(v, path)(x), x)[0]
    assert _assign_add_after_assign(graph.as_graph_def())
    with tf.compat.v1.Session() as sess:
      sess.run(v.initializer)
      assert sess.run(dx) == 2.0
      assert sess.run(v) == 4.0
  with open(path) as f:
    assert f.read().split() == ["first", "second"]

  path = str(tmp_path / "function.txt")
  v = tf.Variable(1.0)
  model = _stateful_gradient_model(v, path)

  @tf.function(autograph=False)
  def outer(x):
    return gradients(model(x), x)[0]
  assert float(outer(tf.constant(0.5))) == 2.0
  assert float(v.numpy()) == 4.0
  with open(path) as f:
    assert f.read().split() == ["first", "second"]
