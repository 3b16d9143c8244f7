"""Gradients of a model split across two (logical CPU) devices, with
`colocate_gradients_with_ops=True`: constants tfgrad shares between rules
are placed with the rules that use them, so the gradient graph makes no
cross-device transfer that stock's does not."""

import numpy as np
import tensorflow as tf

import tfgrad

_TWO_CPUS = dict(device_count={"CPU": 2})


def _split_model():
  """Square and sin on both devices: their rules ask for the same
  constants (2.0 for Square) on /cpu:0 and on /cpu:1."""
  x = tf.constant(np.linspace(0.1, 1.0, 12).reshape(3, 4), tf.float32)
  with tf.device("/cpu:0"):
    w0 = tf.Variable(np.full([4, 4], 0.1, np.float32), name="w0")
    h = tf.square(tf.sin(x @ w0))
  with tf.device("/cpu:1"):
    w1 = tf.Variable(np.full([4, 2], 0.2, np.float32), name="w1")
    y = tf.reduce_sum(tf.square(tf.sin(h @ w1)))
  return y, [w0, w1]


def _run(engine, optimize):
  """(gradient values, _Send nodes in the partitioned graphs, graph)."""
  graph = tf.Graph()
  with graph.as_default():
    y, xs = _split_model()
    grads = engine(y, xs, colocate_gradients_with_ops=True)
    init = tf.compat.v1.global_variables_initializer()
  config = tf.compat.v1.ConfigProto(**_TWO_CPUS)
  if not optimize:  # the graph as built: no folding or duplication
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    config.graph_options.optimizer_options.opt_level = -1
    config.graph_options.optimizer_options.do_constant_folding = False
  with tf.compat.v1.Session(graph=graph, config=config) as sess:
    sess.run(init)
    metadata = tf.compat.v1.RunMetadata()
    values = sess.run(grads, options=tf.compat.v1.RunOptions(
        output_partition_graphs=True), run_metadata=metadata)
  sends = sorted(node.input[0] for partition in metadata.partition_graphs
                 for node in partition.node if node.op == "_Send")
  return values, sends, graph


def test_no_transfers_beyond_stocks():
  for optimize in (False, True):
    ours, our_sends, _ = _run(tfgrad.compat.v1.gradients, optimize)
    theirs, their_sends, _ = _run(tf.compat.v1.gradients, optimize)
    for a, b in zip(ours, theirs):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    assert len(our_sends) <= len(their_sends), (our_sends, their_sends)
    assert not [s for s in our_sends if "Const" in s], our_sends


def test_shared_constants_sit_on_their_consumers_device():
  """Each constant the gradient adds is on the device of every op that
  reads it (a constant without a device, read on both, was tfgrad's old
  form); constants are still shared within one device."""
  graph = tf.Graph()
  with graph.as_default():
    y, xs = _split_model()
    before = len(graph.get_operations())
    tfgrad.compat.v1.gradients(y, xs, colocate_gradients_with_ops=True)
    consts = [op for op in graph.get_operations()[before:]
              if op.type == "Const"]
  assert consts
  for op in consts:
    consumers = {c.device for c in op.outputs[0].consumers()}
    assert consumers == {op.device}, (op.name, op.device, consumers)
  by_device = {}
  for op in consts:
    value = tf.make_ndarray(op.get_attr("value")).tobytes()
    key = (op.device, op.get_attr("dtype"), value)
    assert key not in by_device, (op.name, by_device.get(key))
    by_device[key] = op.name


def test_without_colocation_constants_follow_the_callers_device_scope():
  graph = tf.Graph()
  with graph.as_default():
    y, xs = _split_model()
    before = len(graph.get_operations())
    with tf.device("/cpu:1"):
      grads = tfgrad.compat.v1.gradients(y, xs)
    added = graph.get_operations()[before:]
    theirs = tf.compat.v1.gradients(y, xs)
    init = tf.compat.v1.global_variables_initializer()
  assert {op.device for op in added if op.type == "Const"} == {
      "/device:CPU:1"}
  with tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(
      **_TWO_CPUS)) as sess:
    sess.run(init)
    for a, b in zip(*sess.run((grads, theirs))):
      np.testing.assert_allclose(a, b, rtol=1e-6)
