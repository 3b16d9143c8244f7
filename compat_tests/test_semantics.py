"""tf.gradients semantics, each case against stock TF on the same graph,
in a TF1-style tf.Graph and inside a tf.function."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import differential

both = differential.both


def _c(value, dtype=tf.float32):
  return tf.constant(value, dtype=dtype)


def test_single_y_several_xs():
  def build():
    x, w = _c([[1.0, 2.0], [3.0, 4.0]]), _c([0.5, -1.0])
    return tf.reduce_sum(x * w + x), [x, w]
  both(build)


def test_several_ys_are_summed():
  def build():
    x = _c([1.0, 2.0, 3.0])
    return [x * x, 3.0 * x], [x]
  _, _, ours, _ = both(build)
  np.testing.assert_allclose(ours[0], [5.0, 7.0, 9.0])


def test_grad_ys_weights_each_y():
  def build():
    x = _c([1.0, 2.0])
    return [x * x, x], [x]
  both(build, grad_ys=[np.float32([1.0, 10.0]), np.float32([100.0, 1000.0])])


def test_grad_ys_none_entries_default_to_ones():
  def build():
    x = _c([1.0, 2.0])
    return [x * x, x], [x]
  both(build, grad_ys=[None, np.float32([2.0, 2.0])])


def test_stop_gradients_partial_vs_total_derivative():
  def build():
    a = _c(0.0)
    b = 2.0 * a
    build.stops = [a, b]
    return a + b, [a, b]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    partial = tfgrad.gradients(ys, xs, stop_gradients=build.stops)
    total = tfgrad.gradients(ys, xs)
    stock = tf.gradients(ys, xs, stop_gradients=build.stops)
    with tf.compat.v1.Session() as sess:
      p, t, s = sess.run((partial, total, stock))
  np.testing.assert_allclose(p, [1.0, 1.0])
  np.testing.assert_allclose(t, [3.0, 1.0])
  np.testing.assert_allclose(p, s)


def test_stop_gradients_inside_function():
  def build():
    a = _c(0.0)
    b = 2.0 * a
    return a + b, [a, b]
  # stop_gradients must be tensors of the same graph: build them in place.
  @tf.function
  def run():
    a = _c(0.0)
    b = 2.0 * a
    return (tfgrad.gradients(a + b, [a, b], stop_gradients=[a, b]),
            tf.gradients(a + b, [a, b], stop_gradients=[a, b]))
  ours, theirs = run()
  np.testing.assert_allclose(ours, theirs)
  both(build)


def test_tf_stop_gradient_blocks_a_path():
  def build():
    x = _c([1.0, 2.0])
    return x * tf.stop_gradient(x) + x, [x]
  both(build)


def test_stop_gradient_op_and_stop_gradients_argument_together():
  def build():
    x = _c(2.0)
    y = x * x
    z = tf.stop_gradient(y) * x + y
    build.stops = [y]
    return z, [x, y]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    ours = tfgrad.gradients(ys, xs, stop_gradients=build.stops)
    theirs = tf.gradients(ys, xs, stop_gradients=build.stops)
    with tf.compat.v1.Session() as sess:
      np.testing.assert_allclose(*sess.run((ours, theirs)))


def test_integer_tensors_are_constants():
  def build():
    x = _c([1.5, 2.5])
    as_int = tf.cast(x, tf.int32)
    return tf.cast(as_int * 2, tf.float32) * x, [x]
  both(build)


def test_integer_xs_get_none():
  def build():
    i = tf.constant([1, 2])
    x = _c([1.0, 2.0])
    return tf.cast(i, tf.float32) * x, [i, x]
  both(build)


@pytest.mark.parametrize("mode", ["none", "zero", tf.UnconnectedGradients.NONE,
                                  tf.UnconnectedGradients.ZERO])
def test_unconnected_gradients(mode):
  def build():
    x, unused = _c([1.0, 2.0]), _c([[3.0], [4.0]])
    return x * 2.0, [x, unused]
  both(build, unconnected_gradients=mode)


def test_unconnected_resource_variable_gets_zeros_of_variable_shape():
  graph = tf.Graph()
  with graph.as_default():
    x = _c([1.0, 2.0])
    v = tf.Variable(tf.ones([3, 2], tf.float64))
    (g,) = tfgrad.gradients(x * 2.0, [v], unconnected_gradients="zero")
    assert g.dtype == tf.float64
    assert g.shape.as_list() == [3, 2]
    (stock,) = tf.gradients(x * 2.0, [v], unconnected_gradients="zero")
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      ours_v, stock_v = sess.run((g, stock))
  np.testing.assert_array_equal(ours_v, np.zeros([3, 2]))
  np.testing.assert_array_equal(ours_v, stock_v)


@pytest.mark.parametrize("method", [
    None, tf.AggregationMethod.ADD_N, tf.AggregationMethod.EXPERIMENTAL_TREE,
    tf.AggregationMethod.EXPERIMENTAL_ACCUMULATE_N,
    tfgrad.AggregationMethod.EXPERIMENTAL_TREE])
def test_aggregation_methods(method):
  def build():
    x = _c([1.0, 2.0])
    y = x * 2.0
    return y + y + y + x * x, [x, y]
  both(build, aggregation_method=method)


def test_aggregation_adds_one_addn_per_fan_out():
  graph = tf.Graph()
  with graph.as_default():
    x = _c([1.0, 2.0])
    y = tf.add_n([x * float(k) for k in range(5)])
    tfgrad.gradients(y, [x])
    added = [op.type for op in graph.get_operations()
             if op.name.startswith("gradients/")]
  assert added.count("AddN") == 1


def test_gather_from_variable_gives_indexed_slices():
  def build():
    v = differential.variable(np.arange(12.0).reshape(4, 3))
    rows = tf.gather(v, [0, 2, 2])
    return tf.reduce_sum(rows * rows), [v]
  ours, _, _, _ = both(build)
  assert isinstance(ours[0], tf.IndexedSlices)


def test_two_sparse_contributions_stay_sparse():
  def build():
    v = differential.variable(np.arange(12.0).reshape(4, 3))
    return (tf.reduce_sum(tf.gather(v, [0, 1]))
            + tf.reduce_sum(tf.gather(v, [3]) * 2.0)), [v]
  ours, _, _, _ = both(build)
  assert isinstance(ours[0], tf.IndexedSlices)


def test_dense_and_sparse_contributions_are_summed_densely():
  def build():
    v = differential.variable(np.arange(12.0).reshape(4, 3))
    return tf.reduce_sum(tf.gather(v, [1])) + tf.reduce_sum(v * v), [v]
  ours, _, _, _ = both(build)
  assert isinstance(ours[0], tf.Tensor)


def test_gate_gradients():
  def build():
    x, w = _c([[1.0, 2.0]]), _c([[3.0], [4.0]])
    return tf.matmul(x, w), [x, w]
  both(build, gate_gradients=True)


def test_colocate_gradients_with_ops_v1():
  def build():
    with tf.device("/cpu:0"):
      x = _c([1.0, 2.0])
      y = x * x
    return y, [x]
  ours, theirs, _, _ = differential.in_graph(
      build, v1=True, colocate_gradients_with_ops=True)
  assert ours[0].op.colocation_groups() == theirs[0].op.colocation_groups()


def _gradient_ops_by_forward_op(engine):
  """Builds a two-device graph, differentiates it with `engine` (which
  colocates: the v2 signature does) and maps each added non-Const op to
  (device, colocation groups, forward op it belongs to)."""
  graph = tf.Graph()
  with graph.as_default():
    with tf.device("/job:a/task:0/device:CPU:0"):
      x = _c([1.0, 2.0])
      with tf.compat.v1.colocate_with(x.op):  # h carries a _class of its own
        h = tf.sin(x)
    with tf.device("/job:b/task:0/device:CPU:0"):
      y = tf.reduce_sum(h * h)
    before = len(graph.get_operations())
    engine(y, [x])
    found = {}
    for op in graph.get_operations()[before:]:
      scope = op.name.split("/")[1]
      if op.type == "Const" or not scope.endswith("_grad"):
        continue  # shared constants, the seed, sums of contributions
      forward = graph.get_operation_by_name(scope[:-len("_grad")])
      found[op.name] = (op.device, op.colocation_groups(), forward)
  return found


@pytest.mark.parametrize("engine", ["tfgrad", "stock"])
def test_v2_gradient_ops_take_their_forward_ops_device_and_colocation(engine):
  fn = tfgrad.gradients if engine == "tfgrad" else tf.gradients
  found = _gradient_ops_by_forward_op(fn)
  assert found
  for name, (device, groups, forward) in found.items():
    assert device == forward.device, name
    assert groups == forward.colocation_groups(), name


# Rules marked takes_none_for_unreached_outputs get None, not zeros, for
# outputs nothing reached; each must still match TF whichever outputs are.
def _xent(labels_dtype=tf.float32):
  logits = _c([[1.0, 2.0, 0.5], [0.1, -1.0, 2.0]])
  labels = _c([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], labels_dtype)
  loss, backprop = tf.raw_ops.SoftmaxCrossEntropyWithLogits(
      features=logits, labels=labels)
  return logits, labels, loss, backprop


@pytest.mark.parametrize("reached", ["loss", "backprop", "both"])
def test_xent_with_either_output_unreached(reached):
  def build():
    logits, labels, loss, backprop = _xent()
    ys = {"loss": [loss], "backprop": [backprop * backprop],
          "both": [loss, backprop * backprop]}[reached]
    # Labels' gradient through `backprop` is a deliberate difference
    # (README; test_nn_grad checks it numerically).
    return ys, [logits, labels] if reached == "loss" else [logits]
  both(build)


@pytest.mark.parametrize("reached", ["y", "mean", "variance"])
def test_fused_batch_norm_with_outputs_unreached(reached):
  def build():
    x = _c(np.arange(24.0).reshape(2, 2, 2, 3) / 7.0)
    scale, offset = _c([1.0, 2.0, 0.5]), _c([0.0, 0.1, 0.2])
    y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
        x, scale, offset, is_training=True)
    out = {"y": y, "mean": mean, "variance": variance}[reached]
    return [tf.reduce_sum(out * out)], [x, scale, offset]
  both(build)


# The default seed of a small static y is a value known at construction
# time; Sum/Mean rules compute their gradient of it in numpy. Values must be
# bit-identical to stock's kernels.
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("reduce", ["mean_all", "mean_axis", "sum_keepdims"])
def test_known_seed_through_reductions_is_bit_identical(reduce, dtype):
  def build():
    x = _c(np.linspace(-1.0, 2.0, 21).reshape(7, 3), dtype)
    h = x * x
    y = {"mean_all": lambda: tf.reduce_mean(h),
         "mean_axis": lambda: tf.reduce_mean(h, axis=0),
         "sum_keepdims": lambda: tf.reduce_sum(h, axis=1, keepdims=True)}
    return [y[reduce]()], [x]
  _, _, ours, theirs = both(build)
  assert ours[0].tobytes() == theirs[0].tobytes()


def _with_unknown_shape(t):
  return tf.compat.v1.placeholder_with_default(t, shape=[None] * t.shape.rank)


# Reshape and ExpandDims rules, and the cross-entropy rules' loss gradient,
# keep a known gradient known (reshaped in numpy) or make it one constant of
# the expanded shape: no Reshape or ExpandDims op is built for it (one is
# when the input's shape is not static).
_KNOWN_RESHAPES = {
    "reshape_y": lambda h: tf.reshape(h, [21]),
    "expand_dims_y": lambda h: tf.expand_dims(h, 1),
    "mean_of_reshape": lambda h: tf.reduce_mean(tf.reshape(h, [3, 7])),
    "reshape_of_unknown_shape": lambda h: tf.reshape(_with_unknown_shape(h),
                                                     [21]),
    "xent": lambda h: tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
        labels=tf.nn.softmax(tf.ones_like(h)), logits=h)),
    "sparse_xent": lambda h: tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant([0, 2, 1, 1, 0, 2, 1]), logits=h)),
    "xent_both_outputs": lambda h: tf.reduce_sum(
        tf.raw_ops.SoftmaxCrossEntropyWithLogits(
            features=h, labels=tf.nn.softmax(h * 0.5))[0]),
}


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("case", sorted(_KNOWN_RESHAPES))
def test_known_seed_through_reshapes_is_bit_identical(case, dtype):
  def build():
    x = _c(np.linspace(-1.0, 2.0, 21).reshape(7, 3), dtype)
    return [_KNOWN_RESHAPES[case](x * x)], [x]
  ours, _, ours_v, theirs_v = both(build)
  assert ours_v[0].tobytes() == theirs_v[0].tobytes()
  reshaped_constants = [
      op.name for op in _ops_between(ours[0])
      if op.type in ("Reshape", "ExpandDims")
      and op.inputs[0].op.type == "Const"]
  assert len(reshaped_constants) == (case == "reshape_of_unknown_shape")


def _ops_between(t):
  """The ops of the gradient graph behind `t` (up to the forward graph)."""
  seen, stack = set(), [t.op]
  while stack:
    op = stack.pop()
    if op not in seen and op.name.startswith("gradients"):
      seen.add(op)
      stack.extend(i.op for i in op.inputs)
  return seen

def _dead_ops(added, grads):
  reached, stack = set(), [g.op for g in grads if g is not None]
  while stack:
    op = stack.pop()
    if op not in reached:
      reached.add(op)
      stack.extend(t.op for t in op.inputs)
      stack.extend(op.control_inputs)
  return [op.name for op in added if op not in reached]


def test_no_dead_ops_for_a_classifier_with_batch_norm():
  """Every op tfgrad adds feeds a returned gradient (stock adds zeros for
  batch norm's statistics and the loss's second output, among others)."""
  graph = tf.Graph()
  with graph.as_default():
    x = differential.variable(np.linspace(-1.0, 1.0, 48).reshape(2, 2, 2, 6))
    scale, offset = differential.variable(np.ones(6)), differential.variable(
        np.zeros(6))
    h, _, _ = tf.compat.v1.nn.fused_batch_norm(
        tf.cast(x, tf.float32), tf.cast(scale, tf.float32),
        tf.cast(offset, tf.float32), is_training=True)
    logits = tf.reshape(h, [2, 24])[:, :5]
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.constant([1, 3]), logits=logits))
    before = len(graph.get_operations())
    ours = tfgrad.gradients(loss, [x, scale, offset])
    assert not _dead_ops(graph.get_operations()[before:], ours)
    before = len(graph.get_operations())
    theirs = tf.gradients(loss, [x, scale, offset])
    assert _dead_ops(graph.get_operations()[before:], theirs)


def test_resource_variables_as_xs_and_ys():
  def build():
    v = differential.variable([1.0, 2.0])
    w = differential.variable([3.0, 4.0])
    return [v * w, w], [v, w]
  both(build)


def test_same_x_twice_and_y_that_is_an_x():
  def build():
    x = _c([1.0, 2.0])
    y = x * x
    return [y, x], [x, x, y]
  both(build)


def test_x_not_reachable_from_ys():
  def build():
    x, z = _c(1.0), _c(2.0)
    return x * 3.0, [z, x]
  both(build)


def test_y_not_depending_on_anything():
  def build():
    x = _c(1.0)
    return _c(5.0), [x]
  both(build)


def test_gradient_ops_live_under_the_name_scope():
  graph = tf.Graph()
  with graph.as_default():
    x = _c([1.0, 2.0])
    y = x * x
    (g,) = tfgrad.gradients(y, [x])
    (h,) = tfgrad.gradients(y, [x], name="my_grads")
    assert g.name.startswith("gradients/")
    assert h.name.startswith("my_grads/")
    with tf.name_scope("outer"):
      (k,) = tfgrad.gradients(y, [x])
    assert k.name.startswith("outer/gradients")


def test_custom_gradient_is_used():
  @tf.custom_gradient
  def clip_grad(x):
    return tf.identity(x), lambda dy: tf.clip_by_value(dy, -0.1, 0.1)

  def build():
    x = _c([1.0, 2.0])
    return clip_grad(x) * 5.0, [x]
  _, _, ours, _ = both(build)
  np.testing.assert_allclose(ours[0], [0.1, 0.1])


_OVERRIDE_NAME = "TfgradTestDoubledGrad"


@tf.RegisterGradient(_OVERRIDE_NAME)
def _doubled_square_grad(op, grad):
  return grad * 4.0 * op.inputs[0]


def test_gradient_override_map_is_used():
  def build():
    x = _c([1.0, 2.0])
    with tf.compat.v1.get_default_graph().gradient_override_map(
        {"Square": _OVERRIDE_NAME}):
      y = tf.square(x)
    return y, [x]
  _, _, ours, _ = differential.in_graph(build)
  np.testing.assert_allclose(ours[0], [4.0, 8.0])


def test_override_map_can_name_a_tfgrad_rule():
  name = "TfgradOnlyTripleGrad"

  @tfgrad.RegisterGradient(name)
  def _triple(op, grad):
    del op
    return grad * 3.0
  try:
    graph = tf.Graph()
    with graph.as_default():
      x = _c([1.0, 2.0])
      with graph.gradient_override_map({"Identity": name}):
        y = tf.identity(x)
      (g,) = tfgrad.gradients(y, [x])
      with tf.compat.v1.Session() as sess:
        np.testing.assert_allclose(sess.run(g), [3.0, 3.0])
  finally:
    tfgrad.registry.GRADIENTS.unregister(name)


def test_cond_and_while_loop_in_function():
  def build():
    x = _c(1.5)
    y = tf.cond(x > 1.0, lambda: x * x, lambda: x)
    _, z = tf.while_loop(lambda i, acc: i < 3,
                         lambda i, acc: (i + 1, acc * x),
                         [tf.constant(0), y])
    return z, [x]
  differential.in_function(build)


def test_nested_function_calls():
  @tf.function
  def inner(x):
    return tf.reduce_sum(x * x)

  @tf.function
  def middle(x):
    return inner(x) * 2.0 + tf.reduce_sum(x)

  def build():
    x = _c([1.0, 2.0, 3.0])
    return middle(x), [x]
  both(build)


def test_y_inside_function_x_captured_from_outside():
  x = tf.Variable([1.0, 2.0])

  @tf.function
  def run():
    y = tf.reduce_sum(x * x)
    return tfgrad.gradients(y, [x]), tf.gradients(y, [x])
  ours, theirs = run()
  np.testing.assert_allclose(ours[0], theirs[0])


def test_complex_ys_with_grad_ys():
  def build():
    x = tf.constant([1.0 + 2.0j, 3.0 - 1.0j], dtype=tf.complex128)
    return x * x, [x]
  both(build, grad_ys=[np.complex128([1.0 + 0.5j, -1.0j])])


def test_indexed_slices_grad_ys():
  def build():
    x = _c([[1.0, 2.0], [3.0, 4.0]])
    return tf.identity(x), [x]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    slices = tf.IndexedSlices(_c([[1.0, 1.0]]), tf.constant([1]),
                              tf.constant([2, 2]))
    ours = tfgrad.gradients(ys, xs, grad_ys=[slices])
    theirs = tf.gradients(ys, xs, grad_ys=[slices])
    assert differential.describe(ours[0]) == differential.describe(theirs[0])


@pytest.fixture
def betainc_without_native_rule():
  """Betainc's tfgrad rule taken out for one test (TF still has one)."""
  registry = tfgrad.registry.GRADIENTS
  saved = None
  if "Betainc" in registry:
    saved = (registry.lookup("Betainc"), registry.origin("Betainc"))
    registry.unregister("Betainc")
  yield
  if saved is not None:
    registry.register("Betainc", *saved)


def _betainc_graph():
  x = _c([0.3, 0.6])
  return tf.raw_ops.Betainc(a=_c([1.0, 2.0]), b=_c([2.0, 1.0]), x=x), x


def test_strict_mode_refuses_tf_fallback(betainc_without_native_rule):
  del betainc_without_native_rule
  graph = tf.Graph()
  with graph.as_default():
    y, x = _betainc_graph()
    assert tfgrad.gradients(y, [x])[0] is not None  # TF's rule, as fallback
    with pytest.raises(LookupError, match="Betainc"):
      tfgrad.gradients(y, [x], strict=True)
    with tfgrad.strict_mode():
      with pytest.raises(LookupError, match="strict"):
        tfgrad.gradients(y, [x])


def test_strict_mode_from_environment(monkeypatch, betainc_without_native_rule):
  del betainc_without_native_rule
  monkeypatch.setenv("TFGRAD_STRICT", "1")
  graph = tf.Graph()
  with graph.as_default():
    y, x = _betainc_graph()
    with pytest.raises(LookupError):
      tfgrad.gradients(y, [x])
    assert tfgrad.gradients(y, [x], strict=False)[0] is not None


def test_stop_gradients_on_a_function_call_op():
  """Stock TF 2.21 ignores stop_gradients for a call of a tf.function (it
  builds a SymbolicGradient through it and returns 7 here); the partial
  derivative with y held constant is 1."""
  graph = tf.Graph()
  with graph.as_default():
    square = tf.function(lambda v: v * v)
    x = _c(3.0)
    y = square(x)
    assert y.op.type in ("PartitionedCall", "StatefulPartitionedCall")
    (g,) = tfgrad.gradients(y + x, [x], stop_gradients=[y])
    (total,) = tfgrad.gradients(y + x, [x])
    (stock_total,) = tf.gradients(y + x, [x])
    with tf.compat.v1.Session() as sess:
      g, total, stock_total = sess.run((g, total, stock_total))
  assert g == 1.0
  assert total == stock_total == 7.0


@pytest.mark.parametrize("op", [tf.floor, tf.math.ceil, tf.round, tf.math.rint])
def test_piecewise_constant_ops_match_tf(op):
  def build():
    x = _c([1.3, -2.7])
    return op(x) * x + op(x * x), [x]
  both(build)


def test_argmax_path_matches_tf():
  def build():
    x = _c([[1.0, 5.0, 2.0]])
    idx = tf.cast(tf.argmax(x, axis=1), tf.float32)
    return idx * x, [x]
  both(build)


@pytest.mark.parametrize("separate", [False, True])
def test_xla_jit_scope_tags_gradient_ops_like_tf(separate):
  def xla_tags(engine):
    graph = tf.Graph()
    with graph.as_default():
      x = _c([1.0, 2.0])
      with tf.xla.experimental.jit_scope(
          separate_compiled_gradients=separate):
        y = tf.tanh(x) * x
      before = set(graph.get_operations())
      engine(y, [x])
      tags = set()
      for op in graph.get_operations():
        if op in before or op.type == "Const":
          continue
        try:
          tags.add((op.get_attr("_XlaCompile"), op.get_attr("_XlaScope")))
        except ValueError:
          tags.add(None)
      return tags
  ours, theirs = xla_tags(tfgrad.gradients), xla_tags(tf.gradients)
  assert any(t is not None for t in ours)
  assert ours == theirs


def test_while_loop_and_cond_in_graph():
  def build():
    x = _c([1.5, 0.5])
    _, z = tf.while_loop(lambda i, acc: i < 3,
                         lambda i, acc: (i + 1, tf.sin(acc) * x),
                         [tf.constant(0), x])
    return tf.cond(tf.reduce_sum(z) > 0.0, lambda: z * z, lambda: z), [x]
  differential.in_graph(build)


def test_v1_while_loop_is_differentiated_natively_in_strict_mode():
  tf.compat.v1.disable_control_flow_v2()
  try:
    def build():
      x = _c(1.2)
      _, z = tf.compat.v1.while_loop(lambda i, acc: i < 3,
                                     lambda i, acc: (i + 1, acc * x),
                                     [tf.constant(0), x])
      assert any(op.type == "Enter" for op in z.graph.get_operations())
      return z, [x]
    differential.in_graph(build)
    graph = tf.Graph()
    with graph.as_default():
      ys, xs = build()
      ours = tfgrad.gradients(ys, xs, strict=True)[0]
      theirs = tf.gradients(ys, xs)[0]
      with tf.compat.v1.Session() as sess:
        np.testing.assert_allclose(*sess.run([ours, theirs]), rtol=1e-6)
  finally:
    tf.compat.v1.enable_control_flow_v2()


def test_ragged_tensors():
  def build():
    values = _c([1.0, 2.0, 3.0, 4.0])
    rt = tf.RaggedTensor.from_row_splits(values, [0, 1, 4])
    return tf.reduce_sum(rt * rt, axis=1), [rt, values]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    ours = tfgrad.gradients(ys, xs)
    theirs = tf.gradients(ys, xs)
    assert type(ours[0]) is type(theirs[0])
    with tf.compat.v1.Session() as sess:
      a, b = sess.run((ours, theirs))
  np.testing.assert_allclose(a[1], b[1])
  np.testing.assert_allclose(a[0].flat_values, b[0].flat_values)


def test_skip_input_indices_does_not_outlive_the_call():
  graph = tf.Graph()
  with graph.as_default():
    x = _c([1.0, 2.0])
    y = tf.math.xlogy(_c([3.0, 4.0]), x) * x
    tfgrad.gradients(y, [x])
    assert not any(hasattr(op, "skip_input_indices")
                   for op in graph.get_operations())


def test_control_flow_bodies_are_differentiated_by_tfgrad_in_strict_mode(
    backprop_passes):
  """If's rule is tfgrad's (ops/cond_grad.py), While's is tfgrad's around
  TF's; the bodies they differentiate go through tfgrad's engine, strictly,
  without install()."""
  calls = backprop_passes
  assert "If" in tfgrad.registry.GRADIENTS.differentiable_keys()
  assert "If" not in tfgrad.registry.GRADIENTS.use_tf_keys()
  assert "While" in tfgrad.registry.GRADIENTS.differentiable_keys()

  def build():
    x = _c([1.5, 0.5])
    _, z = tf.while_loop(lambda i, acc: i < 3,
                         lambda i, acc: (i + 1, tf.sin(acc) * x),
                         [tf.constant(0), x])
    y = tf.cond(tf.reduce_sum(z) > 0.0, lambda: z * z, lambda: z)
    return y, [x]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    ours = tfgrad.gradients(ys, xs, strict=True)
    theirs = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      np.testing.assert_allclose(*sess.run((ours, theirs)), rtol=1e-6)
  assert len(calls) >= 3  # the outer pass, the cond branch, the loop body
  from tensorflow.python.ops import gradients_util  # pylint: disable=g-import-not-at-top
  assert gradients_util._GradientsHelper is tfgrad.tf_compat.ORIGINAL_GRADIENTS_HELPER  # pylint: disable=protected-access


def test_v1_cond_switch_and_merge_through_tfgrad_engine():
  tf.compat.v1.disable_control_flow_v2()
  try:
    def build():
      x = _c([1.5, -0.5])
      y = tf.compat.v1.cond(tf.reduce_sum(x) > 0.0, lambda: tf.sin(x) * x,
                            lambda: x * x)
      assert any(op.type == "Switch" for op in y.graph.get_operations())
      return y, [x]
    differential.in_graph(build)
    graph = tf.Graph()
    with graph.as_default():
      ys, xs = build()
      assert tfgrad.gradients(ys, xs, strict=True)[0] is not None
  finally:
    tf.compat.v1.enable_control_flow_v2()


def test_no_gradient_is_built_for_inputs_that_lead_to_no_x():
  """A conv over constant images, a matmul by a constant and a product with
  a constant: stock TF builds the gradient toward the constant too (dead
  ops); tfgrad does not. Results are the same."""
  def build():
    images = tf.constant(np.ones([1, 4, 4, 2]), tf.float32)
    w = differential.variable(np.full([2, 2, 2, 3], 0.1))
    h = tf.nn.conv2d(images, w, 1, "VALID")
    m = tf.matmul(tf.reshape(h, [1, -1]), tf.ones([27, 2]))
    return tf.reduce_sum(m * tf.constant([1.0, 2.0])), [w]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    n0 = len(graph.get_operations())
    tfgrad.gradients(ys, xs)
    ours = [op.type for op in graph.get_operations()[n0:]]
    n1 = len(graph.get_operations())
    tf.gradients(ys, xs)
    theirs = [op.type for op in graph.get_operations()[n1:]]
  assert "Conv2DBackpropInput" in theirs
  assert "Conv2DBackpropInput" not in ours
  assert ours.count("MatMul") == theirs.count("MatMul") - 1
  assert len(ours) < len(theirs)
  both(build)
