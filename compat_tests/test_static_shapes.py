"""Static shapes of gradients with partly known input shapes: tfgrad's must
be compatible with stock tf.gradients' and at least as specific (every dim
stock knows, tfgrad knows, with the same value), and the values equal to
stock's. Each case runs in a tf.Graph with fed placeholders and inside a
tf.function with an input_signature of the same partial shapes.

A case: an op (a function of the inputs), the inputs' static shapes (None:
unknown rank) and the concrete shapes fed.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from tfgrad import emit
from tfgrad import registry


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  build: object        # build(*xs) -> y
  static: tuple        # per input: list of dims (None = unknown) or None
  fed: tuple           # per input: the concrete shape fed
  domain: str = "any"  # "positive": inputs in (0.5, 2)


# (name, static shapes, fed shapes) for broadcasting binary ops.
_BINARY_SHAPES = [
    ("batch_vs_vector", ([None, 2], [2]), ([3, 2], [2])),
    ("both_batch", ([None, 2], [None, 2]), ([3, 2], [3, 2])),
    ("batch_vs_row", ([None, 2], [1, 2]), ([3, 2], [1, 2])),
    ("batch_vs_column", ([None, 2], [None, 1]), ([3, 2], [3, 1])),
    ("column_vs_vector", ([None, 1], [3]), ([4, 1], [3])),
    ("unknown_rank_vs_vector", (None, [2]), ([3, 2], [2])),
    ("vector_vs_unknown_rank", ([2], None), ([2], [3, 2])),
    ("rank3_vs_partly_known", ([None, None, 3], [None, 1]), ([2, 4, 3],
                                                            [4, 1])),
    ("all_unknown_dims", ([None, None], [None, None]), ([3, 2], [1, 2])),
    ("scalar_vs_batch", ([], [None, 2]), ([], [3, 2])),
]

_BINARY_OPS = {
    "Add": (lambda x, y: tf.raw_ops.Add(x=x, y=y), "any"),
    "AddV2": (lambda x, y: tf.raw_ops.AddV2(x=x, y=y), "any"),
    "Sub": (lambda x, y: tf.raw_ops.Sub(x=x, y=y), "any"),
    "Mul": (lambda x, y: tf.raw_ops.Mul(x=x, y=y), "any"),
    "Div": (lambda x, y: tf.raw_ops.Div(x=x, y=y), "positive"),
    "RealDiv": (lambda x, y: tf.raw_ops.RealDiv(x=x, y=y), "positive"),
    "DivNoNan": (lambda x, y: tf.raw_ops.DivNoNan(x=x, y=y), "positive"),
    "MulNoNan": (lambda x, y: tf.raw_ops.MulNoNan(x=x, y=y), "any"),
    "Pow": (lambda x, y: tf.raw_ops.Pow(x=x, y=y), "positive"),
    "Maximum": (lambda x, y: tf.raw_ops.Maximum(x=x, y=y), "any"),
    "Minimum": (lambda x, y: tf.raw_ops.Minimum(x=x, y=y), "any"),
    "SquaredDifference": (lambda x, y: tf.raw_ops.SquaredDifference(x=x, y=y),
                          "any"),
    "Xlogy": (lambda x, y: tf.raw_ops.Xlogy(x=x, y=y), "positive"),
    "Xdivy": (lambda x, y: tf.raw_ops.Xdivy(x=x, y=y), "positive"),
    "Xlog1py": (lambda x, y: tf.raw_ops.Xlog1py(x=x, y=y), "positive"),
    "Atan2": (lambda x, y: tf.raw_ops.Atan2(y=x, x=y), "positive"),
    "FloorMod": (lambda x, y: tf.raw_ops.FloorMod(x=x, y=y), "positive"),
    "FloorDiv": (lambda x, y: tf.raw_ops.FloorDiv(x=x, y=y) + x * y,
                 "positive"),
    "TruncateDiv": (lambda x, y: tf.raw_ops.TruncateDiv(x=x, y=y) + x * y,
                    "positive"),
    "SelectV2": (lambda x, y: tf.raw_ops.SelectV2(condition=x > 1.0, t=x,
                                                  e=y), "positive"),
}

_CASES = [
    Case(f"{op}-{shape_id}", build, static, fed, domain)
    for op, (build, domain) in _BINARY_OPS.items()
    for shape_id, static, fed in _BINARY_SHAPES
]


def _select(x, y):
  return tf.raw_ops.Select(condition=x > 1.0, x=x, y=y)


def _select_vector_condition(x, y):
  return tf.raw_ops.Select(condition=tf.reduce_sum(x, axis=1) > 2.0, x=x,
                           y=y)


def _bias_add(x, b):
  return tf.nn.bias_add(x, b)


def _bias_add_nchw(x, b):
  return tf.nn.bias_add(x, b, data_format="NCHW")


def _broadcast_to(x, _):
  return tf.broadcast_to(x, [3, 4, 2])


def _broadcast_to_dynamic(x, y):
  return tf.broadcast_to(x, tf.shape(y)) * y


_CASES += [
    Case("Select-batch", _select, ([None, 2], [None, 2]), ([3, 2], [3, 2]),
         "positive"),
    Case("Select-unknown_rank", _select, (None, [None, 2]), ([3, 2], [3, 2]),
         "positive"),
    Case("Select-vector_condition", _select_vector_condition,
         ([None, 2], [None, 2]), ([3, 2], [3, 2]), "positive"),
    Case("BiasAdd-batch", _bias_add, ([None, 3], [3]), ([2, 3], [3])),
    Case("BiasAdd-rank4", _bias_add, ([None, None, None, 3], [None]),
         ([2, 2, 2, 3], [3])),
    Case("BiasAdd-unknown_rank", _bias_add, (None, [3]), ([2, 3], [3])),
    Case("BiasAdd-nchw", _bias_add_nchw, ([None, 3, None, None], [3]),
         ([2, 3, 2, 2], [3])),
    Case("BroadcastTo-batch", _broadcast_to, ([None, 2], []), ([4, 2], [])),
    Case("BroadcastTo-unknown_rank", _broadcast_to, (None, []), ([4, 1], [])),
    Case("BroadcastTo-dynamic_target", _broadcast_to_dynamic,
         ([None, 2], [None, None, 2]), ([1, 2], [3, 4, 2])),
    Case("BroadcastTo-dynamic_vector", _broadcast_to_dynamic,
         ([2], [None, None]), ([2], [3, 2])),
]


# Reductions, reshapes and friends, on one partly known input.
_UNARY_OPS = {
    "Sum-axis1": lambda x: tf.reduce_sum(x, axis=1),
    "Sum-axis0-keepdims": lambda x: tf.reduce_sum(x, axis=0, keepdims=True),
    "Sum-all": tf.reduce_sum,
    "Mean-axis0": lambda x: tf.reduce_mean(x, axis=0),
    "Mean-axis-1": lambda x: tf.reduce_mean(x, axis=-1),
    "Mean-all": tf.reduce_mean,
    "Prod-axis1": lambda x: tf.reduce_prod(x, axis=1),
    "Max-axis1": lambda x: tf.reduce_max(x, axis=1),
    "Min-axis0": lambda x: tf.reduce_min(x, axis=0),
    "EuclideanNorm-axis1": lambda x: tf.norm(x, axis=1),
    "Reshape-flat": lambda x: tf.reshape(x, [-1]),
    "Reshape-dynamic": lambda x: tf.reshape(x, tf.stack([tf.size(x)])),
    "ExpandDims": lambda x: tf.expand_dims(x, 1),
    "Squeeze": lambda x: tf.squeeze(tf.expand_dims(x, 1), 1),
    "Tile": lambda x: tf.tile(x, [2, 1]),
    "Transpose": tf.transpose,
    "Slice": lambda x: tf.slice(x, [0, 0], [1, -1]),
    "StridedSlice": lambda x: x[:, :1],
    "Pad": lambda x: tf.pad(x, [[1, 0], [0, 1]]),
    "Concat": lambda x: tf.concat([x, x * 2.0], axis=0),
    "Gather-axis1": lambda x: tf.gather(x, [1, 0, 1], axis=1),
    "Gather-axis-1-int64": lambda x: tf.gather(
        x, tf.constant([1, 1], tf.int64), axis=-1),
    "Gather-axis0": lambda x: tf.gather(x, [2, 0, 2]),
    "Gather-runtime_axis": lambda x: tf.gather(
        x, [[1, 0], [0, 0]], axis=tf.rank(x) - 1),
    "Cumsum": lambda x: tf.cumsum(x, axis=0),
    "Softmax": tf.nn.softmax,
    "LogSoftmax": tf.nn.log_softmax,
    "MatMul": lambda x: tf.matmul(x, tf.ones([2, 3])),
    "BatchMatMul": lambda x: tf.linalg.matmul(x[None], tf.ones([2, 2, 3])),
    "Einsum": lambda x: tf.einsum("ij,jk->ik", x, tf.ones([2, 3])),
    "L2Loss": tf.nn.l2_loss,
    "ClipByValue": lambda x: tf.clip_by_value(x, 0.5, 1.5),
}

_UNARY_SHAPES = [
    ("batch", [None, 2], [3, 2]),
    ("unknown_rank", None, [3, 2]),
    ("all_unknown_dims", [None, None], [3, 2]),
]

_CASES += [
    Case(f"{op}-{shape_id}", build, (static,), (fed,), "positive")
    for op, build in _UNARY_OPS.items()
    for shape_id, static, fed in _UNARY_SHAPES
]


# Image-shaped ops, batch (and spatial) dims unknown.
_IMAGE_OPS = {
    "Conv2D": lambda x: tf.nn.conv2d(x, tf.ones([2, 2, 3, 4]), 1, "SAME"),
    "DepthwiseConv2dNative": lambda x: tf.nn.depthwise_conv2d(
        x, tf.ones([2, 2, 3, 2]), [1, 1, 1, 1], "VALID"),
    "MaxPool": lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"),
    "AvgPool": lambda x: tf.nn.avg_pool2d(x, 2, 2, "SAME"),
    "FusedBatchNorm": lambda x: tf.compat.v1.nn.fused_batch_norm(
        x, tf.ones([3]), tf.zeros([3]), is_training=True)[0],
    "ResizeBilinear": lambda x: tf.image.resize(x, [6, 6]),
    "Mean-spatial": lambda x: tf.reduce_mean(x, axis=[1, 2]),
}

_IMAGE_SHAPES = [
    ("batch", [None, 4, 4, 3], [2, 4, 4, 3]),
    ("spatial", [None, None, None, 3], [2, 4, 4, 3]),
]

_CASES += [
    Case(f"{op}-{shape_id}", build, (static,), (fed,), "positive")
    for op, build in _IMAGE_OPS.items()
    for shape_id, static, fed in _IMAGE_SHAPES
]


def _sparse_xent(logits):
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.zeros(tf.shape(logits)[:1], tf.int32), logits=logits)


def _xent(logits):
  return tf.nn.softmax_cross_entropy_with_logits(
      labels=tf.nn.softmax(logits * 0.0), logits=logits)


_CASES += [
    Case(f"{name}-{shape_id}", build, (static,), (fed,))
    for name, build in [("SparseSoftmaxXent", _sparse_xent),
                        ("SoftmaxXent", _xent),
                        ("ReduceLogSumExp", tf.reduce_logsumexp),
                        ("Reverse", lambda x: tf.reverse(x, [0])),
                        ("Cumprod", lambda x: tf.math.cumprod(x, axis=1))]
    for shape_id, static, fed in [("batch", [None, 3], [2, 3]),
                                  ("all_unknown_dims", [None, None], [2, 3])]
]


def _values(case, rng):
  if case.domain == "positive":
    return [rng.uniform(0.5, 2.0, s).astype(np.float32) for s in case.fed]
  return [rng.standard_normal(s).astype(np.float32) for s in case.fed]


def _shape(static):
  return tf.TensorShape(static)


def _at_least_as_specific(ours, theirs):
  """True if `ours` is compatible with `theirs` and knows all it knows."""
  if not ours.is_compatible_with(theirs):
    return False
  if theirs.rank is None:
    return True
  if ours.rank != theirs.rank:
    return False
  return all(b is None or a == b
             for a, b in zip(ours.as_list(), theirs.as_list()))


def _check_shapes(case, ours, theirs):
  assert [g is None for g in ours] == [g is None for g in theirs], case.id
  for i, (a, b) in enumerate(zip(ours, theirs)):
    if a is None:
      continue
    assert type(a) is type(b), f"{case.id}: gradient {i}: {a} vs {b}"
    if isinstance(a, tf.IndexedSlices):
      a, b = a.values, b.values
    assert _at_least_as_specific(a.shape, b.shape), (
        f"{case.id}: gradient {i} has static shape {a.shape}, "
        f"stock's is {b.shape}")


def _dense(grads):
  return [tf.convert_to_tensor(g) for g in grads if g is not None]


def _both(case, xs):
  y = case.build(*xs)
  return tfgrad.gradients(y, xs), tf.gradients(y, xs)


def _assert_values(case, ours, theirs):
  for i, (a, b) in enumerate(zip(ours, theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5,
                               err_msg=f"{case.id}: gradient {i} differs")


def _ids():
  return [c.id for c in _CASES]


@pytest.mark.parametrize("case", _CASES, ids=_ids())
def test_in_graph_with_placeholders(case):
  rng = np.random.default_rng(0)
  graph = tf.Graph()
  with graph.as_default():
    xs = [tf.compat.v1.placeholder(tf.float32, _shape(s)) for s in case.static]
    ours, theirs = _both(case, xs)
    _check_shapes(case, ours, theirs)
    with tf.compat.v1.Session(graph=graph) as sess:
      ours_v, theirs_v = sess.run((_dense(ours), _dense(theirs)),
                                  dict(zip(xs, _values(case, rng))))
  _assert_values(case, ours_v, theirs_v)


@pytest.mark.parametrize("case", _CASES, ids=_ids())
def test_in_function_with_input_signature(case):
  rng = np.random.default_rng(1)
  shapes = {}

  @tf.function(input_signature=[tf.TensorSpec(_shape(s), tf.float32)
                                for s in case.static])
  def run(*xs):
    ours, theirs = _both(case, list(xs))
    shapes["ours"], shapes["theirs"] = ours, theirs
    return _dense(ours), _dense(theirs)

  ours_v, theirs_v = run(*_values(case, rng))
  _check_shapes(case, shapes["ours"], shapes["theirs"])
  _assert_values(case, [v.numpy() for v in ours_v],
                 [v.numpy() for v in theirs_v])


def test_specificity_check_can_fail():
  """The comparison refuses a less specific or a different shape."""
  assert not _at_least_as_specific(tf.TensorShape(None),
                                   tf.TensorShape([None, 2]))
  assert not _at_least_as_specific(tf.TensorShape([None, None]),
                                   tf.TensorShape([None, 2]))
  assert not _at_least_as_specific(tf.TensorShape([None, 3]),
                                   tf.TensorShape([None, 2]))
  assert _at_least_as_specific(tf.TensorShape([4, 2]),
                               tf.TensorShape([None, 2]))


# The rules themselves (before backprop sets x's shape on what they return)
# give each broadcasting operand's gradient that operand's static shape,
# also for a gradient of unknown shape.
_RULE_CASES = [(op, shape_id, static)
               for op in _BINARY_OPS if op not in ("FloorDiv", "TruncateDiv")
               for shape_id, static, _ in _BINARY_SHAPES]


@pytest.mark.parametrize("op_type,shape_id,static", _RULE_CASES,
                         ids=[f"{o}-{s}" for o, s, _ in _RULE_CASES])
def test_rule_returns_operand_shapes(op_type, shape_id, static):
  """Given a gradient shaped like the op's output. (Given one of unknown
  shape, a rule passes it on unreduced where the operands' shapes show no
  broadcast, as TF's rules do, and backprop sets the operand's shape on
  it: the end-to-end tests above check that.)"""
  del shape_id
  with tf.Graph().as_default(), emit.const_cache():
    xs = [tf.compat.v1.placeholder(tf.float32, _shape(s)) for s in static]
    y = _BINARY_OPS[op_type][0](*xs)
    grad = tf.ones_like(y)
    grads = registry.GRADIENTS.lookup(y.op.type)(y.op, grad)
    for t, g in zip(y.op.inputs, grads):
      if g is not None and t.dtype == tf.float32:
        assert _at_least_as_specific(g.shape, t.shape), (t.shape, g.shape)


@pytest.mark.parametrize("op_type", ["AddV2", "Sub", "Mul", "Maximum"])
def test_known_dims_need_no_dynamic_shape_ops(op_type):
  """[None, 2] with [2] or [1, 2]: which axes to sum is decided by the
  static dims, with no Shape or BroadcastGradientArgs op."""
  for other in ([2], [1, 2]):
    graph = tf.Graph()
    with graph.as_default():
      x = tf.compat.v1.placeholder(tf.float32, [None, 2])
      b = tf.compat.v1.placeholder(tf.float32, other)
      y = _BINARY_OPS[op_type][0](x, b)
      seed = tf.compat.v1.placeholder(tf.float32, [None, 2])
      before = len(graph.get_operations())
      tfgrad.gradients(y, [x, b], grad_ys=seed)
      added = {op.type for op in graph.get_operations()[before:]}
    assert not added & {"Shape", "BroadcastGradientArgs"}, (other, added)
