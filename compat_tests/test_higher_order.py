"""Hessians, Hessian-vector products, jvp, jacobian and batch_jacobian
against their stock TF counterparts on the same graph (tf.hessians, TF's
Hessian-vector product, ForwardAccumulator, GradientTape.jacobian /
batch_jacobian), on MLP, conv, attention and while-loop models, in a
tf.Graph run by a Session and inside a tf.function; and against central
differences in float64."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.ops import gradients_impl

import tfgrad
from tfgrad import forward
from compat_tests.higher_order_harness import MODES as _MODES
from compat_tests.higher_order_harness import assert_same as _assert_same
from compat_tests.higher_order_harness import run as _run


# ----- models: builder(*xs) -> y; xs' shapes; which xs batch with y -----

def _mlp(x, w1, w2):
  return tf.tanh(x @ w1) @ w2


def _conv(x, f):
  return tf.tanh(tf.nn.conv2d(x, f, 1, "VALID"))


def _attention(x, wq, wk):
  q, k = x @ wq, x @ wk
  weights = tf.nn.softmax(q @ tf.transpose(k, [0, 2, 1]) / 2.0)
  return weights @ x


def _while(x, w):
  _, h = tf.while_loop(lambda i, h: i < 3,
                       lambda i, h: (i + 1, tf.tanh(h @ w + x)),
                       (tf.constant(0), x))
  return h


MODELS = {
    "mlp": (_mlp, [(3, 4), (4, 5), (5, 2)]),
    "conv": (_conv, [(2, 4, 4, 2), (2, 2, 2, 3)]),
    "attention": (_attention, [(2, 3, 4), (4, 4), (4, 4)]),
    "while": (_while, [(2, 3), (3, 3)]),
}


def _values(name, seed=0):
  rng = np.random.default_rng(seed)
  return [0.5 * rng.standard_normal(s) for s in MODELS[name][1]]


@pytest.fixture(autouse=True)
def _stock_tf():
  """Counterparts are stock: tfgrad is not installed around the tests."""
  tfgrad.uninstall()
  yield
  tfgrad.uninstall()


# ----- against stock counterparts -----

@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("jac_mode", [None, "forward", "reverse"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_jacobian_matches_gradient_tape(model, jac_mode, mode):
  fn = MODELS[model][0]

  def build(xs):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(xs)
      y = fn(*xs)
    return tfgrad.jacobian(y, xs, mode=jac_mode), tape.jacobian(y, xs)
  _assert_same(*_run(mode, build, _values(model)))


@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("jac_mode", [None, "forward", "reverse"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_batch_jacobian_matches_gradient_tape(model, jac_mode, mode):
  fn = MODELS[model][0]

  def build(xs):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(xs)
      y = fn(*xs)
    return ([tfgrad.batch_jacobian(y, xs[0], mode=jac_mode)],
            [tape.batch_jacobian(y, xs[0])])
  _assert_same(*_run(mode, build, _values(model)))


@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_jvp_matches_forward_accumulator(model, mode):
  fn = MODELS[model][0]
  values = _values(model)
  tangents = _values(model, seed=1)

  def build(xs):
    ts = [tf.constant(t) for t in tangents]
    with tf.autodiff.ForwardAccumulator(xs, ts) as acc:
      stock_y = fn(*xs)
    # Built again outside the accumulator: a While it recorded cannot be
    # differentiated twice in one graph (stock tf.gradients fails too:
    # "duplicate function ... while_cond_rewritten").
    return [tfgrad.jvp(fn(*xs), xs, ts)], [acc.jvp(stock_y)]
  _assert_same(*_run(mode, build, values))


@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_hessians_match_tf_hessians(model, mode):
  fn = MODELS[model][0]

  def build(xs):
    loss = tf.reduce_sum(tf.sin(fn(*xs)))
    return tfgrad.hessians(loss, xs), tf.hessians(loss, xs)
  _assert_same(*_run(mode, build, _values(model)))


def _sliced_mlp_loss(theta):
  """An MLP loss whose weights are slices of one vector (StridedSlice,
  Reshape, BiasAdd, sigmoid, relu, a power): gradients of such losses
  hold only ops with batched forward rules."""
  rng = np.random.default_rng(7)
  x = tf.constant(rng.standard_normal((5, 3)), theta.dtype)
  w1 = tf.reshape(theta[:12], [3, 4])
  b1 = theta[12:16]
  w2 = tf.reshape(theta[16:24], [4, 2])
  h = tf.sigmoid(tf.nn.bias_add(x @ w1, b1))
  out = tf.nn.relu(h @ w2 + theta[24]) + tf.tanh(h[:, :2])
  return tf.reduce_mean(out ** 3) + tf.reduce_sum(tf.square(theta[::3]))


def _added_op_names(build):
  """build() with the names of the ops it adds to the default graph."""
  graph = tf.compat.v1.get_default_graph()
  before = len(graph.get_operations())
  out = build()
  return out, [op.name for op in graph.get_operations()[before:]]


_HESSIAN_CASES = {
    "sliced_mlp": (lambda xs: _sliced_mlp_loss(xs[0]), [(25,)]),
    "mlp": (lambda xs: tf.reduce_sum(tf.sin(_mlp(*xs))), MODELS["mlp"][1]),
    "attention": (lambda xs: tf.reduce_sum(tf.sin(_attention(*xs))),
                  MODELS["attention"][1]),
}


@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("case", sorted(_HESSIAN_CASES))
def test_hessians_by_batched_forward_over_reverse(case, mode):
  """Where every op between x and its gradient has a forward rule, the
  Hessian is one batched forward pass over the gradient (no pfor): same
  values as tf.hessians."""
  loss_fn, shapes = _HESSIAN_CASES[case]
  rng = np.random.default_rng(11)
  values = [0.5 * rng.standard_normal(s) for s in shapes]

  def build(xs):
    loss = loss_fn(xs)
    ours, names = _added_op_names(lambda: tfgrad.hessians(loss, xs))
    assert not [n for n in names if "pfor" in n or "loop_body" in n]
    return ours, tf.hessians(loss, xs)
  _assert_same(*_run(mode, build, values), rtol=1e-10)


def test_hessians_by_batched_forward_with_an_unknown_batch():
  """Data of unknown batch size (a tf.function's input signature), the
  weights static: the batched pass broadcasts to shapes known at run
  time."""
  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float64),
                                tf.TensorSpec([3, 2], tf.float64)])
  def both(data, w):
    h = tf.nn.relu(data @ w) + tf.sigmoid(data[:, :2] * w[0])
    loss = tf.reduce_mean(tf.square(h - 0.5)) + tf.reduce_sum(w ** 4)
    ours, names = _added_op_names(lambda: tfgrad.hessians(loss, w))
    assert not [n for n in names if "pfor" in n or "loop_body" in n]
    return ours + tf.hessians(loss, w)
  rng = np.random.default_rng(13)
  ours, theirs = both(tf.constant(rng.standard_normal((5, 3))),
                      tf.constant(rng.standard_normal((3, 2))))
  assert ours.shape == theirs.shape == (3, 2, 3, 2)
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-10,
                             atol=1e-12)


def test_hessians_by_batched_forward_by_finite_differences():
  values = 0.5 * np.random.default_rng(12).standard_normal(25)
  with tf.Graph().as_default():
    theta = tf.compat.v1.placeholder(tf.float64, [25])
    (g,) = tfgrad.gradients(_sliced_mlp_loss(theta), theta)
    (h,) = tfgrad.hessians(_sliced_mlp_loss(theta), theta)
    with tf.compat.v1.Session() as sess:
      h_v = sess.run(h, {theta: values})
      eps = 1e-5
      numeric = np.stack([
          (sess.run(g, {theta: values + eps * e}) -
           sess.run(g, {theta: values - eps * e})) / (2 * eps)
          for e in np.eye(25)])
  np.testing.assert_allclose(h_v, numeric.T, rtol=1e-6, atol=1e-7)


def test_hessians_of_a_non_symmetric_gradient_rule_are_tf_hessians():
  """A custom gradient A x with A not symmetric: row i of tf.hessians is
  d g_i / d x, which the batched forward pass gives as a column; the
  result is transposed to match."""
  a = np.arange(9.0).reshape(3, 3) - 2.0

  @tf.custom_gradient
  def skewed(x):
    def grad(up):
      return up * tf.linalg.matvec(tf.constant(a), x)
    return tf.reduce_sum(x * x), grad

  def build(xs):
    loss = skewed(xs[0])
    ours, names = _added_op_names(lambda: tfgrad.hessians(loss, xs))
    assert not [n for n in names if "pfor" in n]
    return ours, tf.hessians(loss, xs)
  for mode in _MODES:
    ours, theirs, ours_v, theirs_v = _run(mode, build, [np.ones(3)])
    _assert_same(ours, theirs, ours_v, theirs_v)
    np.testing.assert_allclose(ours_v[0], a)


@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_hessian_vector_product_matches_tf(model, mode):
  fn = MODELS[model][0]
  vs = _values(model, seed=2)

  def build(xs):
    loss = tf.reduce_sum(tf.sin(fn(*xs)))
    v = [tf.constant(a) for a in vs]
    return (tfgrad.hessian_vector_product(loss, xs, v),
            gradients_impl._hessian_vector_product(loss, xs, v))  # pylint: disable=protected-access
  _assert_same(*_run(mode, build, _values(model)))


def test_installed_tf_hessians_is_tfgrads():
  with tf.Graph().as_default():
    x = tf.constant([1.0, 2.0, 3.0])
    loss = tf.reduce_sum(tf.sin(x) * x[0])
    stock = tf.hessians(loss, x)[0]
    stock_v1 = tf.compat.v1.hessians(loss, x,
                                     colocate_gradients_with_ops=True)[0]
    with tfgrad.installed():
      assert tf.hessians is tfgrad.hessians
      assert tf.compat.v1.hessians is tfgrad.compat.v1.hessians
      ours = tf.hessians(loss, x)[0]
      ours_v1 = tf.compat.v1.hessians(loss, x,
                                      colocate_gradients_with_ops=True)[0]
    with tf.compat.v1.Session() as sess:
      a, b, c, d = sess.run([ours, stock, ours_v1, stock_v1])
  np.testing.assert_allclose(a, b, rtol=1e-6)
  np.testing.assert_allclose(c, d, rtol=1e-6)


# ----- by finite differences (float64) -----

def _fd(f, values, direction, eps=1e-6):
  plus = f([v + eps * d for v, d in zip(values, direction)])
  minus = f([v - eps * d for v, d in zip(values, direction)])
  return [(p - m) / (2 * eps) for p, m in zip(plus, minus)]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_jvp_and_hvp_by_finite_differences(model):
  fn = MODELS[model][0]
  values, direction = _values(model), _values(model, seed=3)
  with tf.Graph().as_default():
    xs = [tf.compat.v1.placeholder(tf.float64, v.shape) for v in values]
    ts = [tf.constant(d) for d in direction]
    y = fn(*xs)
    loss = tf.reduce_sum(tf.sin(y))
    grads = tfgrad.gradients(loss, xs)
    jv = tfgrad.jvp(y, xs, ts)
    hv = tfgrad.hessian_vector_product(loss, xs, ts)
    hessians = tfgrad.hessians(loss, xs)
    with tf.compat.v1.Session() as sess:
      def at(fetch):
        return lambda vals: sess.run(fetch, dict(zip(xs, vals)))
      jv_v, hv_v, h_v = at([jv, hv, hessians])(values)
      numeric_jv = _fd(at([y]), values, direction)[0]
      numeric_hv = _fd(at(grads), values, direction)
  np.testing.assert_allclose(jv_v, numeric_jv, rtol=1e-6, atol=1e-7)
  for a, b in zip(hv_v, numeric_hv):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # The diagonal blocks of the full Hessian, applied to each x's direction.
  for k, (h, d) in enumerate(zip(h_v, direction)):
    one = [d if i == k else np.zeros_like(d) for i, d in enumerate(direction)]
    with tf.Graph().as_default():
      xs = [tf.compat.v1.placeholder(tf.float64, v.shape) for v in values]
      g = tfgrad.gradients(tf.reduce_sum(tf.sin(fn(*xs))), xs)[k]
      with tf.compat.v1.Session() as sess:
        numeric = _fd(lambda vals: [sess.run(g, dict(zip(xs, vals)))],
                      values, one)[0]
    np.testing.assert_allclose(
        h.reshape(d.size, d.size) @ d.ravel(), numeric.ravel(), rtol=1e-6,
        atol=1e-7)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_jacobian_by_check_gradients(model):
  fn = MODELS[model][0]
  report = tfgrad.check_gradients(fn, _values(model), rtol=1e-6, atol=1e-7)
  assert report.ok and report.checked > 0


# ----- None, zeros, integers, IndexedSlices -----

def test_unconnected_follow_first_order_conventions():
  def build(xs):
    x, other = xs
    y = tf.sin(x) * 2.0
    loss = tf.reduce_sum(y)
    v = [tf.ones_like(x), tf.ones_like(other)]
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(xs)
      y2 = tf.sin(x) * 2.0
    ours = (tfgrad.jacobian(y, xs) +
            tfgrad.jacobian(y, xs, unconnected_gradients="zero") +
            tfgrad.jacobian(y, xs, mode="forward") +
            tfgrad.jacobian(y, xs, mode="forward",
                            unconnected_gradients="zero") +
            tfgrad.hessian_vector_product(loss, xs, v) +
            tfgrad.hessian_vector_product(loss, xs, v,
                                          unconnected_gradients="zero") +
            [tfgrad.jvp(y, [other], [v[1]])] +
            [tfgrad.jvp(y, [other], [v[1]], unconnected_gradients="zero")] +
            [tfgrad.batch_jacobian(y, other)])
    theirs = (tape.jacobian(y2, xs) +
              tape.jacobian(y2, xs, unconnected_gradients="zero") +
              tape.jacobian(y2, xs) +
              tape.jacobian(y2, xs, unconnected_gradients="zero") +
              tfgrad.gradients([tfgrad.gradients(loss, x)[0]], xs, v[:1]) +
              tfgrad.gradients([tfgrad.gradients(loss, x)[0]], xs, v[:1],
                               unconnected_gradients="zero") +
              [None, tf.zeros_like(y)] +
              [tape.batch_jacobian(y2, other)])
    return ours, theirs
  for mode in _MODES:
    _assert_same(*_run(mode, build, [np.ones((2, 3)), np.ones((2, 4))]))


def test_hessians_of_unconnected_and_linear_xs():
  with tf.Graph().as_default():
    x, other, lin = (tf.constant(np.ones(3)), tf.constant(np.ones(2)),
                      tf.constant(np.ones(2)))
    loss = tf.reduce_sum(x * x * x) + tf.reduce_sum(lin * 3.0)
    h_x, h_other, h_lin = tfgrad.hessians(loss, [x, other, lin])
    assert h_other is None
    with tf.compat.v1.Session() as sess:
      hx, hl = sess.run([h_x, h_lin])
  np.testing.assert_allclose(hx, np.diag(6.0 * np.ones(3)))
  np.testing.assert_array_equal(hl, np.zeros((2, 2)))


def test_integer_xs_are_constants():
  with tf.Graph().as_default():
    x = tf.constant([1.0, 2.0])
    n = tf.constant([3, 4])
    y = x * tf.cast(n, tf.float32)
    assert tf.gradients(y, [n]) == [None]
    assert tfgrad.jacobian(y, [x, n])[1] is None
    assert tfgrad.jvp(y, [n], [tf.constant([1, 1])]) is None


def test_indexed_slices_are_densified_only_in_jacobians():
  params0 = np.arange(12.0).reshape(4, 3) / 10.0
  ids = [2, 0, 2]

  def build(xs):
    (params,) = xs
    t = tf.constant(np.ones((4, 3)))
    with tf.GradientTape(persistent=True) as tape, \
        tf.autodiff.ForwardAccumulator(params, t) as acc:
      tape.watch(params)
      y = tf.tanh(tf.gather(params, ids))
    loss = tf.reduce_sum(y * y)
    stock_g = tf.gradients(loss, params)[0]
    assert isinstance(stock_g, tf.IndexedSlices)
    (hvp,) = tfgrad.hessian_vector_product(loss, [params], [t])
    (stock_hvp,) = gradients_impl._hessian_vector_product(loss, [params], [t])  # pylint: disable=protected-access
    assert isinstance(hvp, tf.IndexedSlices)
    assert isinstance(stock_hvp, tf.IndexedSlices)
    ours = [tfgrad.jacobian(y, params),
            tfgrad.jacobian(y, params, mode="forward"),
            tfgrad.jvp(y, params, t), tf.convert_to_tensor(hvp)]
    theirs = [tape.jacobian(y, params), tape.jacobian(y, params),
              acc.jvp(y), tf.convert_to_tensor(stock_hvp)]
    return ours, theirs
  for mode in _MODES:
    _assert_same(*_run(mode, build, [params0]))


def test_complex_jvp_is_forward_accumulators_for_holomorphic_functions():
  z0 = np.array([0.3 + 0.2j, -0.5 + 1.0j])
  t0 = np.array([1.0 - 0.5j, 0.25 + 0.0j])

  def build(xs):
    (z,) = xs
    t = tf.constant(t0)
    with tf.autodiff.ForwardAccumulator(z, t) as acc:
      y = tf.exp(z) * z * z
    return [tfgrad.jvp(y, z, t)], [acc.jvp(y)]
  for mode in _MODES:
    _assert_same(*_run(mode, build, [z0]))


# ----- vectorized or not: the while_loop rows give the same values -----

@pytest.mark.parametrize("model", ["mlp", "while"])
def test_while_loop_rows_equal_vectorized(model):
  fn = MODELS[model][0]

  def build(xs):
    y = fn(*xs)
    loss = tf.reduce_sum(tf.sin(y))
    return (tfgrad.jacobian(y, xs, vectorize=False) +
            tfgrad.hessians(loss, xs, vectorize=False) +
            [tfgrad.batch_jacobian(y, xs[0], vectorize=False)],
            tfgrad.jacobian(y, xs) + tfgrad.hessians(loss, xs) +
            [tfgrad.batch_jacobian(y, xs[0])])
  for mode in _MODES:
    _assert_same(*_run(mode, build, _values(model)))


def test_an_op_without_pfor_converter_runs_in_its_own_loop():
  """A py_function in the gradient: pfor has no converter for it and runs
  it in a while_loop inside the vectorized graph."""
  @tf.custom_gradient
  def opaque(x):
    def grad(g):
      return tf.py_function(lambda a, b: a * 2.0 * b, [g, x], tf.float64)
    return x * x, grad

  with tf.Graph().as_default():
    x = tf.constant([1.0, 2.0, 3.0], tf.float64)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = opaque(x)
    jac = tfgrad.jacobian(y, x)
    stock = tape.jacobian(y, x, experimental_use_pfor=False)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([jac, stock])
  np.testing.assert_allclose(a, b)
  np.testing.assert_allclose(a, np.diag([2.0, 4.0, 6.0]))


def test_ops_pfor_loops_over_are_named(caplog):
  """Second-order conv gradients have a Conv2D whose filter differs per
  row, which pfor runs in a while_loop of its own: same Hessian as
  tf.hessians, and the log names the op type (a While that pfor
  vectorizes is not named)."""
  conv, loop = MODELS["conv"][0], MODELS["while"][0]

  def build(xs):
    loss = tf.reduce_sum(tf.sin(conv(*xs[:2]))) + tf.reduce_sum(
        tf.sin(loop(*xs[2:])))
    return tfgrad.hessians(loss, xs), tf.hessians(loss, xs)
  _assert_same(*_run("graph", build, _values("conv") + _values("while")))
  named = [r.getMessage() for r in caplog.records
           if "while_loop of their own" in r.getMessage()]
  assert named and all(m.endswith(": Conv2D") for m in named)


# ----- bad input -----

def test_tangents_and_vs_must_match_xs():
  with tf.Graph().as_default():
    x = tf.constant(np.ones((2, 3)))
    w = tf.constant(np.ones((3,)))
    y = tf.reduce_sum(x * w)
    with pytest.raises(ValueError, match=r"tangents\[1\].*\(4,\).*\(3,\)"):
      tfgrad.jvp(y, [x, w], [tf.ones((2, 3), tf.float64),
                             tf.ones((4,), tf.float64)])
    with pytest.raises(ValueError, match=r"vs\[0\].*float32.*float64"):
      tfgrad.hessian_vector_product(y, [x, w], [tf.ones((2, 3)),
                                                tf.ones((3,), tf.float64)])
    with pytest.raises(ValueError, match="1 entries.*2"):
      tfgrad.jvp(y, [x, w], [tf.ones((2, 3), tf.float64)])
    with pytest.raises(ValueError, match="rank at least 2"):
      tfgrad.batch_jacobian(tf.ones((2, 3), tf.float64) * x, w)
    with pytest.raises(ValueError, match="Need first dimension"):
      tfgrad.batch_jacobian(x, tf.ones((3, 3), tf.float64))
    with pytest.raises(ValueError, match="mode"):
      tfgrad.jacobian(y, x, mode="sideways")


def test_eager_mode_raises_runtime_error():
  x = tf.constant([1.0])
  for call in (lambda: tfgrad.hessians(x, x), lambda: tfgrad.jacobian(x, x),
               lambda: tfgrad.batch_jacobian(x, x),
               lambda: tfgrad.jvp(x, x, x),
               lambda: tfgrad.hessian_vector_product(x, x, x)):
    with pytest.raises(RuntimeError):
      call()


# ----- resource variables and shapes known only at run time -----

def test_resource_variable_xs():
  """Variables as xs: the Jacobian, jvp and Hessian with respect to the
  variable, as the tape, the accumulator and tf.hessians give them."""
  w0 = np.array([[0.5, -1.0], [2.0, 0.25], [0.1, 0.3]])
  x0 = np.array([[1.0, 2.0, -1.0]])
  for mode in _MODES:
    made = []

    def build(xs, made=made):
      if not made:
        with tf.init_scope():
          made.append(tf.Variable(w0))
      w = made[0]
      t = tf.constant(np.ones_like(w0))
      with tf.GradientTape(persistent=True) as tape, \
          tf.autodiff.ForwardAccumulator(w, t) as acc:
        y = tf.tanh(xs[0] @ w)
        with tf.GradientTape() as inner:
          loss = tf.reduce_sum(tf.sin(xs[0] @ w))
        g = inner.gradient(loss, w)
      ours = ([tfgrad.jacobian(y, w), tfgrad.jacobian(y, w, mode="forward"),
               tfgrad.jvp(y, w, t)]
              + tfgrad.hessians(loss, w) +
              tfgrad.hessian_vector_product(loss, [w], [t]))
      # Stock tf.hessians raises ValueError for a variable inside a
      # tf.function (its while_loop body gets None for the variable): the
      # tape's Jacobian of the gradient is the reference.
      theirs = ([tape.jacobian(y, w), tape.jacobian(y, w), acc.jvp(y)] +
                [tape.jacobian(g, w)] +
                gradients_impl._hessian_vector_product(loss, [w], [t]))  # pylint: disable=protected-access
      return ours, theirs
    if mode == "graph":
      with tf.Graph().as_default():
        ours, theirs = build([tf.constant(x0)])
        fetch = ours + theirs
        with tf.compat.v1.Session() as sess:
          sess.run(tf.compat.v1.global_variables_initializer())
          values = sess.run(fetch)
      _assert_same(ours, theirs, values[:len(ours)], values[len(ours):])
    else:
      _assert_same(*_run(mode, build, [x0]))


def test_square_jacobians_take_one_batched_forward_pass():
  """As many inputs as outputs, every op with a forward rule: one batched
  forward pass from x's identity basis (no pfor, and no product with the
  basis), equal to the tape's Jacobians."""
  w = np.random.default_rng(8).standard_normal((4, 4))

  def build(xs):
    v, batch = xs
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(xs)
      y = tf.tanh(tf.linalg.matvec(w, v, transpose_a=True) + 0.5)
      yb = tf.sin(batch @ w)
    ours, names = _added_op_names(lambda: [tfgrad.jacobian(y, v),
                                           tfgrad.batch_jacobian(yb, batch)])
    assert not [n for n in names if "pfor" in n or "loop_body" in n]
    graph = tf.compat.v1.get_default_graph()
    assert not {graph.get_operation_by_name(n).type for n in names} & {
        "MatMul", "BatchMatMulV2", "BatchMatMulV3"}
    return ours, [tape.jacobian(y, v), tape.batch_jacobian(yb, batch)]
  rng = np.random.default_rng(9)
  for mode in _MODES:
    _assert_same(*_run(mode, build, [rng.standard_normal(4),
                                     rng.standard_normal((3, 4))]))


def test_unknown_batch_in_a_function_with_input_signature():
  w = tf.constant(np.array([[0.5, -1.0], [2.0, 0.25], [0.1, 0.3]]))

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float64)])
  def both(x):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(x)
      y = tf.tanh(x @ w)
    ours = [tfgrad.jacobian(y, x), tfgrad.jacobian(y, x, mode="forward"),
            tfgrad.batch_jacobian(y, x),
            tfgrad.batch_jacobian(y, x, mode="forward")]
    theirs = [tape.jacobian(y, x), tape.jacobian(y, x),
              tape.batch_jacobian(y, x), tape.batch_jacobian(y, x)]
    for a, b in zip(ours, theirs):
      assert a.shape.is_compatible_with(b.shape)
      assert a.shape.rank == b.shape.rank
    return ours, theirs
  x = np.random.default_rng(5).standard_normal((4, 3))
  ours, theirs = both(tf.constant(x))
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


# ----- jvp across op families, against ForwardAccumulator -----

def _layer_norm(x):
  mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
  return (x - mean) * tf.math.rsqrt(var + 1e-3)


_FAMILIES = {
    "elementwise": (lambda a, b: tf.exp(a) * tf.sin(b) / (1.0 + a * a),
                    [(3, 4), (3, 4)]),
    "broadcast": (lambda a, b: tf.maximum(a, b) - tf.square(a - b),
                  [(3, 4), (4,)]),
    "matmul": (lambda a, b: tf.linalg.matmul(a, b, transpose_b=True),
               [(3, 4), (5, 4)]),
    "batch_matmul": (lambda a, b: a @ b, [(2, 3, 4), (2, 4, 2)]),
    "einsum": (lambda a, b: tf.einsum("bij,jk->bik", a, b),
               [(2, 3, 4), (4, 5)]),
    "conv": (lambda a, f: tf.nn.conv2d(a, f, 2, "SAME"),
             [(1, 5, 5, 2), (3, 3, 2, 4)]),
    "depthwise_pool": (lambda a, f: tf.nn.avg_pool2d(
        tf.nn.depthwise_conv2d(a, f, [1, 1, 1, 1], "VALID"), 2, 1, "VALID"),
                       [(1, 5, 5, 2), (2, 2, 2, 1)]),
    "reductions": (lambda a: [tf.reduce_sum(a, 0), tf.reduce_mean(a, 1),
                              tf.reduce_logsumexp(a), tf.reduce_prod(a, 1),
                              tf.reduce_max(a, 0)], [(3, 4)]),
    "shape_ops": (lambda a: tf.concat([tf.transpose(tf.reshape(a, [4, 3])),
                                       tf.tile(a[:, :1], [1, 2]),
                                       tf.reverse(a, [1])], 1), [(3, 4)]),
    "gather_pad": (lambda a: tf.pad(tf.gather(a, [2, 0, 2], axis=1),
                                    [[1, 0], [0, 2]]), [(3, 4)]),
    "softmax": (lambda a: [tf.nn.softmax(a), tf.nn.log_softmax(a)],
                [(3, 4)]),
    "layer_norm": (_layer_norm, [(3, 6)]),
    "cumulative": (lambda a: tf.cumsum(a, 1) * tf.math.cumprod(a, 0),
                   [(3, 4)]),
    "linalg": (lambda a: tf.linalg.inv(a + 4.0 * tf.eye(3, dtype=a.dtype)),
               [(3, 3)]),
}


# Families whose every op has a forward rule: jvp takes the native path.
_NATIVE = {"elementwise", "broadcast", "matmul", "batch_matmul", "conv",
           "shape_ops", "gather_pad", "softmax", "layer_norm"}


@pytest.mark.parametrize("native", [True, False], ids=["native", "reverse2"])
@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_jvp_across_families(family, native):
  fn, shapes = _FAMILIES[family]
  if native:
    with tf.Graph().as_default():
      xs = [tf.constant(np.ones(s)) for s in shapes]
      found = forward.tangents_or_none(tf.nest.flatten(fn(*xs)), xs,
                                       [tf.ones_like(x) for x in xs])
    assert (found is not None) == (family in _NATIVE)
  rng = np.random.default_rng(7)
  values = [rng.standard_normal(s) for s in shapes]
  tangents = [rng.standard_normal(s) for s in shapes]

  def build(xs):
    ts = [tf.constant(t) for t in tangents]
    with tf.autodiff.ForwardAccumulator(xs, ts) as acc:
      stock_ys = tf.nest.flatten(fn(*xs))
    ours = tfgrad.jvp(tf.nest.flatten(fn(*xs)), xs, ts, native=native)
    return list(ours), [acc.jvp(y) for y in stock_ys]
  for mode in _MODES:
    _assert_same(*_run(mode, build, values))


@pytest.mark.parametrize("family", sorted(_FAMILIES))
def test_jacobians_across_families(family):
  fn, shapes = _FAMILIES[family]
  rng = np.random.default_rng(8)
  values = [rng.standard_normal(s) for s in shapes]

  def build(xs):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(xs)
      ys = tf.nest.flatten(fn(*xs))
    ours, theirs = [], []
    for y in ys:
      ours += tfgrad.jacobian(y, xs, mode="forward")
      ours += tfgrad.jacobian(y, xs, mode="reverse")
      theirs += tape.jacobian(y, xs) * 2
    return ours, theirs
  _assert_same(*_run("function", build, values))


def test_scalars_and_ys_that_are_xs():
  def build(xs):
    s, x = xs
    with tf.GradientTape(persistent=True) as tape, \
        tf.autodiff.ForwardAccumulator(xs, [tf.constant(1.5, tf.float64),
                                            tf.ones_like(x)]) as acc:
      tape.watch(xs)
      cube = s ** 3
      y = cube * x
    ours = ([tfgrad.jacobian(cube, s), tfgrad.jacobian(x, x),
             tfgrad.jacobian(x, x, mode="forward")] +
            tfgrad.hessians(cube, s) +
            tfgrad.jvp([y, x], xs, [tf.constant(1.5, tf.float64),
                                   tf.ones_like(x)]))
    theirs = ([tape.jacobian(cube, s), tape.jacobian(x, x),
               tape.jacobian(x, x)] + tf.hessians(cube, s) +
              [acc.jvp(y), acc.jvp(x)])
    return ours, theirs
  for mode in _MODES:
    _assert_same(*_run(mode, build, [np.float64(2.0), np.array([1.0, -2.0])]))


def test_jvp_native_unary_rules():
  """Each unary forward rule against ForwardAccumulator, real and (where
  the op takes them) complex."""
  real = [tf.tanh, tf.sigmoid, tf.sqrt, tf.math.rsqrt, tf.math.reciprocal,
          tf.exp, tf.math.log, tf.sin, tf.cos, tf.square, tf.nn.relu,
          tf.nn.softplus]
  complex_ = [tf.tanh, tf.sigmoid, tf.sqrt, tf.math.rsqrt,
              tf.math.reciprocal, tf.exp, tf.math.log, tf.sin, tf.cos,
              tf.square]
  x0 = np.array([0.3, 1.2, 2.5])
  z0 = np.array([0.3 + 0.4j, 1.2 - 0.5j, 2.5 + 1.0j])
  for fns, value in ((real, x0), (complex_, z0)):
    def build(xs, fns=fns):
      (x,) = xs
      t = tf.ones_like(x) * tf.cast(0.7, x.dtype)
      with tf.autodiff.ForwardAccumulator(x, t) as acc:
        stock = [f(x) for f in fns]
      ys = [f(x) for f in fns]
      assert forward.tangents_or_none(ys, [x], [t]) is not None
      return tfgrad.jvp(ys, x, t), [acc.jvp(y) for y in stock]
    for mode in _MODES:
      _assert_same(*_run(mode, build, [value]))
