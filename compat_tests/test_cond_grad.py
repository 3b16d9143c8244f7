"""ops/cond_grad.py: If/StatelessIf/Case/StatelessCase gradients built by
tfgrad, against stock tf.gradients (a tf.Graph with a Session and a
tf.function; strict mode), by finite differences at orders 1 and 2, with
TF's builders made unavailable, from two threads at once, and on bad
input."""


import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import cond_specs
from compat_tests import differential
from compat_tests import harness
from compat_tests import tf_builders

@pytest.mark.parametrize(**harness.cases(cond_specs.SPECS))
def test_spec_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(cond_specs.SPECS))
def test_spec_numeric(spec, order):
  harness.check_numeric(spec, order)


# ----- constructs: build(pred) -> (ys, xs) -----


def _x():
  return tf.constant([0.3, -1.2, 2.0], tf.float32)


def _one_branch_intermediate(pred):
  """sin(x) * x in one branch (needs sin(x) saved), x * 2 in the other
  (needs no forward value)."""
  x = _x()
  return tf.cond(pred, lambda: tf.sin(x) * x, lambda: x * 2.0), [x]


def _variable_read(pred):
  """A variable read in both branches (a stateful If), w captured."""
  x = _x()
  w = differential.variable([1.5, -0.5, 0.25])
  y = tf.cond(pred, lambda: tf.tanh(w * x), lambda: w.read_value() ** 2)
  return tf.reduce_sum(y), [x, w]


def _nested(pred):
  """A cond in a branch of a cond, each saving intermediates."""
  x = _x()

  def outer_true():
    inner = tf.cond(tf.logical_not(pred), lambda: tf.exp(x) * x,
                    lambda: tf.sin(x) * tf.cos(x))
    return inner * tf.square(x)
  return tf.cond(pred, outer_true, lambda: tf.sqrt(x * x + 1.0)), [x]


def _sparse_one_branch(pred):
  """A gather from the table in one branch (IndexedSlices), dense use of
  it in the other."""
  table = tf.constant(np.arange(12.0).reshape(4, 3) / 10.0, tf.float32)
  idx = tf.constant([2, 0, 2])
  y = tf.cond(pred, lambda: tf.gather(table, idx) * 3.0,
              lambda: tf.sin(table[:3]))
  return y, [table]


def _sparse_both(pred):
  """Gathers in both branches, int32 and int64 indices."""
  table = tf.constant(np.arange(12.0).reshape(4, 3) / 10.0, tf.float32)
  y = tf.cond(pred, lambda: tf.gather(table, tf.constant([1, 3])),
              lambda: tf.gather(table, tf.constant([0, 0], tf.int64)) * 2.0)
  return y, [table]


def _custom_gradient_inside(pred):
  """tf.custom_gradient in a branch: its gradient function is used."""
  x = _x()

  @tf.custom_gradient
  def clipped(v):
    def grad(dy):
      return tf.clip_by_value(dy * 3.0, -1.0, 1.0)
    return tf.identity(v), grad
  return tf.cond(pred, lambda: clipped(x * x), lambda: tf.cos(x)), [x]


def _several_outputs(pred):
  """Two outputs, one of them int (no gradient), one float not used."""
  x = _x()
  a, b, c = tf.cond(pred, lambda: (tf.sin(x), tf.constant(1), x * x),
                    lambda: (x * 3.0, tf.constant(2), tf.exp(x)))
  del b, c
  return a, [x]


def _x_only_in_predicate(pred):
  """x feeds the predicate and one branch's unused input: None."""
  x = _x()
  y = tf.cond(tf.logical_and(pred, x[0] > 0.0), lambda: tf.ones([3]),
              lambda: tf.zeros([3]) + 2.0)
  return y, [x]


def _two_xs_one_branch_each(pred):
  """Each branch reads another x: zeros for the other one's."""
  x = _x()
  z = tf.constant([1.0, 2.0, 3.0])
  return tf.cond(pred, lambda: tf.sin(x), lambda: tf.exp(z)), [x, z]


def _unreached_output(pred):
  """Only p is used; b reaches only q: stock's rule, fed zeros for q,
  returns zeros for b, and so does tfgrad's (None where the path passes
  through stop_gradient)."""
  a, b, c = _x(), _x() * 2.0, _x() * 3.0
  p, q, r = tf.cond(pred, lambda: (a * 2.0, b * 3.0, tf.stop_gradient(c)),
                    lambda: (a, b, c * 0.0 + 1.0))
  del q, r
  return [p], [a, b, c]


def _case(pred):
  """A 3-way switch_case; branch 2 reads no x."""
  x = _x()
  index = tf.where(pred, 1, 2)
  y = tf.switch_case(index, [lambda: tf.sin(x) * x, lambda: tf.exp(x) * x,
                             lambda: tf.ones([3])])
  return y, [x]


def _case_variable(pred):
  """A Case reading a variable (stateful), two branches."""
  x = _x()
  w = differential.variable([0.5, 1.0, -2.0])
  y = tf.switch_case(tf.where(pred, 0, 1),
                     [lambda: tf.tanh(w * x), lambda: w * w * x])
  return tf.reduce_sum(y), [x, w]


CONSTRUCTS = [_one_branch_intermediate, _variable_read, _nested,
              _sparse_one_branch, _sparse_both, _custom_gradient_inside,
              _several_outputs, _x_only_in_predicate,
              _two_xs_one_branch_each, _unreached_output, _case,
              _case_variable]
_IDS = [c.__name__.strip("_") for c in CONSTRUCTS]


def _with_pred(construct, value, seen=None):
  """The construct with a constant predicate; `seen` (a list) receives
  the cond ops it built."""
  def build():
    ys, xs = construct(tf.constant(value))
    if seen is not None:
      seen.extend(_cond_ops(tf.compat.v1.get_default_graph()))
    return ys, xs
  return build


def _cond_ops(graph):
  return [op for op in graph.get_operations()
          if op.type in ("If", "StatelessIf", "Case", "StatelessCase")]


@pytest.mark.parametrize("construct", CONSTRUCTS, ids=_IDS)
@pytest.mark.parametrize("pred", [True, False])
def test_matches_tf(construct, pred):
  seen = []
  with tfgrad.strict_mode():
    differential.in_graph(_with_pred(construct, pred, seen))
    assert seen, "the construct built no If/Case op"
    differential.in_function(_with_pred(construct, pred))


def test_gradient_override_map_inside_branch():
  """A user's override name on an op in a branch stays the user's."""
  name = "CondGradTestSquareTimesFive"

  @tf.RegisterGradient(name)
  def _five(op, grad):  # pylint: disable=unused-variable
    return grad * 5.0 * op.inputs[0]

  def build():
    x = _x()

    def branch():
      graph = tf.compat.v1.get_default_graph()  # the branch's
      with graph.gradient_override_map({"Square": name}):
        return tf.square(x)
    return tf.cond(tf.constant(True), branch, lambda: x), [x]
  with tfgrad.strict_mode():
    _, _, ours, _ = differential.in_graph(build)
  np.testing.assert_allclose(ours[0], 5.0 * np.array([0.3, -1.2, 2.0]),
                             rtol=1e-6)


# ----- what the forward rewrite exposes -----


def _added_outputs(build):
  """Outputs tfgrad's gradient adds to the cond, and stock's, each on a
  fresh copy of the graph."""
  counts = []
  for engine in (tfgrad.gradients, tf.gradients):
    with tf.Graph().as_default() as graph:
      ys, xs = build()
      cond = _cond_ops(graph)[0]
      before = len(cond.outputs)
      engine(ys, xs)
      counts.append(len(cond.outputs) - before)
  return counts


def test_linear_branches_add_no_output():
  """x * 2 and x + x need no forward value: the If keeps its outputs."""
  def build():
    x = _x()
    return tf.cond(tf.constant(True), lambda: x * 2.0,
                   lambda: x + x), [x]
  assert _added_outputs(build) == [0, 0]


def test_only_needed_intermediates_are_exposed():
  """tanh(x) * w: only tanh(x) (as one optional slot shared by the two
  branches' needs) is exposed when only w needs a gradient."""
  def build():
    x = _x()
    w = tf.constant([1.0, 2.0, 3.0])
    y = tf.cond(tf.constant(True), lambda: tf.tanh(x) * w,
                lambda: tf.sin(x) * w)
    return y, [w]
  ours, theirs = _added_outputs(build)
  assert ours == 1
  assert theirs >= ours


def test_second_gradient_reuses_the_exposed_outputs():
  with tf.Graph().as_default() as graph:
    ys, xs = _one_branch_intermediate(tf.constant(True))
    cond = _cond_ops(graph)[0]
    first = tfgrad.gradients(ys, xs)
    after_first = len(cond.outputs)
    second = tfgrad.gradients(ys, xs)
    assert len(cond.outputs) == after_first
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([first, second])
  np.testing.assert_allclose(a[0], b[0])


# ----- finite differences -----


def _cond_fn(pred):
  def fn(x):
    inner = tf.cond(tf.constant(not pred), lambda: tf.exp(x) * x,
                    lambda: tf.sin(x) * tf.cos(x))
    y = tf.cond(tf.constant(pred), lambda: inner * tf.square(x),
                lambda: tf.sqrt(x * x + 1.0) * x)
    return tf.switch_case(tf.constant(1 if pred else 0),
                          [lambda: tf.tanh(y) * x, lambda: y * y])
  return fn


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("pred", [True, False])
def test_finite_differences(order, pred):
  report = tfgrad.check_gradients(
      _cond_fn(pred), [np.array([0.3, -0.7, 1.1])], order=order,
      strict=True, raise_on_failure=False)
  assert report.ok, str(report)


def test_second_order_matches_stock():
  """The gradient of a gradient through a cond, stock's None and zeros
  pattern included (x * 2 leaves the first gradient free of x: None;
  x * x in one branch: zeros when the other branch runs)."""
  def build_linear():
    x = _x()
    y = tf.cond(tf.constant(True), lambda: x * 2.0, lambda: tf.ones([3]))
    return y, x

  def build_square(pred):
    def build():
      x = _x()
      y = tf.cond(tf.constant(pred), lambda: x * x, lambda: tf.ones([3]))
      return y, x
    return build

  for build in (build_linear, build_square(True), build_square(False)):
    with tf.Graph().as_default() as graph:
      y, x = build()
      ours = tfgrad.gradients(tfgrad.gradients(y, x)[0], x)
      theirs = tf.gradients(tf.gradients(y, x)[0], x)
      assert ([differential.describe(g) for g in ours]
              == [differential.describe(g) for g in theirs])
      if ours[0] is not None:
        with tf.compat.v1.Session(graph=graph) as sess:
          a, b = sess.run([ours, theirs])
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6)


# ----- proof that the builders are tfgrad's -----


@pytest.mark.parametrize("construct", CONSTRUCTS, ids=_IDS)
def test_without_tf_builders(construct):
  for pred in (True, False):
    tf_builders.stock_then_ours_in_graph(_with_pred(construct, pred))
    tf_builders.stock_then_ours_in_function(_with_pred(construct, pred))
  # TF is whole again: its own gradient of a cond works
  with tf.Graph().as_default():
    ys, xs = _one_branch_intermediate(tf.constant(True))
    assert tf.gradients(ys, xs)[0] is not None


# ----- threads -----


def test_two_threads_differentiate_one_cond():
  """Both get correct gradients; the cond is rewritten once (its outputs
  as after one gradient)."""
  with tf.Graph().as_default() as graph:
    ys, xs = _nested(tf.constant(True))
    cond = [op for op in _cond_ops(graph) if op.graph is graph][0]
    results = differential.gradients_on_two_threads(graph, ys, xs,
                                                    strict=True)
    outputs_after_both = len(cond.outputs)
    stock = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      a, b, c = sess.run([results[0], results[1], stock])
  np.testing.assert_allclose(a[0], c[0], rtol=1e-6)
  np.testing.assert_allclose(b[0], c[0], rtol=1e-6)
  with tf.Graph().as_default() as graph:
    ys, xs = _nested(tf.constant(True))
    cond = [op for op in _cond_ops(graph) if op.graph is graph][0]
    tfgrad.gradients(ys, xs)
    assert len(cond.outputs) == outputs_after_both


# ----- bad input -----


def test_gradient_of_branch_tensor_from_outside():
  """tf.gradients of a tensor inside a branch toward an outer x: the
  same exception type as stock, naming the branch tensor and the cond op
  running the branch; the graph still differentiates after."""
  with tf.Graph().as_default():
    x = _x()
    inner = []

    def branch():
      t = tf.sin(x)
      inner.append(t)
      return t * 2.0
    y = tf.cond(tf.constant(True), branch, lambda: x)
    with pytest.raises(Exception) as theirs:
      tf.gradients(inner[0], x)
    with pytest.raises(type(theirs.value)) as ours:
      tfgrad.gradients(inner[0], x)
    cond = _cond_ops(tf.compat.v1.get_default_graph())[0]
    assert inner[0].name in str(ours.value)
    assert (f"run by op '{cond.name}' (op type: {cond.type})"
            in str(ours.value))
    ours_g = tfgrad.gradients(y, x)
    theirs_g = tf.gradients(y, x)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([ours_g, theirs_g])
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6)


def test_cond_in_xla_function_matches_stock():
  """In an XLA context (optionals unsupported) tfgrad's If builder outputs
  the intermediates unwrapped; compiled, the values are stock's
  (`test_xla_control_flow.py` has the full comparison)."""
  @tf.function(jit_compile=True)
  def grads(x):
    y = tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.sin(x) * x,
                lambda: x * 2.0)
    return tfgrad.gradients(y, x)[0], tf.gradients(y, x)[0]
  ours, theirs = grads(tf.constant([0.3, -0.1, 0.5]))
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


# ----- GraphDef round trip -----

@pytest.mark.parametrize("construct", [_nested, _variable_read, _case,
                                       _sparse_one_branch],
                         ids=["nested", "variable_read", "case", "sparse"])
@pytest.mark.parametrize("pred", [True, False])
def test_graph_def_round_trip(construct, pred):
  """The gradient graph (branch gradient functions and the rewritten
  forward branches) as a GraphDef, imported into a new graph and run,
  gives the values the original graph gives."""
  with tf.Graph().as_default() as graph:
    ys, xs = _with_pred(construct, pred)()
    ours = [tf.convert_to_tensor(g)
            for g in tfgrad.gradients(ys, xs, strict=True) if g is not None]
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session() as sess:
      sess.run(init)
      direct = sess.run(ours)
    graph_def = graph.as_graph_def()
  again = differential.run_imported(graph_def, ours, init)
  assert len(again) == len(direct) > 0
  for g, h in zip(again, direct):
    np.testing.assert_array_equal(g, h)
