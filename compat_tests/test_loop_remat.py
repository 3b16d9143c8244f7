"""Loop checkpointing (`tfgrad/loop_remat.py`): gradients of v2 While
loops under `checkpoints=` against stock `tf.gradients` on the same graph,
in a tf.Graph with a Session and inside a tf.function; loops kept whole
and why; where the per-iteration accumulators go."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import differential
from tfgrad import loop_remat
from tfgrad import remat_select
from tfgrad import tf_compat


def _rnn(steps=7, maximum_iterations=None, width=4):
  """h <- tanh(x_t Wx + h Wh + b) for `steps` steps (a placeholder with a
  default, so the trip count is known only at run time)."""
  rng = np.random.RandomState(0)
  wx = differential.variable(rng.randn(3, width) * 0.5)
  wh = differential.variable(rng.randn(width, width) * 0.5)
  b = differential.variable(rng.randn(width) * 0.1)
  seq = tf.constant(rng.randn(12, 2, 3).astype(np.float32))
  h0 = tf.constant(rng.randn(2, width).astype(np.float32), name="h0")
  n = tf.compat.v1.placeholder_with_default(steps, [])

  def body(t, h):
    x = tf.gather(seq, t)
    return t + 1, tf.tanh(tf.matmul(x, wx) + tf.matmul(h, wh) + b)

  _, h = tf.while_loop(lambda t, h: t < n, body, [tf.constant(0), h0],
                       maximum_iterations=maximum_iterations)
  return [tf.reduce_sum(tf.square(h))], [h0, wx, wh, b]


def _invariants():
  """A loop variable passed on unchanged (read by the body) next to one
  that changes; the gradient toward both."""
  rng = np.random.RandomState(1)
  w = tf.constant(rng.randn(4, 4).astype(np.float32) * 0.5, name="w")
  h0 = tf.constant(rng.randn(2, 4).astype(np.float32), name="h0")
  _, _, h = tf.while_loop(
      lambda t, w, h: t < 6,
      lambda t, w, h: (t + 1, w, tf.sin(tf.matmul(h, w)) * h),
      [tf.constant(0), w, h0])
  return [tf.reduce_sum(h)], [w, h0]


def _gathered_rows():
  """A captured variable read by tf.gather in the body."""
  rng = np.random.RandomState(2)
  emb = differential.variable(rng.randn(10, 4) * 0.5)
  ids = tf.constant([[1, 2], [3, 1], [4, 5], [9, 0], [2, 2]])
  h0 = tf.constant(rng.randn(2, 4).astype(np.float32))

  def body(t, h):
    return t + 1, tf.tanh(h + tf.gather(emb, tf.gather(ids, t)))

  _, h = tf.while_loop(lambda t, h: t < 5, body, [tf.constant(0), h0])
  return [tf.reduce_sum(h * h)], [emb]


def _scaled():
  """A body whose gradient reads no intermediate (h * 2): the segment
  loops gain no accumulators."""
  h0 = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3), name="h0")
  n = tf.compat.v1.placeholder_with_default(5, [])
  _, h = tf.while_loop(lambda t, h: t < n, lambda t, h: (t + 1, h * 2.0),
                       [tf.constant(0), h0])
  return [tf.reduce_sum(h)], [h0]


def _masked_rnn(steps=7, width=4, batch=2):
  """The RNN step, then a cond (masking): h * mask where the step's input
  sums positive, else h."""
  rng = np.random.RandomState(4)
  wx = differential.variable(rng.randn(3, width) * 0.5)
  wh = differential.variable(rng.randn(width, width) * 0.5)
  seq = tf.constant(rng.randn(max(steps, 12), batch, 3).astype(np.float32))
  mask = tf.constant((rng.rand(batch, width) > 0.3).astype(np.float32))
  h0 = tf.constant(rng.randn(batch, width).astype(np.float32), name="h0")
  n = tf.compat.v1.placeholder_with_default(steps, [])

  def body(t, h):
    x = tf.gather(seq, t)
    h = tf.tanh(tf.matmul(x, wx) + tf.matmul(h, wh))
    return t + 1, tf.cond(tf.reduce_sum(x) > 0, lambda: h * mask,
                          lambda: h)

  _, h = tf.while_loop(lambda t, h: t < n, body, [tf.constant(0), h0])
  return [tf.reduce_sum(tf.square(h))], [h0, wx, wh]


def _clipped_and_switched():
  """Conds whose branches compute (clipping by the norm; a branch reading
  a variable) and a switch_case (Case) on the iteration counter."""
  rng = np.random.RandomState(5)
  w = differential.variable(rng.randn(4, 4) * 0.7)
  scale = differential.variable(rng.randn(4) * 0.5 + 1.0)
  h0 = tf.constant(rng.randn(2, 4).astype(np.float32) * 2.0, name="h0")
  n = tf.compat.v1.placeholder_with_default(8, [])

  def body(t, h):
    h = tf.matmul(h, w)
    norm = tf.norm(h)
    h = tf.cond(norm > 1.5, lambda: h * (1.5 / norm),
                lambda: tf.sin(h) * scale)
    h = tf.switch_case(t % 3, [lambda: h * h, lambda: tf.tanh(h),
                               lambda: h + scale])
    return t + 1, h

  _, h = tf.while_loop(lambda t, h: t < n, body, [tf.constant(0), h0])
  return [tf.reduce_sum(h)], [h0, w, scale]


def _called_step():
  """The step is a tf.function (a call in the body) holding a cond, and
  reading captured variables."""
  rng = np.random.RandomState(6)
  wx = differential.variable(rng.randn(3, 4) * 0.5)
  wh = differential.variable(rng.randn(4, 4) * 0.5)
  seq = tf.constant(rng.randn(12, 2, 3).astype(np.float32))
  h0 = tf.constant(rng.randn(2, 4).astype(np.float32), name="h0")
  n = tf.compat.v1.placeholder_with_default(7, [])

  @tf.function
  def step(x, h):
    h = tf.tanh(tf.matmul(x, wx) + tf.matmul(h, wh))
    return tf.cond(tf.reduce_max(h) > 0.5, lambda: h * 0.5,
                   lambda: tf.square(h))

  def body(t, h):
    return t + 1, step(tf.gather(seq, t), h)

  _, h = tf.while_loop(lambda t, h: t < n, body, [tf.constant(0), h0])
  return [tf.reduce_sum(tf.square(h))], [h0, wx, wh]


def _gathered_in_cond():
  """Rows of a captured variable gathered inside a cond's branch (the
  branch's gradient is IndexedSlices)."""
  rng = np.random.RandomState(8)
  emb = differential.variable(rng.randn(10, 4) * 0.5)
  ids = tf.constant([[1, 2], [3, 1], [4, 5], [9, 0], [2, 2]])
  h0 = tf.constant(rng.randn(2, 4).astype(np.float32))

  def body(t, h):
    return t + 1, tf.cond(
        tf.equal(t % 2, 0),
        lambda: tf.tanh(h + tf.gather(emb, tf.gather(ids, t))),
        lambda: h * 0.9)

  _, h = tf.while_loop(lambda t, h: t < 5, body, [tf.constant(0), h0])
  return [tf.reduce_sum(h * h)], [emb, h0]


def _nested_rnn():
  """The body runs an inner loop (3 tanh steps reading a variable)."""
  rng = np.random.RandomState(9)
  w = differential.variable(rng.randn(3, 3) * 0.5)
  h0 = tf.constant(rng.randn(2, 3).astype(np.float32))
  n = tf.compat.v1.placeholder_with_default(6, [])

  def inner(h):
    return tf.while_loop(lambda u, h: u < 3,
                         lambda u, h: (u + 1, tf.tanh(tf.matmul(h, w))),
                         [0, h])[1]

  _, h = tf.while_loop(lambda t, h: t < n,
                       lambda t, h: (t + 1, inner(h) * 0.9),
                       [tf.constant(0), h0])
  return [tf.reduce_sum(h * h)], [w, h0]


def _nested_in_cond():
  """An inner loop in a cond's branch, its trip count depending on the
  state (doubling while under 10)."""
  x = tf.constant(1.5)
  w = differential.variable(np.float32(0.8))

  def inner(v):
    return tf.while_loop(lambda u: u < 10.0, lambda u: [u * 2.0 * w],
                         [v])[0]

  _, y = tf.while_loop(
      lambda t, v: t < 3,
      lambda t, v: (t + 1, tf.cond(v > 0, lambda: inner(v) * 0.1,
                                   lambda: v)),
      [tf.constant(0), x])
  return [y], [x, w]


def _nested_in_call():
  """An inner loop in a tf.function the body calls."""
  rng = np.random.RandomState(10)
  w = differential.variable(rng.randn(3, 3) * 0.5)
  h0 = tf.constant(rng.randn(2, 3).astype(np.float32))

  @tf.function
  def step(h):
    return tf.while_loop(lambda u, h: u < 2,
                         lambda u, h: (u + 1, tf.sin(tf.matmul(h, w))),
                         [0, h])[1]

  _, h = tf.while_loop(lambda t, h: t < 5, lambda t, h: (t + 1, step(h)),
                       [tf.constant(0), h0])
  return [tf.reduce_sum(h * h)], [w, h0]


MODELS = {
    "rnn_7": _rnn,                                  # 7 = 3 + 3 + 1
    "rnn_9": lambda: _rnn(9),                       # a multiple of k = 3
    "rnn_0": lambda: _rnn(0),
    "rnn_1": lambda: _rnn(1),
    "rnn_max_iterations": lambda: _rnn(10, maximum_iterations=5),
    "invariants": _invariants,
    "gathered_rows": _gathered_rows,
    "scaled": _scaled,
    "masked_rnn_7": _masked_rnn,
    "masked_rnn_0": lambda: _masked_rnn(0),
    "clipped_and_switched": _clipped_and_switched,
    "called_step": _called_step,
    "gathered_in_cond": _gathered_in_cond,
    "nested_rnn": _nested_rnn,
    "nested_in_cond": _nested_in_cond,
    "nested_in_call": _nested_in_call,
}


def _loops(graph):
  return [op for op in graph.get_operations()
          if op.type in ("While", "StatelessWhile")]


def _assert_one_run_matches(ours, theirs, rtol=1e-5, atol=1e-6):
  """Runs our gradients and stock's in one Session.run of the default
  graph, its variables initialized first (a random op then draws once for
  both), and compares the values."""
  with tf.compat.v1.Session() as sess:
    sess.run(tf.compat.v1.global_variables_initializer())
    mine, stock = sess.run([ours, theirs])
  for a, b in zip(mine, stock):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_values_match_stock_in_graph(model):
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = MODELS[model]()
    (forward,) = _loops(graph)
    outputs = len(forward.outputs)
    plain = tfgrad.gradients(ys, xs)
    ours = tfgrad.gradients(ys, xs, checkpoints="memory")
    theirs = tf.gradients(ys, xs)
    mine, stock = differential.values_in_session(ours, theirs)
  del outputs
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)
  assert [type(g) for g in ours] == [type(g) for g in plain]


@pytest.mark.parametrize("model", ["rnn_7", "rnn_0", "rnn_max_iterations",
                                   "invariants", "gathered_rows", "scaled",
                                   "masked_rnn_7", "masked_rnn_0",
                                   "clipped_and_switched", "called_step",
                                   "gathered_in_cond",
                                   "nested_rnn", "nested_in_cond",
                                   "nested_in_call"])
def test_values_match_stock_in_function(model):
  def checkpointed(ys, xs):
    reason = loop_remat.why_kept_whole(_loops(ys[0].graph)[0])
    assert reason is None, reason
    return tfgrad.gradients(ys, xs, checkpoints="memory")
  differential.in_function(MODELS[model], rtol=1e-5, engine=checkpointed)


def test_accumulators_live_in_segment_loops_only():
  """Plain: the forward loop gains one accumulator output per saved
  intermediate (T elements each). Checkpointed: the forward loop is left
  as it was; a checkpoint loop saves the changing state (one list per
  changing loop variable), and the accumulators belong to the segment
  loop inside the reverse loop (at most k elements each), which reads
  variables again rather than accumulating their reads."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _rnn(9)
    (forward,) = _loops(graph)
    before = len(forward.outputs)
    tfgrad.gradients(ys, xs, checkpoints="memory")
    assert len(forward.outputs) == before
    loops = {op.name: op for op in _loops(graph)}
    checkpoint = [op for name, op in loops.items()
                  if name.endswith("_checkpoints")]
    assert len(checkpoint) == 1
    # counter, bound, t, h, captures ... and one list for each of t, h
    lists = [t for t in checkpoint[0].outputs if t.dtype == tf.variant]
    assert len(lists) == 2
    reverse = [op for name, op in loops.items() if name.endswith("_grad")]
    assert len(reverse) == 1
    body = tf_compat.while_body_graph(reverse[0])
    segment = [op for op in body.get_operations()
               if op.type in ("While", "StatelessWhile")
               and op.name.endswith("_segment")]
    assert len(segment) == 1
    segment_body = tf_compat.while_body_graph(segment[0])
    pushed = [op.inputs[1] for op in segment_body.get_operations()
              if op.type == "TensorListPushBack"]
    assert pushed
    # Variable reads are read again by the segment's gradient loop, not
    # accumulated.
    assert not [t for t in pushed if t.op.type == "ReadVariableOp"]
    # The same call without checkpoints: the forward loop accumulates
    # the same intermediates, and the variable reads the rules read.
    tfgrad.gradients(ys, xs)
    plain_body = tf_compat.while_body_graph(forward)
    plain_pushed = [op.inputs[1] for op in plain_body.get_operations()
                    if op.type == "TensorListPushBack"]
    reads = [t for t in plain_pushed if t.op.type == "ReadVariableOp"]
    assert reads
    assert len(forward.outputs) - before == len(plain_pushed)
    assert len(plain_pushed) - len(reads) == len(pushed)


def _function_ops(graph):
  return [op for op in graph.get_operations()
          if op.type in ("If", "StatelessIf", "PartitionedCall",
                         "StatefulPartitionedCall")]


def _library(graph):
  return {f.signature.name: f.SerializeToString(deterministic=True)
          for f in graph.as_graph_def().library.function}


def test_loop_with_a_cond_keeps_fewer_accumulators():
  """200 steps of a tanh RNN masked by a tf.cond: checkpointed, and the
  per-iteration accumulators (the If's intermediates included) live in
  the segment loop (at most k = 15 elements each) rather than on the
  forward loop (200 each); the forward loop, its If and the functions
  they run are left as they were."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _masked_rnn(200, width=8)
    (forward,) = _loops(graph)
    assert loop_remat.why_kept_whole(forward) is None
    explained = tfgrad.explain_checkpoints(ys, xs, checkpoints="memory")
    assert explained["loops"] == [(forward.name, None)]
    assert f"loop {forward.name}: checkpointed" in str(explained)
    plain_bytes, checkpointed_bytes = remat_select.loop_bytes(forward)
    assert checkpointed_bytes * 4 < plain_bytes
    body = tf_compat.while_body_graph(forward)
    (cond,) = _function_ops(body)
    before = (len(forward.outputs), len(cond.outputs),
              cond.get_attr("then_branch").name, _library(graph))
    ours = tfgrad.gradients(ys, xs, checkpoints="memory")
    assert len(forward.outputs) == before[0]
    assert len(cond.outputs) == before[1]
    assert cond.get_attr("then_branch").name == before[2]
    library = _library(graph)
    assert {k: v for k, v in library.items() if k in before[3]} == before[3]
    (reverse,) = [op for op in _loops(graph) if op.name.endswith("_grad")]
    (segment,) = [op for op in tf_compat.while_body_graph(
        reverse).get_operations() if op.name.endswith("_segment")]
    segment_body = tf_compat.while_body_graph(segment)
    pushed = [op.inputs[1] for op in segment_body.get_operations()
              if op.type == "TensorListPushBack"]
    # the cond's predicate among them: the If's inputs are accumulated
    assert "Greater" in [t.op.type for t in pushed]
    # The plain gradient after it, then stock's: the forward loop gets the
    # 200-element accumulators the checkpointed gradient did without.
    plain = tfgrad.gradients(ys, xs)
    plain_pushed = [op.inputs[1] for op in tf_compat.while_body_graph(
        forward).get_operations() if op.type == "TensorListPushBack"]
    reads = [t for t in plain_pushed if t.op.type == "ReadVariableOp"]
    assert len(forward.outputs) - before[0] == len(plain_pushed)
    assert len(plain_pushed) - len(reads) == len(pushed)
    theirs = tf.gradients(ys, xs)
    mine, again, stock = differential.values_in_session(ours, plain, theirs)
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-4)
  differential.assert_same(plain, theirs, again, stock, rtol=1e-4)


def _runs_functions(graph):
  """Per op of `graph` running functions: the functions and its output
  count."""
  return {op.name: (sorted(tf_compat.function_names(op.node_def.attr)),
                    len(op.outputs))
          for op in graph.get_operations()
          if op.type in ("If", "StatelessIf", "Case", "StatelessCase",
                         "PartitionedCall", "StatefulPartitionedCall")}


def _checkpointed_leaving_forward_alone(graph, model):
  """Builds `model` in `graph` (the default graph) and its checkpointed
  gradient, checking that the forward loop is checkpointed and keeps its
  outputs, the function-running ops of its body and the functions the
  library held before; (ys, xs, gradients, forward loop)."""
  ys, xs = MODELS[model]()
  (forward,) = _loops(graph)
  assert loop_remat.why_kept_whole(forward) is None
  body = tf_compat.while_body_graph(forward)
  before = (len(forward.outputs), _runs_functions(body), _library(graph))
  ours = tfgrad.gradients(ys, xs, checkpoints="memory")
  assert len(forward.outputs) == before[0]
  assert _runs_functions(body) == before[1]
  library = _library(graph)
  assert {k: library[k] for k in before[2]} == before[2]
  return ys, xs, ours, forward


@pytest.mark.parametrize("model", ["clipped_and_switched", "called_step"])
def test_functions_the_loop_runs_are_left_alone(model):
  """The checkpointed gradient rewrites copies of the conds' branches and
  of the called functions, never the forward body's If/Case/call ops or
  the functions they run; a plain gradient after it, and stock's, then
  rewrite the forward ones (the names they derive do not collide with
  the copies') and agree with it."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs, ours, _ = _checkpointed_leaving_forward_alone(graph, model)
    assert [op for op in _loops(graph) if op.name.endswith("_checkpoints")]
    assert not [op for op in graph.get_operations()
                if op.type == "SymbolicGradient"]
    plain = tfgrad.gradients(ys, xs)
    theirs = tf.gradients(ys, xs)
    mine, again, stock = differential.values_in_session(ours, plain, theirs)
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)
  differential.assert_same(plain, theirs, again, stock, rtol=1e-5)


@pytest.mark.parametrize("model", ["clipped_and_switched", "called_step",
                                   "gathered_in_cond"])
def test_two_checkpointed_calls_on_one_graph(model):
  """Each checkpointed call copies the functions again, under names of
  its own."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = MODELS[model]()
    first = tfgrad.gradients(ys, xs, checkpoints="memory")
    second = tfgrad.gradients(ys, xs, checkpoints="memory")
    assert len([op for op in _loops(graph)
                if op.name.endswith("_checkpoints")]) == 2
    theirs = tf.gradients(ys, xs)
    a, b, stock = differential.values_in_session(first, second, theirs)
  differential.assert_same(first, theirs, a, stock, rtol=1e-5)
  differential.assert_same(second, theirs, b, stock, rtol=1e-5)


def test_second_order_through_a_checkpointed_loop_with_a_cond():
  graph = tf.Graph()
  with graph.as_default():
    x = tf.constant(0.7)
    w = tf.constant(np.random.RandomState(0).randn(3, 3).astype(np.float32)
                    * 0.5)

    def body(t, h):
      return t + 1, tf.cond(tf.reduce_sum(h) > 0,
                            lambda: tf.tanh(tf.matmul(h, w)),
                            lambda: tf.sin(h))

    _, h = tf.while_loop(lambda t, h: t < 5, body,
                         [0, tf.ones([2, 3]) * x])
    y = tf.reduce_sum(h * h)
    (forward,) = _loops(graph)
    assert loop_remat.why_kept_whole(forward) is None
    (g,) = tfgrad.gradients(y, [x], checkpoints="memory")
    (gg,) = tfgrad.gradients(g, [x])
    (sg,) = tf.gradients(y, [x])
    (sgg,) = tf.gradients(sg, [x])
    _assert_one_run_matches([g, gg], [sg, sgg])


def _stateful_inside(where):
  """A random op inside a cond branch, or inside a called tf.function."""
  rng = np.random.RandomState(7)
  w = differential.variable(rng.randn(4, 4) * 0.5)
  h0 = tf.constant(rng.randn(2, 4).astype(np.float32))

  @tf.function
  def noisy(h):
    return h * tf.random.uniform([2, 4], seed=3)

  def body(t, h):
    h = tf.tanh(tf.matmul(h, w))
    if where == "call":
      return t + 1, noisy(h)
    return t + 1, tf.cond(t > 1, lambda: h * tf.random.uniform([2, 4]),
                          lambda: h)

  _, h = tf.while_loop(lambda t, h: t < 5, body, [tf.constant(0), h0])
  return [tf.reduce_sum(h)], [w, h0]


@pytest.mark.parametrize("where", ["cond", "call"])
def test_stateful_op_inside_a_function_keeps_the_loop_whole(where):
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _stateful_inside(where)
    (forward,) = _loops(graph)
    reason = loop_remat.why_kept_whole(forward)
    assert "stateful" in reason and "RandomUniform" in reason
    ours = tfgrad.gradients(ys, xs, checkpoints="memory")
    theirs = tf.gradients(ys, xs)
    assert not [op for op in graph.get_operations()
                if op.name.endswith("_checkpoints")]
    _assert_one_run_matches(ours, theirs)


@pytest.mark.parametrize("model", ["nested_rnn", "nested_in_cond",
                                   "nested_in_call"])
def test_nested_loop_accumulators_live_in_segment_loops(model):
  """A loop in the body (or in a cond's branch): checkpointed; neither
  the forward loop nor the inner loop it runs gains accumulators or
  changes functions; the inner loop's copy in the segment loop gets the
  plain gradient's, which the segment loop accumulates (TensorLists of
  TensorLists, k outer iterations' worth); a plain gradient and stock's
  after it agree."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs, ours, forward = _checkpointed_leaving_forward_alone(graph, model)
    outputs = len(forward.outputs)  # as before the checkpointed call
    (reverse,) = [op for op in _loops(graph) if op.name.endswith("_grad")]
    (segment,) = [op for op in tf_compat.while_body_graph(
        reverse).get_operations() if op.name.endswith("_segment")]
    pushed = [op.inputs[1] for op in tf_compat.while_body_graph(
        segment).get_operations() if op.type == "TensorListPushBack"]
    assert [t for t in pushed if t.dtype == tf.variant]
    plain = tfgrad.gradients(ys, xs)
    assert len(forward.outputs) > outputs
    theirs = tf.gradients(ys, xs)
    mine, again, stock = differential.values_in_session(ours, plain, theirs)
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)
  differential.assert_same(plain, theirs, again, stock, rtol=1e-5)


def _random_body():
  rng = np.random.RandomState(3)
  w = differential.variable(rng.randn(4, 4) * 0.5)
  h0 = tf.constant(rng.randn(2, 4).astype(np.float32))

  def body(t, h):
    noise = tf.random.uniform([2, 4], seed=7)
    return t + 1, tf.tanh(tf.matmul(h, w) * noise)

  _, h = tf.while_loop(lambda t, h: t < 5, body, [tf.constant(0), h0],
                       name="noisy")
  return [tf.reduce_sum(h)], [w, h0]


def test_stateful_random_body_is_kept_whole_and_right():
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _random_body()
    (forward,) = _loops(graph)
    reason = loop_remat.why_kept_whole(forward)
    assert "stateful" in reason and "RandomUniform" in reason
    explained = tfgrad.explain_checkpoints(ys, xs, checkpoints="memory")
    assert explained["loops"] == [(forward.name, reason)]
    assert f"loop {forward.name}: kept whole" in str(explained)
    ours = tfgrad.gradients(ys, xs, checkpoints="memory")
    theirs = tf.gradients(ys, xs)
    assert not [op for op in graph.get_operations()
                if op.name.endswith("_checkpoints")]
    _assert_one_run_matches(ours, theirs)


def test_explain_names_the_checkpointed_loop():
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _rnn()
    (forward,) = _loops(graph)
    explained = tfgrad.explain_checkpoints(ys, xs, checkpoints="memory")
  assert explained["loops"] == [(forward.name, None)]
  assert f"loop {forward.name}: checkpointed" in str(explained)


def test_other_loops_kept_whole_say_why():
  graph = tf.Graph()
  with graph.as_default():
    x = tf.constant(1.5)
    _, nested = tf.while_loop(
        lambda t, v: t < 3,
        lambda t, v: (t + 1, tf.while_loop(lambda u: u < 10.0,
                                           lambda u: [u * 2.0], [v])[0]),
        [0, x])
    ta = tf.TensorArray(tf.float32, size=3)
    _, ta = tf.while_loop(lambda t, ta: t < 3,
                          lambda t, ta: (t + 1, ta.write(t, x * 2.0)),
                          [0, ta])
    reasons = [loop_remat.why_kept_whole(op) for op in _loops(graph)]
    ours = tfgrad.gradients([nested, ta.stack()], [x], checkpoints="memory")
    theirs = tf.gradients([nested, ta.stack()], [x])
    _assert_one_run_matches(ours, theirs, rtol=1e-6, atol=0)
  # the loop holding a loop is checkpointed (see the nested tests)
  assert reasons[0] is None
  assert "changes across iterations" in reasons[1]


def test_loop_already_differentiated_is_kept_whole():
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _rnn()
    (forward,) = _loops(graph)
    tf.gradients(ys, xs)
    assert "accumulators" in loop_remat.why_kept_whole(forward)


def test_cost_model_counts_loop_accumulators():
  """Per iteration the RNN's gradient reads x_t (2 x 3 floats) and the new
  state tanh(...) (2 x 4 floats; the next iteration's input, counted
  once); the weights' reads alias the variables. Plain: 9 iterations of
  that; checkpointed (k = 3): 3 iterations of it plus 3 + 1 saved
  states."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _rnn(9)
    (forward,) = _loops(graph)
    assert remat_select.trip_count_guess(forward) == 9
    per_iteration = 4 * (2 * 3 + 2 * 4)
    assert remat_select.loop_bytes(forward) == (
        9 * per_iteration, 3 * per_iteration + 4 * (4 * 2 * 4))
    explained = tfgrad.explain_checkpoints(ys, xs, checkpoints="memory")
    plain, checkpointed = (explained["estimated_peak_plain"],
                           explained["estimated_peak"])
    assert plain - checkpointed >= 9 * per_iteration - 3 * per_iteration - 128
    # A budget only loop checkpointing meets: the loop is checkpointed.
    ours = tfgrad.gradients(
        ys, xs, checkpoints=tfgrad.MemoryBudget(plain - 1))
    theirs = tf.gradients(ys, xs)
    assert [op for op in _loops(graph) if op.name.endswith("_checkpoints")]
    _assert_one_run_matches(ours, theirs)


def test_cost_model_unknown_trip_count_counts_nothing():
  graph = tf.Graph()
  with graph.as_default():
    n = tf.compat.v1.placeholder(tf.int32, [])
    _, h = tf.while_loop(lambda t, h: t < n, lambda t, h: (t + 1, h * h),
                         [0, tf.ones([3])])
    (forward,) = _loops(graph)
    assert remat_select.trip_count_guess(forward) is None
    assert remat_select.loop_bytes(forward) == (0, 0)
    del h


def test_threads_see_only_their_own_call():
  """A checkpointing call on one thread and a plain one on another, at
  the same time: only the first checkpoints its loop."""
  import threading  # pylint: disable=g-import-not-at-top
  barrier = threading.Barrier(2)
  found = {}

  def build(checkpoints):
    graph = tf.Graph()
    with graph.as_default():
      ys, xs = _rnn()
      barrier.wait()
      for _ in range(3):
        tfgrad.gradients(ys, xs, checkpoints=checkpoints)
      found[checkpoints] = len([op for op in _loops(graph)
                                if op.name.endswith("_checkpoints")])

  threads = [threading.Thread(target=build, args=(c,))
             for c in ("memory", None)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert found == {"memory": 3, None: 0}


def test_second_order_through_a_checkpointed_loop():
  """The checkpointed gradient is itself differentiable (its loops are
  plain v2 loops to the While rule): second derivative equals stock's."""
  graph = tf.Graph()
  with graph.as_default():
    x = tf.constant(0.7)
    w = tf.constant(np.random.RandomState(0).randn(3, 3).astype(np.float32)
                    * 0.5)
    _, h = tf.while_loop(lambda t, h: t < 5,
                         lambda t, h: (t + 1, tf.tanh(tf.matmul(h, w))),
                         [0, tf.ones([2, 3]) * x])
    y = tf.reduce_sum(h * h)
    (g,) = tfgrad.gradients(y, [x], checkpoints="memory")
    (gg,) = tfgrad.gradients(g, [x])
    (sg,) = tf.gradients(y, [x])
    (sgg,) = tf.gradients(sg, [x])
    _assert_one_run_matches([g, gg], [sg, sgg], atol=0)


def _signature_and_body(fdef):
  """A FunctionDef without its names: argument and output types, argument
  attributes, node types and their attributes."""
  sig = fdef.signature
  return ([a.type for a in sig.input_arg], [a.type for a in sig.output_arg],
          {k: v.SerializeToString(deterministic=True)
           for k, v in fdef.arg_attr.items()},
          [(n.op, {k: v.SerializeToString(deterministic=True)
                   for k, v in n.attr.items()}) for n in fdef.node_def])


def test_less_cond_matches_a_traced_cond():
  """`tf_compat.LessCond` registers the FunctionDef TF's conversion gives a
  traced cond FuncGraph (one placeholder per loop variable, Less of the
  first two), names aside (the checkpointing tests run it); an added
  accumulator input registers it again with one more argument."""
  graph = tf.Graph()
  with graph.as_default():
    v = tf.Variable(tf.ones([3]))
    lst = tf.raw_ops.EmptyTensorList(element_shape=[3], max_num_elements=-1,
                                     element_dtype=tf.float32)
    loop_vars = [tf.constant(0), tf.constant(4), tf.zeros([2, 3]),
                 v.handle, lst]
    traced = tf_compat.WhileCondFuncGraph("traced_cond")
    with traced.as_default():
      args = [tf.compat.v1.placeholder(t.dtype, t.shape) for t in loop_vars]
      for a, t in zip(args, loop_vars):
        tf_compat.copy_handle_data(t, a)
      traced.inputs.extend(args)
      traced.outputs.append(tf.raw_ops.Less(x=args[0], y=args[1]))
    tf_compat.register_function(traced)
    cond = tf_compat.LessCond("less_cond", loop_vars, 0, 1)
    cond.register(graph)
    library = {f.signature.name: f
               for f in graph.as_graph_def().library.function}
    assert (_signature_and_body(library["less_cond"])
            == _signature_and_body(library["traced_cond"]))
    assert tf_compat.has_function(graph, "less_cond")
    cond.loop_vars.append(lst)
    cond.name = "less_cond_more"
    cond.register(graph)
    library = {f.signature.name: f
               for f in graph.as_graph_def().library.function}
    assert len(library["less_cond_more"].signature.input_arg) == 6
