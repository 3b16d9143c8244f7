"""Control flow in XLA contexts, differentiated by tfgrad's own builders,
against stock tf.gradients (values, None pattern, kinds, dtypes, static
shapes, exception types):

  conds     If/StatelessIf/Case/StatelessCase in `tf.function(jit_compile=
            True)` (compiled by XLA on CPU), first and second order, and
            in a graph with optionals switched off: intermediates leave
            the forward op unwrapped, FakeParams in the other branches
  calls     v2 While loops and function calls in jit_compile functions
  v1 loops  `tf.compat.v1.while_loop` (plain, nested, a cond inside),
            `tf.scan` and `tf.map_fn` under `jit_scope` and inside
            `xla.compile`: history stacks bounded by `maximum_iterations`;
            without it, stock's ValueError

Ours always runs strict, with TF's control-flow and call gradient
builders, `_GradientsHelper` and v1 loop-state machinery unavailable
(`tf_builders`); stock's gradient is built before that."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.compiler.xla import xla
from tensorflow.python.eager import context as tf_context
from tensorflow.python.ops import control_flow_util

import tfgrad
from compat_tests import differential
from compat_tests import tf_builders

v1 = tf.compat.v1


def _ours(ys, xs):
  with tf_builders.tf_loop_builders_unavailable():
    return tfgrad.gradients(ys, xs, strict=True)


def _second_order(engine, ys, xs):
  grads = engine(ys, xs)
  total = tf.add_n([tf.reduce_sum(tf.convert_to_tensor(g) ** 2)
                    for g in grads if g is not None])
  return engine(total, xs)


# ----- v2 conds and calls in jit_compile functions -----

def _cond(x, w):
  y = tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.sin(x) * w,
              lambda: x * 2.0)
  return [tf.reduce_sum(y * y)], [x, w]


def _case(x, w):
  index = tf.cast(tf.reduce_sum(x) > 0.0, tf.int32) + 1
  y = tf.switch_case(index, [lambda: x * 3.0, lambda: tf.exp(x) * w,
                             lambda: tf.sin(x) * tf.cos(x * w)])
  return [tf.reduce_sum(y * y)], [x, w]


def _nested(x, w):
  def outer():
    return tf.cond(w > 0.5, lambda: tf.tanh(x * w), lambda: x * x)
  y = tf.cond(tf.reduce_sum(x) > 0.0, outer, lambda: tf.exp(x))
  return [tf.reduce_sum(y)], [x, w]


def _one_branch_reads_w(x, w):
  """w reaches one branch only; an unused second output."""
  y, z = tf.cond(tf.reduce_sum(x) < 0.0, lambda: (x * w, x),
                 lambda: (tf.square(x), x + 1.0))
  return [tf.reduce_sum(y)], [x, w, z]


def _sparse(x, w):
  """A gather in one branch: IndexedSlices for x from that branch."""
  y = tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.gather(x, [0, 2]) * w,
              lambda: x[:2] * 2.0)
  return [tf.reduce_sum(y * y)], [x, w]


def _while(x, w):
  _, h = tf.while_loop(lambda i, h: i < 3,
                       lambda i, h: (i + 1, tf.tanh(h * w)), (0, x),
                       maximum_iterations=3)
  return [tf.reduce_sum(h * h)], [x, w]


def _call(x, w):
  @tf.function
  def f(a, b):
    return tf.sin(a) * b + tf.cond(b > 0.0, lambda: a * b, lambda: a)
  return [tf.reduce_sum(f(x, w))], [x, w]


V2_CASES = {"cond": _cond, "case": _case, "nested": _nested,
            "one_branch_reads_w": _one_branch_reads_w, "sparse": _sparse,
            "while": _while,
            "call": _call}
_X = np.array([0.3, -0.1, 0.5], np.float32)


def _compiled(build, engine, order, x0):
  """The gradients of `build` by `engine` in a jit_compile function, run
  (XLA-compiled on CPU); (structure, values) or the exception raised."""
  structure = []

  @tf.function(jit_compile=True)
  def run(x, w):
    ys, xs = build(x, w)
    grads = (engine(ys, xs) if order == 1
             else _second_order(engine, ys, xs))
    structure.extend(differential.describe(g) for g in grads)
    return [differential._fetch(g) for g in grads if g is not None]  # pylint: disable=protected-access
  try:
    values = run(tf.constant(x0), tf.constant(0.7))
  except Exception as e:  # pylint: disable=broad-except
    return e
  return structure, [v.numpy() for v in values]


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("x0", [_X, -_X], ids=["positive", "negative"])
@pytest.mark.parametrize("name", sorted(V2_CASES))
def test_v2_in_jit_compile_matches_stock(name, x0, order):
  """Compiled by XLA: ours equals stock's (or raises stock's type)."""
  theirs = _compiled(V2_CASES[name], tf.gradients, order, x0)
  ours = _compiled(V2_CASES[name], _ours, order, x0)
  if isinstance(theirs, Exception):
    assert type(ours) is type(theirs), ours
    return
  assert not isinstance(ours, Exception), ours
  assert ours[0] == theirs[0]
  assert len(ours[1]) == len(theirs[1]) > 0
  for a, b in zip(ours[1], theirs[1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _forward_conds(graph):
  return [op for op in graph.get_operations()
          if op.type in ("If", "StatelessIf", "Case", "StatelessCase")
          and not op.name.startswith("gradient")]


def test_cond_in_jit_compile_outputs_intermediates_unwrapped():
  """In XLA the rewritten forward cond outputs no optionals: the branch
  that computes an intermediate outputs it, the other a FakeParam."""
  @tf.function(jit_compile=True)
  def run(x):
    y = tf.cond(tf.reduce_sum(x) > 0.0, lambda: tf.sin(x) * x,
                lambda: tf.exp(x))
    return _ours(y, x)[0]
  graph = run.get_concrete_function(tf.constant(_X)).graph
  (cond,) = _forward_conds(graph)
  assert len(cond.outputs) > 1
  assert all(t.dtype != tf.variant for t in cond.outputs)
  bodies = [graph._functions[cond.get_attr(a).name].graph  # pylint: disable=protected-access
            for a in ("then_branch", "else_branch")]
  for body in bodies:
    types = {op.type for op in body.get_operations()}
    assert "FakeParam" in types
    assert not types & {"OptionalFromValue", "OptionalNone"}


@pytest.mark.parametrize("pred", [True, False])
@pytest.mark.parametrize("name", ["cond", "case", "nested",
                                  "one_branch_reads_w", "sparse"])
def test_conds_with_optionals_switched_off_match_stock(name, pred):
  """Optionals off (`temporarily_disable_optionals_in_gradients`): in a
  graph, both engines output intermediates unwrapped; same values."""
  x0 = _X if pred else -_X
  graph = tf.Graph()
  with graph.as_default(), \
      tf_context.temporarily_disable_optionals_in_gradients():
    # (control flow v2 in the graph: If/Case ops, as in a function)
    with _control_flow_v2():
      ys, xs = V2_CASES[name](tf.constant(x0), tf.constant(0.7))
    theirs = tf.gradients(ys, xs)
    ours = _ours(ys, xs)
    variants = [t for op in _forward_conds(graph) for t in op.outputs
                if t.dtype == tf.variant]
    assert not variants
    with v1.Session() as sess:
      values = differential._run(sess, ours + theirs)  # pylint: disable=protected-access
  differential.assert_same(ours, theirs, values[:len(ours)],
                           values[len(ours):], rtol=1e-5)


@contextlib.contextmanager
def _control_flow_v2():
  saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
  control_flow_util.ENABLE_CONTROL_FLOW_V2 = True
  try:
    yield
  finally:
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = saved


# ----- v1 loops in XLA contexts -----

@pytest.fixture
def _control_flow_v1(monkeypatch):
  """v1 control flow (Enter/Exit frames) for graphs built in the test."""
  monkeypatch.setattr(control_flow_util, "ENABLE_CONTROL_FLOW_V2", False)


def _v1_loop(bound, nested=False, cond=False):
  """A v1 loop (4 iterations) with `maximum_iterations=bound`; optionally
  an inner loop (2 iterations, same bound) and a cond in its body."""
  def build(x, w):
    def body(i, h):
      if nested:
        _, h = v1.while_loop(lambda j, g: j < 2,
                             lambda j, g: (j + 1, tf.sin(g * w)), (0, h),
                             maximum_iterations=bound)
      if cond:
        h = tf.cond(i > 1, lambda: tf.tanh(h * w), lambda: h * w)
      return i + 1, tf.tanh(h * w)
    _, h = v1.while_loop(lambda i, h: i < 4, body, (0, x),
                         maximum_iterations=bound)
    return tf.reduce_sum(h * h), [x, w]
  return build


def _under_jit_scope(build, engine):
  """The loop built under `jit_scope` (its ops tagged for XLA), the
  gradient outside; runs in a Session."""
  x, w = tf.constant([0.5, -0.3]), tf.constant(0.7)
  with v1.xla.experimental.jit_scope():
    y, xs = build(x, w)
  return engine(y, xs)


def _in_xla_compile(build, engine):
  """Loop and gradient inside `xla.compile` (an XLA compile context),
  compiled by XLA on CPU."""
  x, w = tf.constant([0.5, -0.3]), tf.constant(0.7)
  return xla.compile(lambda x: engine(*build(x, w)), [x])


def _v1_result(where, build, engine):
  """(structure, values) of the gradients, or the exception raised."""
  graph = tf.Graph()
  with graph.as_default():
    try:
      grads = where(build, engine)
      structure = [differential.describe(g) for g in grads]
      with v1.Session() as sess:
        return structure, sess.run(grads)
    except Exception as e:  # pylint: disable=broad-except
      return e


_V1_PLACES = {"jit_scope": _under_jit_scope, "xla_compile": _in_xla_compile}
_V1_SHAPES = {"plain": {}, "nested": dict(nested=True),
              "cond_in_loop": dict(cond=True)}


@pytest.mark.usefixtures("_control_flow_v1")
@pytest.mark.parametrize("bound", [5, None], ids=["bounded", "unbounded"])
@pytest.mark.parametrize("shape", sorted(_V1_SHAPES))
@pytest.mark.parametrize("place", sorted(_V1_PLACES))
def test_v1_loop_in_xla_context_matches_stock(place, shape, bound):
  """With `maximum_iterations`: stock's values (inside `xla.compile` a
  cond in the loop fails to compile for both); without: stock's
  ValueError, with its message (ours adds the op whose gradient hit it)."""
  build = _v1_loop(bound, **_V1_SHAPES[shape])
  theirs = _v1_result(_V1_PLACES[place], build, tf.gradients)
  ours = _v1_result(_V1_PLACES[place], build, _ours)
  if isinstance(theirs, Exception):
    assert type(ours) is type(theirs), ours
    if isinstance(theirs, ValueError):  # ours may name the op it was at
      assert str(ours).startswith(str(theirs))
    return
  assert not isinstance(ours, Exception), ours
  assert ours[0] == theirs[0]
  for a, b in zip(ours[1], theirs[1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _scan_and_map_fn(x, w):
  """`tf.scan` and `tf.map_fn` (TensorArray loops, bounded by their
  length)."""
  elems = tf.reshape(tf.range(6, dtype=tf.float32), [3, 2]) * w
  scanned = tf.scan(lambda a, e: tf.tanh(a * e + x), elems, initializer=x)
  mapped = tf.map_fn(lambda e: tf.sin(e) * w, elems)
  return tf.reduce_sum(scanned) + tf.reduce_sum(mapped), [x, w]


@pytest.mark.usefixtures("_control_flow_v1")
@pytest.mark.parametrize("place", sorted(_V1_PLACES))
def test_v1_scan_and_map_fn_in_xla_context_match_stock(place):
  theirs = _v1_result(_V1_PLACES[place], _scan_and_map_fn, tf.gradients)
  ours = _v1_result(_V1_PLACES[place], _scan_and_map_fn, _ours)
  assert not isinstance(theirs, Exception), theirs
  assert not isinstance(ours, Exception), ours
  assert ours[0] == theirs[0]
  for a, b in zip(ours[1], theirs[1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _inner_bound_from_outer_body(x, w):
  """The inner loop's `maximum_iterations` computed in the outer body."""
  def body(i, h):
    _, h = v1.while_loop(lambda j, g: j < 2,
                         lambda j, g: (j + 1, tf.sin(g * w)), (0, h),
                         maximum_iterations=i + 2)
    return i + 1, tf.tanh(h * w)
  _, h = v1.while_loop(lambda i, h: i < 4, body, (0, x),
                       maximum_iterations=5)
  return tf.reduce_sum(h * h), [x, w]


@pytest.mark.usefixtures("_control_flow_v1")
@pytest.mark.parametrize("place", sorted(_V1_PLACES))
def test_v1_bound_not_static_raises_stocks_error(place):
  """A bound built inside an enclosing loop's body must be static: stock's
  ValueError and message otherwise."""
  build = _inner_bound_from_outer_body
  theirs = _v1_result(_V1_PLACES[place], build, tf.gradients)
  ours = _v1_result(_V1_PLACES[place], build, _ours)
  assert isinstance(theirs, ValueError), theirs
  assert type(ours) is ValueError, ours
  assert str(ours).startswith(str(theirs))


def _stack_sizes(build, engine):
  """The max_size of every history stack the gradient made, sorted."""
  graph = tf.Graph()
  with graph.as_default():
    _under_jit_scope(build, engine)
    bounds = [op.inputs[0] for op in graph.get_operations()
              if op.type == "StackV2"]
    with v1.Session() as sess:
      return sorted(sess.run(bounds))


@pytest.mark.usefixtures("_control_flow_v1")
@pytest.mark.parametrize("shape", sorted(_V1_SHAPES))
def test_v1_history_stacks_in_xla_have_stocks_bounds(shape):
  """Stacks for values tagged for XLA are bounded by the product of the
  `maximum_iterations` of the loops around them (5, 25 nested), one stack
  per value as stock (XLA's stacks hold one element per iteration); the
  counter tfgrad and stock add outside `jit_scope` stays unbounded (-1)."""
  build = _v1_loop(5, **_V1_SHAPES[shape])
  ours = _stack_sizes(build, _ours)
  assert ours == _stack_sizes(build, tf.gradients)
  assert max(ours) == (25 if shape == "nested" else 5)


def test_proof_fixture_bites():
  """Under the proof fixture stock's builders refuse: a v1 loop's and a
  cond's stock gradient fail."""
  graph = tf.Graph()
  with graph.as_default():
    saved = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
      y, xs = _v1_loop(5)(tf.constant([0.5]), tf.constant(0.7))
    finally:
      control_flow_util.ENABLE_CONTROL_FLOW_V2 = saved
    with tf_builders.tf_loop_builders_unavailable():
      with pytest.raises(AssertionError, match="builder"):
        tf.gradients(y, xs)
