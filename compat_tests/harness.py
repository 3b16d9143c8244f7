"""The two checks every spec gets.

check_matches_tf: tfgrad (strict: no fallback to TF's registry) against
  stock `tf.gradients` on the same graph: None pattern, Tensor vs
  IndexedSlices, dtype, static shape and values.
check_numeric: `tfgrad.check_gradients` in float64, along one random
  direction: <u, vjp(v)> = d/de <f(x+eu), v>, at order 1 and (the same for
  the gradient map x -> vjp(x, v)) order 2.
"""

import numpy as np
import tensorflow as tf

import tfgrad
from compat_tests import spec as spec_lib

_EPS = 1e-6


def cases(specs):
  """pytest parametrisation over (spec, dtype)."""
  params = [(s, d) for s in specs for d in s.dtypes]
  return {"argnames": "spec,dtype", "argvalues": params,
          "ids": [f"{s.id}-{d}" for s, d in params]}


def numeric_cases(specs):
  """pytest parametrisation over (spec, order) for orders 1..spec.order."""
  params = [(s, k) for s in specs for k in range(1, s.order + 1)]
  return {"argnames": "spec,order", "argvalues": params,
          "ids": [f"{s.id}-order{k}" for s, k in params]}


def _as_list(x):
  return list(x) if isinstance(x, (list, tuple)) else [x]


def _rng(spec, salt=0):
  return np.random.default_rng(abs(hash((spec.id, salt))) % (2**32))


def _cotangents(ys, rng):
  """Random grad_ys: one array per y, of y's static shape and dtype."""
  out = []
  for y in ys:
    dtype = y.dtype.as_numpy_dtype
    out.append(spec_lib.sample("real", rng, y.shape.as_list(), dtype))
  return out


def _describe(g):
  if g is None:
    return None
  kind = "IndexedSlices" if isinstance(g, tf.IndexedSlices) else "Tensor"
  return kind, g.dtype.name, (g.values.shape.as_list()
                              if kind == "IndexedSlices" else
                              g.shape.as_list())


def _fetchable(g):
  if isinstance(g, tf.IndexedSlices):
    return (tf.convert_to_tensor(g), g.indices, g.values)
  return (g,)


def check_matches_tf(spec, dtype):
  rng = _rng(spec)
  graph = tf.Graph()
  with graph.as_default():
    xs = [_input(spec, tf.constant(spec_lib.sample(spec.domain, rng, shape,
                                                   dtype)))
          for shape in spec.shapes]
    ys = [y for y in _as_list(spec.build(*xs)) if y.dtype.is_floating
          or y.dtype.is_complex]
    grad_ys = [tf.constant(v) for v in _cotangents(ys, rng)]
    ours = tfgrad.gradients(ys, xs, grad_ys, strict=spec.strict)
    theirs = tf.gradients(ys, xs, grad_ys)
    assert [_describe(g) for g in ours] == [_describe(g) for g in theirs], (
        f"{spec.id}: structure differs from tf.gradients")
    if not spec.runs:
      return
    fetch = [(_fetchable(a), _fetchable(b))
             for a, b in zip(ours, theirs) if a is not None]
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(init)
      values = sess.run(fetch)
  tol = 1e-5 if dtype in ("float32", "complex64") else 1e-10
  for i, (a_parts, b_parts) in enumerate(values):
    np.testing.assert_allclose(a_parts[0], b_parts[0], rtol=tol, atol=tol,
                               err_msg=f"{spec.id}: gradient {i} differs")


def _input(spec, value):
  """An x for the spec: the value itself, or a variable initialised to it."""
  return tf.Variable(value) if spec.variables else value


def check_numeric(spec, order):
  """`tfgrad.check_gradients` along one random direction, in float64."""
  rng = _rng(spec, order)
  x0 = [spec_lib.sample(spec.domain, rng, s, "float64") for s in spec.shapes]

  def build(*xs):
    return [y for y in _as_list(spec.build(*xs)) if y.dtype == tf.float64]
  report = tfgrad.check_gradients(
      build, x0, order=order, delta=_EPS, rtol=spec.rtol, atol=spec.atol,
      directions=1, strict=spec.strict,
      variables=(lambda p: _input(spec, p)) if spec.variables else False,
      seed=int(rng.integers(2**31)), raise_on_failure=False)
  assert report.ok, (f"{spec.id}: order-{order} vjp disagrees with finite "
                     f"differences\n{report}")


def check_tf_fails(spec, exceptions):
  """Stock tf.gradients raises one of `exceptions` on the spec's graph: the
  TF gap a numeric-only spec documents is still there (this fails the day
  TF fills it, so the spec can move to the differential table)."""
  with tf.Graph().as_default():
    xs = [tf.constant(np.ones(shape)) for shape in spec.shapes]
    ys = spec.build(*xs)
    try:
      tf.gradients(ys, xs)
    except exceptions:
      return
  raise AssertionError(f"{spec.id}: stock tf.gradients no longer fails")
