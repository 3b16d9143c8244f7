"""graph_walk visits the ops between xs and ys, not the graph: its cost does
not grow with parts of the graph that no x reaches or that lead to no y."""

import numpy as np
import tensorflow as tf

import tfgrad
from tfgrad import backprop
from tfgrad import graph_walk
from tfgrad import tf_compat


class CountingResolver(graph_walk.InputResolver):
  """An InputResolver that records every op whose inputs or consumers the
  walk asks for."""

  def __init__(self, xs):
    super().__init__(xs, [])
    self.touched = set()

  def inputs(self, op):
    self.touched.add(op)
    return super().inputs(op)

  def input_edges(self, op):
    self.touched.add(op)
    return super().input_edges(op)

  def consumers(self, t):
    self.touched.add(t.op)
    return super().consumers(t)


def _model_in_a_large_graph(unrelated=3000):
  """y = sum(sin(x) * x) + c, where c is a long chain of ops on a constant
  (upstream of y, but no x reaches it); and a long chain of ops on a
  second constant that leads to no y."""
  x = tf.constant([0.5, 1.5, 2.5], name="x")
  side = tf.constant([1.0, 2.0, 3.0])
  for _ in range(unrelated):
    side = tf.abs(side)
  upstream = tf.constant(0.25)
  for _ in range(unrelated):
    upstream = tf.square(upstream)
  y = tf.reduce_sum(tf.sin(x) * x) + upstream
  return x, y


def test_walk_touches_only_the_ops_between_xs_and_ys():
  g = tf.Graph()
  with g.as_default():
    x, y = _model_in_a_large_graph()
    resolver = CountingResolver([x])
    subgraph = graph_walk.between([y.op], [x.op], [], resolver)
  assert len(g.get_operations()) > 6000
  # x, sin, mul, sum's inputs, add; the first op of the upstream chain is
  # looked at (it is an input of add) but not walked into
  assert len(resolver.touched) < 15, sorted(op.name for op in resolver.touched)
  assert {op.type for op in subgraph.ops} == {"Const", "Sin", "Mul", "Sum",
                                              "AddV2"}


def test_gradient_in_a_large_graph_matches_stock():
  g = tf.Graph()
  with g.as_default():
    x, y = _model_in_a_large_graph()
    before = len(g.get_operations())
    ours = tfgrad.gradients(y, x)
    added = len(g.get_operations()) - before
    theirs = tf.gradients(y, x)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([ours, theirs])
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
  xv = np.float32([0.5, 1.5, 2.5])
  np.testing.assert_allclose(a[0], np.cos(xv) * xv + np.sin(xv), rtol=1e-6)
  assert added < 20


# ----- the pruned walk against the plain definition -----
#
# `between` may stop the forward reach from xs at ops no y depends on; what
# it returns must be what the plain definition gives: the forward reach from
# the xs (through trainable tensors, not crossing ops declared not
# differentiable), and of it the ops from which a y is reached inside it.


def _reference_between(to_ops, from_ops, stop_ops, resolver, blocks):
  reached, queue = set(), list(from_ops)
  while queue:
    op = queue.pop()
    if op in reached or (op not in from_ops and blocks(op)):
      continue
    reached.add(op)
    for out in op.outputs:
      if tf_compat.is_trainable(out):
        queue.extend(resolver.consumers(out))
  members, queue = set(), [op for op in to_ops if op in reached]
  while queue:
    op = queue.pop()
    if op not in members:
      members.add(op)
      queue.extend(t.op for t in resolver.graph_inputs(op)
                   if t.op in reached)
  pending = {}
  for op in members:
    for t in resolver.graph_inputs(op):
      if t.op in members:
        pending[t.op] = pending.get(t.op, 0) + 1
  return members, pending, {op for op in to_ops if op in reached}


def _check_walk(ys, xs, stop_gradients=(), graph=None):
  """between (pruned and not) against the reference, on one graph."""
  graph = graph or ys[0].graph
  blocks = lambda op: backprop.blocks_gradient(op, graph, False)  # noqa: E731
  chain = tf_compat.function_graph_chain(graph)
  args = ([y.op for y in ys], [x.op for x in xs],
          [t.op for t in stop_gradients])
  ref_members, ref_pending, ref_to = _reference_between(
      *args, graph_walk.InputResolver(xs, chain), blocks)
  results = [graph_walk.between(*args, graph_walk.InputResolver(xs, chain),
                                blocks, prune=prune)
             for prune in (True, False)]
  for sub in results:
    assert sub.members == ref_members
    assert set(sub.ops) == ref_members and len(sub.ops) == len(ref_members)
    assert {op: n for op, n in sub.pending.items() if n} == ref_pending
    assert sub.reachable_to_ops == ref_to
  pruned, full = results
  assert pruned.ops == full.ops  # same order, too
  assert pruned.stop_ops == full.stop_ops
  assert pruned.blocked <= full.blocked
  return pruned


def _chain(t, n, fn=tf.sin):
  for _ in range(n):
    t = fn(t)
  return t


def test_pruned_walk_equals_definition_on_small_graphs():
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0], name="x")
    z = tf.constant([3.0, 4.0], name="z")
    a = tf.sin(x) * z
    b = tf.stop_gradient(a) + tf.cos(x)    # StopGradient cuts one path
    side = tf.exp(x)                       # leads to no y
    n = tf.cast(tf.argmax(a), tf.float32)  # not differentiable
    y = tf.reduce_sum(b * a) + n
    y2 = tf.reduce_sum(z * 2.0)            # no x reaches it
    unconnected = tf.constant(5.0)
    del side
    _check_walk([y], [x])
    _check_walk([y, y2], [x, z, unconnected])
    _check_walk([y], [x, a])               # an x upstream of another
    _check_walk([y, a], [a, x])            # an x that is a y
    _check_walk([a], [a])
    _check_walk([y], [x], stop_gradients=[a])
    _check_walk([y], [x, z], stop_gradients=[tf.sin(x).op.inputs[0]])
    _check_walk([y2], [x])                 # nothing between


def test_pruned_walk_equals_definition_either_walk_first():
  """Long chains that no y reads (the ancestors are gathered first) and
  long chains upstream of y that no x reaches (the forward reach ends
  first), with a crossing in the middle."""
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0], name="x")
    w = tf.constant([0.5, 0.25], name="w")
    head = _chain(x, 300)
    for i in range(20):
      _chain(head * float(i), 30, tf.abs)  # downstream of x, to no y
    upstream = _chain(w, 500, tf.square)
    y = tf.reduce_sum(head * upstream)
    sub = _check_walk([y], [x])
    assert sub.ancestors is not None and len(sub.ancestors) < 1000
    sub = _check_walk([y], [w])
    _check_walk([y], [x, w])
    x2 = tf.constant(1.0, name="x2")
    y2 = _chain(x2, 3) + _chain(tf.constant(2.0), 500)
    sub = _check_walk([y2], [x2])
    assert sub.ancestors is None  # the forward reach ended first


def test_pruned_walk_equals_definition_on_random_graphs():
  rng = np.random.RandomState(0)
  unary = [tf.sin, tf.stop_gradient, tf.identity, tf.math.sign,
           lambda t: tf.cast(tf.cast(t, tf.int32), tf.float32)]
  for _ in range(30):
    g = tf.Graph()
    with g.as_default():
      values = [tf.constant(rng.randn(2).astype(np.float32))
                for _ in range(3)]
      for _ in range(rng.randint(20, 200)):
        if rng.rand() < 0.5:
          i, j = rng.randint(len(values), size=2)
          values.append(values[i] * values[j] + values[i])
        else:
          fn = unary[rng.randint(len(unary))]
          values.append(fn(values[rng.randint(len(values))]))
      pick = lambda k: [values[i] for i in rng.choice(  # noqa: E731
          len(values), size=k, replace=False)]
      ys, xs = pick(rng.randint(1, 4)), pick(rng.randint(1, 6))
      stops = pick(rng.randint(0, 3))
      _check_walk(ys, xs, stop_gradients=stops)


def test_pruned_walk_equals_definition_with_loops_and_functions():
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0], name="x")
    v = tf.constant(3.0, name="v")
    _, out = tf.while_loop(lambda i, h: i < 5,
                           lambda i, h: (i + 1, tf.sin(h) * v),
                           [tf.constant(0), x])
    y = tf.reduce_sum(out) + tf.reduce_sum(_chain(x, 100, tf.abs))
    _check_walk([y], [x, v])
    assert not graph_walk.may_hold_v1_loops(g)

  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0], name="x")
    _chain(x, 200, tf.abs)

    @tf.function
    def f(t):
      return tf.reduce_sum(tf.sin(t) * x)  # captures x

    cf = f.get_concrete_function(tf.TensorSpec([2], tf.float32))
    inner_x = cf.graph.inputs[0]
    ys = cf.graph.outputs
    captured = [i for o, i in cf.graph.captures if o is x][0]
    with cf.graph.as_default():
      _check_walk(ys, [x], graph=cf.graph)          # through the capture
      _check_walk(ys, [inner_x, captured], graph=cf.graph)
      _check_walk(ys, [inner_x], graph=cf.graph)


def test_v1_loops_walk_everything_the_xs_reach():
  g = tf.Graph()
  with g.as_default():
    tf.compat.v1.disable_control_flow_v2()
    try:
      x = tf.constant([1.0, 2.0], name="x")
      _, out = tf.while_loop(lambda i, h: i < 5,
                             lambda i, h: (i + 1, tf.sin(h)),
                             [tf.constant(0), x])
    finally:
      tf.compat.v1.enable_control_flow_v2()
    y = tf.reduce_sum(out)
    assert graph_walk.may_hold_v1_loops(g)
    _check_walk([y], [x])
    ours = tfgrad.gradients(y, x)
    theirs = tf.gradients(y, x)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([ours, theirs])
  np.testing.assert_allclose(a[0], b[0], rtol=1e-6)


class _GeneralPathResolver(graph_walk.InputResolver):
  """An InputResolver kept off the one-step read of plain ops: a redirect
  that names no tensor of the graph sends every op through the general
  path (resolution, eager filter, redirect)."""

  def __init__(self, xs, func_graphs):
    super().__init__(xs, func_graphs, redirect={-1: None})


def _assert_resolvers_agree(ops, xs, chain):
  fast = graph_walk.InputResolver(xs, chain)
  general = _GeneralPathResolver(xs, chain)
  for op in ops:
    # edges first on one, inputs first on the other: either order fills
    # the caches the same
    edges = fast.input_edges(op)
    inputs = general.inputs(op)
    assert list(fast.inputs(op)) == list(inputs)
    assert list(edges[0]) == list(general.graph_inputs(op))
    assert list(edges[1]) == list(general.input_ops(op))
    assert [t.op for t in edges[0]] == list(edges[1])


def test_one_step_input_read_equals_general_path():
  """The one-step read of a plain op's inputs (no capture, no redirect)
  gives what the general path gives, and the walk over it equals the
  walk over the general path, in plain and function graphs."""
  g = tf.Graph()
  with g.as_default():
    x = tf.constant([1.0, 2.0], name="x")
    i = tf.constant(3, name="i")
    a = tf.sin(x) * tf.cast(i, tf.float32)
    b = tf.concat([a, x, a], 0)           # repeated inputs
    y = tf.reduce_sum(b * b) + tf.reduce_sum(tf.stop_gradient(a))
    _assert_resolvers_agree(g.get_operations(), [x], [])
    blocks = lambda op: backprop.blocks_gradient(op, g, False)  # noqa: E731
    for prune in (True, False):
      fast = graph_walk.between([y.op], [x.op], [],
                                graph_walk.InputResolver([x], []), blocks,
                                prune=prune)
      general = graph_walk.between([y.op], [x.op], [],
                                   _GeneralPathResolver([x], []), blocks,
                                   prune=prune)
      assert fast.ops == general.ops
      assert dict(fast.pending) == dict(general.pending)
      assert fast.stop_ops == general.stop_ops
      assert fast.blocked == general.blocked
      assert fast.ancestors == general.ancestors

    @tf.function
    def f(t):
      return tf.reduce_sum(tf.sin(t) * x)  # captures x

    cf = f.get_concrete_function(tf.TensorSpec([2], tf.float32))
    chain = tf_compat.function_graph_chain(cf.graph)
    _assert_resolvers_agree(cf.graph.get_operations(), [x], chain)


def test_trainability_check_equals_is_trainable():
  """The per-call, per-dtype answer equals TF's, for every dtype kind
  (variant tensors are answered one by one)."""
  g = tf.Graph()
  with g.as_default():
    values = [tf.constant(1.0), tf.constant(1.0, tf.float64),
              tf.constant(1.0, tf.float16), tf.constant(1.0, tf.bfloat16),
              tf.constant(1j, tf.complex64), tf.constant(1, tf.int32),
              tf.constant(1, tf.int64), tf.constant(True),
              tf.constant("s"), tf.constant(1, tf.uint8),
              tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[]),
              tf.raw_ops.TensorListReserve(element_shape=tf.constant([], tf.int32),
                                           num_elements=2,
                                           element_dtype=tf.float32),
              tf.raw_ops.TensorListReserve(element_shape=tf.constant([], tf.int32),
                                           num_elements=2,
                                           element_dtype=tf.int32)]
    qint = tf.raw_ops.QuantizeV2(input=tf.constant([1.0]), min_range=0.0,
                                 max_range=1.0, T=tf.qint8)
    values.append(qint.output)
    check = tf_compat.trainability_check()
    for _ in range(2):  # answered again from what the check remembers
      for t in values:
        assert check(t) == tf_compat.is_trainable(t), t
