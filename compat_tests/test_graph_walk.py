"""graph_walk visits the ops between xs and ys, not the graph: its cost does
not grow with parts of the graph that no x reaches or that lead to no y."""

import numpy as np
import tensorflow as tf

import tfgrad
from tfgrad import graph_walk


class CountingResolver(graph_walk.InputResolver):
  """An InputResolver that records every op whose inputs or consumers the
  walk asks for."""

  def __init__(self, xs):
    super().__init__(xs, [])
    self.touched = set()

  def inputs(self, op):
    self.touched.add(op)
    return super().inputs(op)

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
