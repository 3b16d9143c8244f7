"""ops/math_grad.py: every spec against stock TF and finite differences."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import harness
from compat_tests import math_specs


@pytest.mark.parametrize(**harness.cases(math_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


@pytest.mark.parametrize(**harness.numeric_cases(math_specs.SPECS))
def test_numeric(spec, order):
  harness.check_numeric(spec, order)


# Second-order rules given an IndexedSlices gradient (README: stock TF's
# TanhGrad rule raises TypeError there). The gathered rows are compared
# with stock TF on the same function written densely (a masked sum).
@pytest.mark.parametrize("op_type", ["TanhGrad", "ReciprocalGrad",
                                     "RsqrtGrad", "SigmoidGrad", "SqrtGrad"])
def test_second_order_rules_take_indexed_slices(op_type):
  graph = tf.Graph()
  with graph.as_default():
    y = tf.constant([[0.5, 0.8], [0.3, 0.9], [0.6, 0.2]], tf.float64)
    dy = tf.constant([[1.0, -2.0], [0.5, 3.0], [2.0, 1.5]], tf.float64)
    out = getattr(tf.raw_ops, op_type)(y=y, dy=dy)
    sparse_y = tf.reduce_sum(tf.gather(out, [0, 2]))
    mask = tf.constant([[1.0], [0.0], [1.0]], tf.float64)
    dense_y = tf.reduce_sum(out * mask)
    ours = tfgrad.gradients(sparse_y, [y, dy])
    theirs = tf.gradients(dense_y, [y, dy])
    if op_type == "TanhGrad":
      with pytest.raises(TypeError):
        tf.gradients(sparse_y, [y, dy])
    with tf.compat.v1.Session() as sess:
      got, want = sess.run([ours, theirs])
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-12)


# Factors computed from forward values alone (cos(x) in sin's rule) wait for
# the incoming gradient, in tfgrad as in stock TF, so their buffers are not
# held from the forward pass until the gradient arrives. The last cases are
# tfgrad's alone (stock computes these factors as soon as it can).
_WAITING_FACTORS = [
    ("Sin", tf.sin, "Cos", True),
    ("Cos", tf.cos, "Sin", True),
    ("Log", tf.math.log, "Reciprocal", True),
    ("Sinh", tf.sinh, "Cosh", True),
    ("Lgamma", tf.math.lgamma, "Digamma", True),
    ("Atan2", lambda x: tf.atan2(x, x + 1.0), "Square", True),
    ("SquaredDifference",
     lambda x: tf.math.squared_difference(x, 2.0 * x), "Sub", True),
    ("Xlogy", lambda x: tf.math.xlogy(x, x + 1.0), "Xdivy", True),
    ("Pow", lambda x: tf.pow(x, x + 1.0), "Greater", False),
    ("Maximum", lambda x: tf.maximum(x, 1.0 - x), "GreaterEqual", False),
]


@pytest.mark.parametrize("name,forward,factor,stock_too", _WAITING_FACTORS,
                         ids=[c[0] for c in _WAITING_FACTORS])
def test_forward_only_factors_wait_for_the_gradient(name, forward, factor,
                                                    stock_too):
  del name
  engines = (tfgrad.gradients, tf.gradients) if stock_too else (
      tfgrad.gradients,)
  for engine in engines:
    graph = tf.Graph()
    with graph.as_default():
      x = tf.constant([0.5, 1.5, 2.5])
      w = tf.constant([1.0, -2.0, 3.0])
      y = tf.reduce_sum(forward(x) * w)
      before = set(graph.get_operations())
      engine(y, x)
      added = set(graph.get_operations()) - before
    factors = [op for op in added if op.type == factor
               and all(t.op not in added or t.op.type == "Const"
                       for t in op.inputs)]
    assert factors, f"{engine.__module__}: no {factor} op on forward values"
    for op in factors:
      assert any(c in added for c in op.control_inputs), (
          f"{engine.__module__}: {op.name} does not wait for the gradient")


# Complex Xlogy, Xdivy and Xlog1py (README: stock TF's rules multiply by the
# partials without conjugating them, so its gradient is wrong for complex
# inputs). TF's convention for a complex z = a + ib and a real loss L is
# dL/da + i dL/db; with L = Re(sum(conj(v) f(x, y))) the gradient of f with
# grad_ys=v is that, so <g, u> = sum Re(conj(g) u) must equal the central
# finite difference of L along u (the complex inputs as pairs of reals).
_COMPLEX_HOLOMORPHIC = {"Xlogy": tf.math.xlogy, "Xdivy": tf.math.xdivy,
                        "Xlog1py": tf.math.xlog1py}


def _complex_vjp_against_finite_differences(fn, engine):
  rng = np.random.default_rng(7)
  def sample():
    return (rng.uniform(0.5, 2.0, [2, 3])
            + 1j * rng.uniform(-1.0, 1.0, [2, 3]))
  x0, y0, v, ux, uy = (sample() for _ in range(5))
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.complex128, [2, 3])
    y = tf.compat.v1.placeholder(tf.complex128, [2, 3])
    f = fn(x, y)
    loss = tf.math.real(tf.reduce_sum(tf.math.conj(tf.constant(v)) * f))
    grads = engine(f, [x, y], grad_ys=tf.constant(v))
    eps = 1e-6
    with tf.compat.v1.Session() as sess:
      ahead = sess.run(loss, {x: x0 + eps * ux, y: y0 + eps * uy})
      behind = sess.run(loss, {x: x0 - eps * ux, y: y0 - eps * uy})
      gx, gy = sess.run(grads, {x: x0, y: y0})
  numeric = (ahead - behind) / (2 * eps)
  analytic = np.sum(np.real(np.conj(gx) * ux) + np.real(np.conj(gy) * uy))
  return analytic, numeric


@pytest.mark.parametrize("op_type", sorted(_COMPLEX_HOLOMORPHIC))
def test_complex_partials_are_conjugated(op_type):
  analytic, numeric = _complex_vjp_against_finite_differences(
      _COMPLEX_HOLOMORPHIC[op_type], tfgrad.gradients)
  np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("op_type", sorted(_COMPLEX_HOLOMORPHIC))
def test_stock_complex_partials_are_still_wrong(op_type):
  """Fails the day TF conjugates them: the case can then move to the
  differential table (math_specs with complex dtypes)."""
  analytic, numeric = _complex_vjp_against_finite_differences(
      _COMPLEX_HOLOMORPHIC[op_type], tf.gradients)
  assert abs(analytic - numeric) > 1e-3 * max(1.0, abs(numeric))


# A partly unknown operand that static shapes show was not broadcast
# (the other is a scalar) passes its gradient on unreduced, as stock TF's
# SmartBroadcastGradientArgs does: the gradient keeps grad_ys' static shape.
@pytest.mark.parametrize("binary", [tf.math.squared_difference, tf.math.add,
                                    tf.math.subtract, tf.math.multiply,
                                    tf.math.divide, tf.math.maximum,
                                    tf.math.pow])
@pytest.mark.parametrize("mode", ["graph", "function"])
def test_unbroadcast_keeps_static_shape_of_unbroadcast_operand(binary, mode):
  def grads():
    x = tf.compat.v1.placeholder_with_default(
        tf.constant([1.3, 1.5, 0.7]), [None])
    y = tf.constant(0.87)
    z = binary(x, y)
    seed = tf.constant([1.69, 0.4, -0.3])
    result = []
    for engine in (tfgrad.gradients, tf.gradients):
      result += engine(z, [x, y], grad_ys=seed)
    return [g.shape.as_list() for g in result], result

  if mode == "graph":
    with tf.Graph().as_default():
      shapes, result = grads()
      with tf.compat.v1.Session() as sess:
        values = sess.run(result)
  else:
    shapes = []

    @tf.function
    def run():
      s, r = grads()
      shapes.extend(s)
      return r
    values = [v.numpy() for v in run()]
  assert shapes[0] == shapes[2] == [3] and shapes[1] == shapes[3] == []
  np.testing.assert_allclose(values[0], values[2], rtol=1e-6)
  np.testing.assert_allclose(values[1], values[3], rtol=1e-6)
