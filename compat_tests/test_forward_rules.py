"""Every native forward rule against ForwardAccumulator on the same graph,
in a tf.Graph and in a tf.function, taking the native path; every batched
rule (and the vectorized plain rule where an op type has none) against
ForwardAccumulator row by row; meta-tests keep the table equal to the
registries."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from tfgrad import forward
from compat_tests import higher_order_harness as harness

_POS = "positive"

# op type -> (builder over float64 inputs, input shapes, domain)
CASES = {
    "Tanh": (tf.tanh, [(2, 3)], None),
    "Sigmoid": (tf.sigmoid, [(2, 3)], None),
    "Sqrt": (tf.sqrt, [(2, 3)], _POS),
    "Rsqrt": (tf.math.rsqrt, [(2, 3)], _POS),
    "Reciprocal": (tf.math.reciprocal, [(2, 3)], _POS),
    "Exp": (tf.exp, [(2, 3)], None),
    "Log": (tf.math.log, [(2, 3)], _POS),
    "Sin": (tf.sin, [(2, 3)], None),
    "Cos": (tf.cos, [(2, 3)], None),
    "Square": (tf.square, [(2, 3)], None),
    "Relu": (tf.nn.relu, [(2, 3)], None),
    "Softplus": (tf.nn.softplus, [(2, 3)], None),
    "Neg": (tf.negative, [(2, 3)], None),
    "Identity": (tf.identity, [(2, 3)], None),
    "Cast": (lambda x: tf.cast(x, tf.float32), [(2, 3)], None),
    "AddV2": (lambda a, b: a + b, [(2, 3), (3,)], None),
    "Add": (lambda a, b: tf.raw_ops.Add(x=a, y=b), [(3,), (2, 3)], None),
    "Sub": (lambda a, b: a - b, [(2, 3), (1, 3)], None),
    "Mul": (lambda a, b: a * b, [(2, 1), (2, 3)], None),
    "RealDiv": (lambda a, b: a / b, [(2, 3), (3,)], _POS),
    "AddN": (lambda a, b: tf.add_n([a, b, a]), [(2, 3), (2, 3)], None),
    "SquaredDifference": (tf.math.squared_difference, [(2, 3), (3,)], None),
    "Maximum": (tf.maximum, [(2, 3), (3,)], None),
    "Minimum": (tf.minimum, [(3,), (2, 3)], None),
    "MatMul": (lambda a, b: tf.linalg.matmul(a, b, transpose_a=True),
               [(3, 2), (3, 4)], None),
    "BatchMatMulV2": (lambda a, b: tf.linalg.matmul(a, b, adjoint_b=True),
                      [(2, 2, 3), (4, 3)], None),
    "Conv2D": (lambda x, f: tf.nn.conv2d(x, f, [1, 2, 1, 1], "SAME",
                                         dilations=1),
               [(1, 5, 4, 2), (2, 2, 2, 3)], None),
    "BiasAdd": (tf.nn.bias_add, [(2, 3, 4), (4,)], None),
    "MaxPool": (lambda x: tf.nn.max_pool2d(x, 2, 1, "VALID"), [(1, 4, 4, 2)],
                None),
    "AvgPool": (lambda x: tf.nn.avg_pool2d(x, 2, 2, "SAME"), [(1, 5, 5, 2)],
                None),
    "Sum": (lambda x: tf.reduce_sum(x, [0, 2], keepdims=True), [(2, 3, 4)],
            None),
    "Mean": (lambda x: tf.reduce_mean(x, 1), [(2, 3, 4)], None),
    "Reshape": (lambda x: tf.reshape(x, [4, -1]), [(2, 3, 4)], None),
    "Transpose": (lambda x: tf.transpose(x, [2, 0, 1]), [(2, 3, 4)], None),
    "ExpandDims": (lambda x: tf.expand_dims(x, 1), [(2, 3)], None),
    "Squeeze": (lambda x: tf.squeeze(x, [1]), [(2, 1, 3)], None),
    "StridedSlice": (lambda x: x[1:, ::2, None], [(3, 4)], None),
    "Slice": (lambda x: tf.slice(x, [0, 1], [2, 2]), [(3, 4)], None),
    "Tile": (lambda x: tf.tile(x, [2, 1]), [(2, 3)], None),
    "Pad": (lambda x: tf.pad(x, [[1, 0], [2, 1]]), [(2, 3)], None),
    "Reverse": (lambda x: tf.raw_ops.Reverse(tensor=x, dims=[True, False]),
                [(2, 3)], None),
    "ReverseV2": (lambda x: tf.reverse(x, [1]), [(2, 3)], None),
    "BroadcastTo": (lambda x: tf.broadcast_to(x, [2, 2, 3]), [(2, 1, 3)],
                    None),
    "Cumsum": (lambda x: tf.cumsum(x, 1, exclusive=True, reverse=True),
               [(2, 3)], None),
    "GatherV2": (lambda x: tf.gather(x, [[2, 0], [1, 1]], axis=1), [(2, 3)],
                 None),
    "ConcatV2": (lambda a, b: tf.concat([a, tf.ones_like(a), b], 0),
                 [(2, 3), (1, 3)], None),
    "Softmax": (tf.nn.softmax, [(2, 3)], None),
    "LogSoftmax": (tf.nn.log_softmax, [(2, 3)], None),
    "ReadVariableOp": (None, [(2, 3)], None),   # test_variables below
    # gradient ops, met in forward over reverse (Hessians)
    "Pow": (lambda a, b: a ** b, [(2, 3), (3,)], _POS),
    "TanhGrad": (lambda y, dy: tf.raw_ops.TanhGrad(y=y, dy=dy),
                 [(2, 3), (2, 3)], None),
    "SigmoidGrad": (lambda y, dy: tf.raw_ops.SigmoidGrad(y=y, dy=dy),
                    [(2, 3), (2, 3)], None),
    "ReluGrad": (lambda g, f: tf.raw_ops.ReluGrad(gradients=g, features=f),
                 [(2, 3), (2, 3)], None),
    "BiasAddGrad": (lambda x: tf.raw_ops.BiasAddGrad(out_backprop=x),
                    [(2, 3, 4)], None),
    "StridedSliceGrad": (lambda dy: tf.raw_ops.StridedSliceGrad(
        shape=[3, 4], begin=[1, 0], end=[2, 0], strides=[1, 2], dy=dy,
        end_mask=2, shrink_axis_mask=1), [(2,)], None),
}

# Op types with no batched rule: their plain rule is vectorized (pfor).
VECTORIZED = {"Conv2D", "MaxPool", "AvgPool", "Reverse"}

# Extra batched cases: a batched rule that declines (NotImplemented) for
# these attributes (GatherV2 with batch_dims), and shapes or attributes
# the main table does not reach.
BATCHED_EXTRA = {
    "BiasAdd_NCHW": (lambda x, b: tf.nn.bias_add(x, b, "NCHW"),
                     [(2, 3, 4), (3,)], None),
    "BiasAddGrad_NCHW": (lambda x: tf.raw_ops.BiasAddGrad(
        out_backprop=x, data_format="NCHW"), [(2, 3, 4)], None),
    "GatherV2_batch_dims": (lambda p: tf.gather(p, [[0, 2], [1, 1]], axis=1,
                                                batch_dims=1), [(2, 3)], None),
    "Squeeze_all": (tf.squeeze, [(1, 3, 1)], None),
    "StridedSlice_ellipsis": (lambda x: x[..., 1:, 0], [(2, 3, 4)], None),
    "Mul_scalar": (lambda a, b: a * b, [(), (2, 3)], None),
    "MatMul_b_only": (lambda a, b: tf.linalg.matmul(a, b, transpose_b=True),
                      [(2, 3), (4, 3)], None),
    "ConcatV2_negative_axis": (lambda a, b: tf.concat([a, 2.0 * b], -1),
                               [(2, 3), (2, 1)], None),
}


def test_every_forward_rule_has_a_case():
  assert sorted(CASES) == forward.FORWARD.keys()


def test_batched_rules_are_the_plain_ones_but_the_vectorized():
  assert set(forward.BATCHED.keys()) <= set(forward.FORWARD.keys())
  assert set(forward.FORWARD.keys()) - set(forward.BATCHED.keys()) == \
      VECTORIZED


def _sample(rng, shape, domain):
  v = rng.standard_normal(shape)
  return np.abs(v) + 0.5 if domain == _POS else v


@pytest.mark.parametrize("op_type", sorted(k for k, v in CASES.items()
                                           if v[0] is not None))
def test_forward_rule_matches_forward_accumulator(op_type):
  fn, shapes, domain = CASES[op_type]
  rng = np.random.default_rng(len(op_type))
  values = [_sample(rng, s, domain) for s in shapes]
  tangents = [rng.standard_normal(s) for s in shapes]

  def build(xs):
    ts = [tf.constant(t) for t in tangents]
    with tf.autodiff.ForwardAccumulator(xs, ts) as acc:
      stock = fn(*xs)
    y = fn(*xs)
    assert op_type in {op.type for op in tf.compat.v1.get_default_graph()
                       .get_operations()}
    assert forward.supported([y], xs)
    return [tfgrad.jvp(y, xs, ts)], [acc.jvp(stock)]
  for mode in harness.MODES:
    harness.assert_same(*harness.run(mode, build, values))


_BATCH = 3


@pytest.mark.parametrize("case", sorted(
    [k for k, v in CASES.items() if v[0] is not None] + list(BATCHED_EXTRA)))
def test_batched_rule_matches_forward_accumulator_per_row(case):
  """Tangents [3] + x.shape pushed in one pass equal three
  ForwardAccumulator jvps, stacked."""
  fn, shapes, domain = {**CASES, **BATCHED_EXTRA}[case]
  rng = np.random.default_rng(len(case))
  values = [_sample(rng, s, domain) for s in shapes]
  tangents = [rng.standard_normal((_BATCH,) + s) for s in shapes]

  def build(xs):
    rows = []
    for b in range(_BATCH):
      with tf.autodiff.ForwardAccumulator(
          xs, [tf.constant(t[b]) for t in tangents]) as acc:
        y = fn(*xs)
      rows.append(acc.jvp(y))
    y = fn(*xs)
    (ours,) = forward.batched_tangents_or_none(
        [y], xs, [tf.constant(t) for t in tangents])
    assert ours.shape.is_compatible_with([_BATCH] + y.shape.as_list())
    return [ours], [tf.stack(rows)]
  for mode in harness.MODES:
    harness.assert_same(*harness.run(mode, build, values), rtol=1e-12)


def test_variables():
  """A resource variable x in a tf.Graph: ReadVariableOp's rule."""
  with tf.Graph().as_default():
    w = tf.Variable(np.array([[0.5, -1.0], [2.0, 0.25]]))
    t = tf.constant(np.ones((2, 2)))
    with tf.autodiff.ForwardAccumulator(w, t) as acc:
      stock = tf.tanh(w * 3.0)
    y = tf.tanh(w * 3.0)
    assert forward.supported([y], [w.handle])
    ours = tfgrad.jvp(y, w, t)
    with tf.compat.v1.Session() as sess:
      sess.run(w.initializer)
      a, b = sess.run([ours, acc.jvp(stock)])
  np.testing.assert_allclose(a, b, rtol=1e-12)


def test_registering_twice_names_both_places():
  @forward.RegisterForward("TfgradForwardTestOp")
  def _first(op, t):
    del op
    return [t]
  try:
    with pytest.raises(KeyError, match="test_forward_rules.py"):
      forward.RegisterForward("TfgradForwardTestOp")(lambda op, t: [t])
  finally:
    forward.FORWARD.unregister("TfgradForwardTestOp")


# ----- basis rules: an identity basis as the tangent, not built -----

_W = np.random.default_rng(21).standard_normal((4, 3))

# name -> (function of one x, x's shape, basis over rows, product-free)
BASIS_CASES = {
    "MatMul_a": (lambda a: a @ _W, (2, 4), False, True),
    "MatMul_a_one_row": (lambda a: tf.linalg.matmul(a, _W.T,
                                                    transpose_b=True),
                         (1, 4), False, True),
    "MatMul_b": (lambda b: tf.linalg.matmul(_W, b, transpose_a=True),
                 (4, 2), False, True),
    "MatMul_b_one_column": (lambda b: tf.tanh(_W.T @ b), (4, 1), False, True),
    "matvec_through_shape_ops": (
        lambda v: tf.tanh(tf.linalg.matvec(_W, v, transpose_a=True) + 1.0),
        (4,), False, True),
    "Reshape_MatMul": (lambda v: tf.reshape(v, [2, 4]) @ _W, (8,), False,
                       True),
    "MatMul_rows": (lambda a: tf.sin(a @ _W), (5, 4), True, True),
    # declined: the basis is built and the batched rules run
    "MatMul_transposed_basis": (lambda a: tf.linalg.matmul(
        a, _W, transpose_a=True), (4, 2), False, False),
    "Slice_first": (lambda v: v[:, 1:] @ tf.constant(_W[:3]), (2, 4), False,
                    False),
    "Reshape_rows": (lambda a: tf.reshape(a, [-1]), (2, 3), True, False),
}


def test_basis_rules_have_plain_rules():
  assert set(forward.BASIS.keys()) <= set(forward.FORWARD.keys())


@pytest.mark.parametrize("case", sorted(BASIS_CASES))
def test_basis_tangent_matches_forward_accumulator_per_unit(case):
  """A `Basis` pushed through the batched pass equals ForwardAccumulator
  jvps along every unit tensor (of x, or of one row of x on every row),
  stacked; where a basis rule applies, no product is built."""
  fn, shape, rows, product_free = BASIS_CASES[case]
  value = np.random.default_rng(len(case)).standard_normal(shape)
  unit = shape[1:] if rows else shape
  n = int(np.prod(unit))
  units = np.eye(n).reshape((n,) + unit)
  if rows:
    units = np.broadcast_to(units[:, None], (n,) + shape)

  def build(xs):
    (x,) = xs
    stock = []
    for u in units:
      with tf.autodiff.ForwardAccumulator(x, tf.constant(u)) as acc:
        y = fn(x)
      stock.append(acc.jvp(y))
    y = fn(x)
    graph = tf.compat.v1.get_default_graph()
    before = len(graph.get_operations())
    (ours,) = forward.batched_tangents_or_none(
        [y], [x], [forward.Basis(x.shape, x.dtype, rows=rows, like=x)])
    added = {op.type for op in graph.get_operations()[before:]}
    if product_free:
      assert not added & {"MatMul", "BatchMatMulV2", "BatchMatMulV3"}
    else:
      assert "Eye" in added or "MatrixDiag" in added or \
          "MatrixDiagV3" in added
    return [ours], [tf.stack(stock)]
  for mode in harness.MODES:
    harness.assert_same(*harness.run(mode, build, [value]), rtol=1e-12)
