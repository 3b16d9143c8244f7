"""While/StatelessWhile gradients built by tfgrad (tfgrad/while_builder.py,
ops/while_grad.py), against stock `tf.gradients` on the same loops, in a
tf.Graph run by a Session and inside a tf.function (control flow v2, the
TF2 default): values, None pattern, dtype, static shape, Tensor vs
IndexedSlices; first and second order; with TF's While rules and
`_GradientsHelper` unavailable; two threads on one loop; errors; the
forward values the gradient saves."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.ops import gradients_util

import tfgrad
from compat_tests import differential


def _x(shape, seed=0):
  rng = np.random.RandomState(seed)
  return tf.constant(rng.uniform(-0.9, 0.9, shape), tf.float32)


def _rnn():
  x, w = _x([2, 3]), _x([3, 3], 1)
  _, h = tf.while_loop(lambda i, h: i < 3,
                       lambda i, h: (i + 1, tf.tanh(h @ w)), (0, x))
  return [h], [x, w]


def _linear():
  x, b = _x([3]), _x([3], 1)
  _, h = tf.while_loop(lambda i, h: i < 4, lambda i, h: (i + 1, h * 2.0 + b),
                       (0, x))
  return [h], [x, b]


def _variable_in_body():
  v = differential.variable(np.full([3, 3], 0.3, np.float32))
  x = _x([2, 3])
  _, h = tf.while_loop(lambda i, h: i < 3,
                       lambda i, h: (i + 1, tf.sin(h @ v.read_value())),
                       (0, x))
  return [h], [x, v]


def _gathered_rows():
  """Rows of a captured constant and of a captured variable: sparse
  gradients inside the loop (stock densifies them)."""
  table = _x([5, 3], 2)
  v = differential.variable(np.ones([5, 3], np.float32))
  x = _x([3])
  _, h = tf.while_loop(
      lambda i, h: i < 3,
      lambda i, h: (i + 1, h * tf.gather(v, i) + tf.gather(table, i)),
      (0, x))
  return [h], [table, v, x]


def _nested():
  x, w = _x([2, 3]), _x([3, 3], 1)

  def outer(i, h):
    _, h = tf.while_loop(lambda j, h: j < 2,
                         lambda j, h: (j + 1, tf.sin(h @ w)), (0, h))
    return i + 1, h
  _, h = tf.while_loop(lambda i, h: i < 2, outer, (0, x))
  return [h], [x, w]


def _cond_in_loop():
  x, w = _x([3]), _x([3], 1)

  def body(i, h):
    return i + 1, tf.cond(tf.reduce_sum(h) > 0.0, lambda: tf.sin(h) * w,
                          lambda: tf.tanh(h * w))
  _, h = tf.while_loop(lambda i, h: i < 3, body, (0, x))
  return [h], [x, w]


def _maximum_iterations():
  x = _x([2])
  _, h = tf.while_loop(lambda i, h: i < 100, lambda i, h: (i + 1, tf.sin(h)),
                       (0, x), maximum_iterations=3)
  return [h], [x]


def _unreached_and_counters():
  """Three loop variables; only b is returned. a reaches b through the
  body; the integer counter and the initial counter get None."""
  a0, b0, n = _x([2]), _x([2], 1), tf.constant(0)
  i, _, b = tf.while_loop(lambda i, a, b: i < 3,
                          lambda i, a, b: (i + 1, tf.sin(a), b + a * a),
                          (n, a0, b0))
  return [b, tf.cast(i, tf.float32)], [a0, b0, n]


def _stop_gradient_in_body():
  """y's square reaches x only through tf.stop_gradient: y's gradient is
  zeros (it is a connected loop variable), not None."""
  x0, y0 = _x([2]), _x([2], 1)

  def body(i, x, y):
    return i + 1, tf.square(x) * 0.5 + tf.stop_gradient(tf.square(y)), y
  _, rx, _ = tf.while_loop(lambda i, x, y: i < 2, body, (0, x0, y0))
  return [rx], [x0, y0]


def _tensor_array():
  x, w = _x([2]), _x([2], 1)

  def body(i, h, ta):
    h = tf.sin(h * w)
    return i + 1, h, ta.write(i, h)
  _, _, ta = tf.while_loop(lambda i, h, ta: i < 3, body,
                           (0, x, tf.TensorArray(tf.float32, size=3)))
  return [ta.stack()], [x, w]


CASES = {f.__name__[1:]: f for f in (
    _rnn, _linear, _variable_in_body, _gathered_rows, _nested, _cond_in_loop,
    _maximum_iterations, _unreached_and_counters, _stop_gradient_in_body,
    _tensor_array)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_first_order_matches_stock(name):
  differential.both(CASES[name])


def _second_order_grads(engine, build):
  """d/dxs sum(g * g + g) for g = d(sum ys)/dxs."""
  ys, xs = build()
  first = engine(ys, xs)
  s = tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g) ** 2 + g)
                for g in first if g is not None])
  return engine(s, xs)


@pytest.mark.parametrize("name", ["rnn", "variable_in_body", "nested",
                                  "cond_in_loop", "maximum_iterations",
                                  "linear", "unreached_and_counters"])
def test_second_order_matches_stock(name):
  build = CASES[name]
  results = []
  for engine in (tfgrad.gradients, tf.gradients):
    graph = tf.Graph()
    with graph.as_default():
      grads = _second_order_grads(engine, build)
      init = tf.compat.v1.global_variables_initializer()
      with tf.compat.v1.Session() as sess:
        sess.run(init)
        results.append((grads, differential._run(sess, grads)))  # pylint: disable=protected-access
  (ours, ours_v), (theirs, theirs_v) = results
  differential.assert_same(ours, theirs, ours_v, theirs_v, rtol=1e-5)

  structure = {}

  def traced(engine):
    @tf.function
    def run():
      differential.rewind_variables()
      grads = _second_order_grads(engine, build)
      structure[engine.__module__] = [differential.describe(g) for g in grads]
      return [tf.convert_to_tensor(g) for g in grads if g is not None]
    with differential.variables_kept_across_traces():
      return run()
  a, b = traced(tfgrad.gradients), traced(tf.gradients)
  assert len(set(map(str, structure.values()))) == 1 and len(structure) == 2
  for u, v in zip(a, b):
    np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rnn", "nested", "cond_in_loop",
                                  "maximum_iterations"])
@pytest.mark.parametrize("order", [1, 2])
def test_finite_differences(name, order):
  def fn(x, w):
    if name == "rnn":
      _, h = tf.while_loop(lambda i, h: i < 3,
                           lambda i, h: (i + 1, tf.tanh(h @ w)), (0, x))
    elif name == "nested":
      def outer(i, h):
        _, h = tf.while_loop(lambda j, h: j < 2,
                             lambda j, h: (j + 1, tf.sin(h @ w)), (0, h))
        return i + 1, h
      _, h = tf.while_loop(lambda i, h: i < 2, outer, (0, x))
    elif name == "cond_in_loop":
      def body(i, h):
        return i + 1, tf.cond(tf.reduce_sum(h) > 0.0,
                              lambda: tf.sin(h @ w), lambda: tf.tanh(h @ w))
      _, h = tf.while_loop(lambda i, h: i < 3, body, (0, x))
    else:
      _, h = tf.while_loop(lambda i, h: i < 100,
                           lambda i, h: (i + 1, tf.sin(h @ w)), (0, x),
                           maximum_iterations=3)
    return h
  rng = np.random.RandomState(3)
  report = tfgrad.check_gradients(
      fn, [rng.uniform(-0.9, 0.9, [2, 3]), rng.uniform(-0.9, 0.9, [3, 3])],
      order=order, directions=2, strict=True, raise_on_failure=False)
  assert report.ok, str(report)


def test_second_gradient_through_a_loop_with_a_cond_on_another_device():
  """The repro: the first gradient placed on /cpu:1 of two CPUs, the loop
  holding a cond; stock's second gradient is 0.0, and so is tfgrad's
  (not None)."""
  results = []
  for engine in (tfgrad.gradients, tf.gradients):
    graph = tf.Graph()
    with graph.as_default():
      x0 = tf.constant(1.5)
      pred = tf.constant(True)
      _, z = tf.while_loop(
          lambda i, _: i < 3,
          lambda i, x: (i + 1, tf.cond(pred, lambda: x * 2.0,
                                       lambda: 10.0)), [0, x0])
      with tf.device("/cpu:1"):
        g = engine(z, x0)[0]
      gg = engine(g, x0)[0]
      assert gg is not None
      config = tf.compat.v1.ConfigProto(device_count={"CPU": 2})
      with tf.compat.v1.Session(config=config) as sess:
        results.append(sess.run([g, gg]))
  np.testing.assert_allclose(results[0], results[1])
  assert results[0] == [8.0, 0.0]


# ----- tfgrad's own: TF's While rules and _GradientsHelper unavailable -----

def _raising_helper(*args, **kwargs):
  raise AssertionError("TF's _GradientsHelper was called")


@contextlib.contextmanager
def _without_tf_while_gradients():
  """TF's `_GradientsHelper` raises and its registered While and
  StatelessWhile gradient functions are gone; all restored afterwards."""
  registry = tf_ops.gradient_registry._registry  # pylint: disable=protected-access
  saved = {k: registry.pop(k) for k in ("While", "StatelessWhile")}
  helper = gradients_util._GradientsHelper  # pylint: disable=protected-access
  gradients_util._GradientsHelper = _raising_helper  # pylint: disable=protected-access
  try:
    yield
  finally:
    gradients_util._GradientsHelper = helper  # pylint: disable=protected-access
    registry.update(saved)


def _values(build, engine, order, **kwargs):
  """(structure, values) of the order-1 or order-2 gradient in a Graph."""
  graph = tf.Graph()
  with graph.as_default():
    if order == 1:
      grads = engine(*build(), **kwargs)
    else:
      grads = _second_order_grads(
          lambda ys, xs: engine(ys, xs, **kwargs), build)
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session() as sess:
      sess.run(init)
      return ([differential.describe(g) for g in grads],
              differential._run(sess, grads))  # pylint: disable=protected-access


def _in_function(build, engine):
  @tf.function
  def run():
    differential.rewind_variables()
    return [tf.convert_to_tensor(g) for g in engine(*build())
            if g is not None]
  with differential.variables_kept_across_traces():
    return [v.numpy() for v in run()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_ours_without_tf_while_machinery(name):
  """Every case at first and second order, in a Graph and in a
  tf.function, strict (a cond in a loop goes through the If rule the
  registry names)."""
  build = CASES[name]
  stock = [_values(build, tf.gradients, order) for order in (1, 2)]
  stock_fn = _in_function(build, tf.gradients)
  strict = lambda ys, xs: tfgrad.gradients(ys, xs, strict=True)
  with _without_tf_while_gradients():
    ours = [_values(build, strict, order) for order in (1, 2)]
    ours_fn = _in_function(build, strict)
    with pytest.raises(AssertionError, match="_GradientsHelper"):
      _values(build, tf.gradients, 1)
    with pytest.raises(LookupError):
      tf_ops.gradient_registry.lookup("While")
  assert tf_ops.gradient_registry.lookup("While") is not None
  for (a, a_v), (b, b_v) in zip(ours, stock):
    assert a == b
    for u, v in zip(a_v, b_v):
      assert (u is None) == (v is None)
      if u is not None:
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5)
  assert len(ours_fn) == len(stock_fn)
  for a, b in zip(ours_fn, stock_fn):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# ----- saved forward values, threads, errors -----

def _accumulators_added(build, engine, calls=1):
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    loops = [op for op in graph.get_operations()
             if op.type in ("While", "StatelessWhile")]
    before = sum(len(op.outputs) for op in loops)
    for _ in range(calls):
      engine(ys, xs)
    return sum(len(op.outputs) for op in loops) - before


@pytest.mark.parametrize("name", sorted(CASES))
def test_saves_no_more_than_stock(name):
  """Accumulators added to the forward loop (outputs the rewrite adds):
  never more than stock, fewer where a rule reads no forward value; a
  second gradient of the same loop reuses them."""
  ours = _accumulators_added(CASES[name], tfgrad.gradients)
  theirs = _accumulators_added(CASES[name], tf.gradients)
  assert ours <= theirs
  if name in ("linear", "stop_gradient_in_body"):
    assert ours < theirs
  assert _accumulators_added(CASES[name], tfgrad.gradients, calls=2) == ours


def test_two_threads_differentiate_one_loop():
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _nested()
    loop = ys[0].op.inputs[0].op
    outputs = len(loop.outputs)
  results = differential.gradients_on_two_threads(graph, ys, xs)
  with graph.as_default():
    theirs = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      a, b, c = sess.run([results[0], results[1], theirs])
  for u, v, w in zip(a, b, c):
    np.testing.assert_allclose(u, w, rtol=1e-6)
    np.testing.assert_allclose(v, w, rtol=1e-6)
  # both threads' gradients read one set of accumulators
  assert len(loop.outputs) == outputs + _accumulators_added(
      _nested, tfgrad.gradients)


def _loop_with_bad_op():
  """A loop whose body op has its gradient overridden by a name nothing
  registers, and a good loop reading its result."""
  a0 = _x([2])

  def body(i, a):
    with tf.compat.v1.get_default_graph().gradient_override_map(
        {"Sin": "NoSuchGradientAnywhere"}):
      return i + 1, tf.sin(a)
  _, a = tf.while_loop(lambda i, a: i < 3, body, (0, a0))
  _, c = tf.while_loop(lambda i, c: i < 2,
                       lambda i, c: (i + 1, tf.tanh(c) * 2.0), (0, a))
  return a, a0, c


def test_missing_gradient_in_body_names_loop_and_op():
  """Same exception type as stock, naming the loop and the op; the loop
  is left unedited and the graph still gives gradients."""
  graph = tf.Graph()
  with graph.as_default():
    a, a0, c = _loop_with_bad_op()
    loop = a.op.inputs[0].op
    outputs = len(loop.outputs)
    with pytest.raises(LookupError) as ours:
      tfgrad.gradients(c, a0)
    message = str(ours.value)
    assert loop.name in message and "'Sin'" in message, message
    assert len(loop.outputs) == outputs  # the loop was not edited
    ours_c = tfgrad.gradients(c, a)
  with tf.Graph().as_default():
    _, a0, c = _loop_with_bad_op()
    with pytest.raises(LookupError):
      tf.gradients(c, a0)
  with tf.Graph().as_default() as fresh:
    a, _, c = _loop_with_bad_op()
    theirs_c = tf.gradients(c, a)
    with tf.compat.v1.Session(graph=fresh) as sess:
      want = sess.run(theirs_c)
  with tf.compat.v1.Session(graph=graph) as sess:
    got = sess.run(ours_c)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_wrong_grad_ys_for_a_loop_output():
  for engine in (tfgrad.gradients, tf.gradients):
    with tf.Graph().as_default():
      ys, xs = _rnn()
      with pytest.raises(ValueError):
        engine(ys, xs, grad_ys=[tf.ones([5])])
  with tf.Graph().as_default() as graph:
    ys, xs = _rnn()
    with pytest.raises(ValueError):
      tfgrad.gradients(ys, xs, grad_ys=[tf.ones([5])])
    ours = tfgrad.gradients(ys, xs)
    theirs = tf.gradients(ys, xs)
    with tf.compat.v1.Session(graph=graph) as sess:
      a, b = sess.run([ours, theirs])
  for u, v in zip(a, b):
    np.testing.assert_allclose(u, v, rtol=1e-6)


def test_gradient_inside_the_body_toward_the_initial_value():
  """tf.gradients called inside a loop body toward the loop's initial
  value (a tensor of the outer graph, which the body reads only through
  its loop variable): None, as stock; the loop is then differentiated
  normally."""
  seen = {}
  for engine in (tfgrad.gradients, tf.gradients):
    with tf.Graph().as_default() as graph:
      x0 = _x([2])

      def body(i, h, engine=engine):
        h2 = tf.sin(h)
        seen[engine] = engine(h2, x0)
        return i + 1, h2
      _, h = tf.while_loop(lambda i, h: i < 2, body, (0, x0))
      g = engine(h, x0)
      with tf.compat.v1.Session(graph=graph) as sess:
        seen[engine, "value"] = sess.run(g)
  assert seen[tfgrad.gradients] == seen[tf.gradients] == [None]
  np.testing.assert_allclose(seen[tfgrad.gradients, "value"],
                             seen[tf.gradients, "value"], rtol=1e-6)


def _keras_lstm_and_loop_in_function(engine):
  """A Keras LSTM (a While over TensorArrays) and a loop inside a called
  tf.function; first and second order."""
  rng = np.random.RandomState(0)
  x = tf.constant(rng.rand(2, 5, 3).astype(np.float32))
  lstm = tf.keras.layers.LSTM(
      4, kernel_initializer=tf.keras.initializers.Constant(0.1),
      recurrent_initializer=tf.keras.initializers.Constant(0.05))
  y = tf.reduce_sum(lstm(x) ** 2)

  @tf.function
  def helper(h, w):
    _, h = tf.while_loop(lambda i, h: i < 3,
                         lambda i, h: (i + 1, tf.tanh(h @ w)), (0, h))
    return h
  w = tf.constant(rng.rand(3, 3).astype(np.float32) * 0.3)
  y += tf.reduce_sum(helper(x[:, 0, :], w))
  first = engine(y, lstm.trainable_variables + [x, w])
  second = engine(tf.add_n([tf.reduce_sum(t * t) for t in first]), [x, w])
  return first + second


def test_keras_lstm_and_loop_in_a_called_function():
  values = []
  for engine in (tfgrad.gradients, tf.gradients):
    with tf.Graph().as_default() as graph:
      grads = _keras_lstm_and_loop_in_function(engine)
      with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        values.append(sess.run(grads))
  for a, b in zip(*values):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _imported_loop(graph_def, engine, order):
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.import_graph_def(graph_def, name="")
    out, x, w = [graph.get_tensor_by_name(n) for n in ("out:0", "x:0", "w:0")]
    grads = engine(tf.reduce_sum(out ** 2), [x, w])
    if order == 2:
      grads = engine(tf.add_n([tf.reduce_sum(g * g) for g in grads]), [x, w])
    with tf.compat.v1.Session(graph=graph) as sess:
      return sess.run(grads)


def test_loop_imported_from_a_graph_def():
  """A loop read back from a GraphDef (its body rebuilt from the function
  library), imported and differentiated several times: tfgrad's first
  and second order equal stock's on the same loop built in Python (stock
  on the imported loop may raise: its rewritten functions of two imports
  share a name, and function names are global)."""
  def build():
    x = tf.constant(np.linspace(-1, 1, 6).reshape(2, 3), tf.float32,
                    name="x")
    w = tf.constant(np.eye(3) * 0.5 + 0.1, tf.float32, name="w")
    _, h = tf.while_loop(lambda i, h: i < 3,
                         lambda i, h: (i + 1, tf.tanh(h @ w)), (0, x))
    return tf.identity(h, name="out"), x, w
  with tf.Graph().as_default() as graph:
    build()
  graph_def = graph.as_graph_def()
  for order in (1, 2, 1):
    with tf.Graph().as_default() as graph:
      out, x, w = build()
      grads = tf.gradients(tf.reduce_sum(out ** 2), [x, w])
      if order == 2:
        grads = tf.gradients(
            tf.add_n([tf.reduce_sum(g * g) for g in grads]), [x, w])
      with tf.compat.v1.Session(graph=graph) as sess:
        want = sess.run(grads)
    for a, b in zip(_imported_loop(graph_def, tfgrad.gradients, order),
                    want):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_loop_in_an_xla_compiled_function():
  """Inside `tf.function(jit_compile=True)` (where shape queries stay in
  the gradient body: a popped shape is no compile-time constant for XLA):
  values as stock's."""
  x0 = np.linspace(-0.8, 0.8, 6).reshape(2, 3).astype(np.float32)
  w0 = (np.eye(3) * 0.5 + 0.1).astype(np.float32)

  def make(engine):
    @tf.function(jit_compile=True)
    def run(x, w):
      _, h = tf.while_loop(lambda i, h: i < 3,
                           lambda i, h: (i + 1, tf.tanh(h @ w)), (0, x),
                           maximum_iterations=3)
      return engine(tf.reduce_sum(h * h), [x, w])
    return run
  ours = make(tfgrad.gradients)(tf.constant(x0), tf.constant(w0))
  theirs = make(tf.gradients)(tf.constant(x0), tf.constant(w0))
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["nested", "cond_in_loop", "variable_in_body"])
def test_graph_def_round_trip(name):
  """The gradient loops (their cond and body functions, the forward loop's
  rewritten ones) exported as a GraphDef, imported into a new graph and
  run, give the values the original graph gives."""
  with tf.Graph().as_default() as graph:
    ys, xs = CASES[name]()
    ours = [g for g in tfgrad.gradients(ys, xs, strict=True) if g is not None]
    ours = [tf.convert_to_tensor(g) for g in ours]
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session() as sess:
      sess.run(init)
      direct = sess.run(ours)
    graph_def = graph.as_graph_def()
  again = differential.run_imported(graph_def, ours, init)
  for g, h in zip(again, direct):
    np.testing.assert_array_equal(g, h)


def test_graph_is_freed_after_loop_gradient():
  """The record of gradient loops' function graphs dies with the graph:
  kept while the graph lives (a second-order gradient reads it), freed
  with it."""
  import gc  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top
  from tfgrad import while_builder  # pylint: disable=g-import-not-at-top

  def build():
    graph = tf.Graph()
    with graph.as_default():
      x = tf.constant(0.5)
      y = tf.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * x),
                        [0, x])[1]
      g = tfgrad.gradients(y, x)[0]
      gc.collect()
      built = while_builder._loop_graphs  # pylint: disable=protected-access
      loops = [o for o in graph.get_operations() if o in built]
      assert loops and all(
          while_builder.loop_graphs(o)[1] is built[o][0]() is not None
          for o in loops)
      tfgrad.gradients(g, x)
    return weakref.ref(graph)

  graph = build()
  gc.collect()
  assert graph() is None
