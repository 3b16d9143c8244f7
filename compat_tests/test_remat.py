"""Memory-saving gradients (`checkpoints=`): every mode against stock
`tf.gradients` on the same graph, in a tf.Graph with a Session and inside
a tf.function; kept sets of small hand-checked graphs; random ops; bad
input."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import differential


def _mlp(depth=6, width=8, batch=4):
  rng = np.random.RandomState(0)
  h = tf.constant(rng.randn(batch, width).astype(np.float32), name="data")
  ws = []
  for i in range(depth):
    w = differential.variable(rng.randn(width, width) / np.sqrt(width))
    b = differential.variable(rng.randn(width) * 0.1)
    ws += [w, b]
    h = tf.nn.tanh(tf.nn.bias_add(tf.matmul(h, w), b), name=f"act_{i}")
  return [tf.reduce_sum(h * h)], ws


def _convnet(blocks=3):
  rng = np.random.RandomState(1)
  h = tf.constant(rng.randn(2, 6, 6, 4).astype(np.float32))
  ws = []
  for _ in range(blocks):
    w = differential.variable(rng.randn(3, 3, 4, 4) * 0.2)
    ws.append(w)
    r = tf.nn.relu(tf.nn.conv2d(h, w, 1, "SAME"))
    h = h + r  # residual
  return [tf.reduce_mean(tf.square(h))], ws


def _attention():
  rng = np.random.RandomState(2)
  emb = differential.variable(rng.randn(10, 8) * 0.3)
  tokens = tf.compat.v1.placeholder_with_default([[1, 2, 3, 4], [5, 6, 7, 1]],
                                                 [2, 4])
  h = tf.gather(emb, tokens)  # IndexedSlices gradient for emb
  ws = [emb]
  for _ in range(2):
    wq = differential.variable(rng.randn(8, 8) * 0.3)
    wv = differential.variable(rng.randn(8, 8) * 0.3)
    ws += [wq, wv]
    q = tf.einsum("bsd,de->bse", h, wq)
    v = tf.einsum("bsd,de->bse", h, wv)
    p = tf.nn.softmax(tf.matmul(q, q, transpose_b=True))
    h = h + tf.matmul(p, v)
  return [tf.reduce_sum(tf.sin(h))], ws


def _with_cond():
  rng = np.random.RandomState(3)
  w = differential.variable(rng.randn(4, 4) * 0.5)
  h = tf.constant(rng.randn(3, 4).astype(np.float32))
  h = tf.tanh(h @ w)
  h = tf.cond(tf.reduce_sum(h) > -100.0, lambda: tf.sin(h) * h,
              lambda: tf.cos(h))
  h = tf.tanh(h @ w)
  return [tf.reduce_sum(h)], [w]


def _with_call():
  rng = np.random.RandomState(4)
  w = differential.variable(rng.randn(4, 4) * 0.5)

  @tf.function
  def layer(h, w):
    return tf.tanh(h @ w)

  h = tf.constant(rng.randn(3, 4).astype(np.float32))
  for _ in range(3):
    h = tf.tanh(layer(h, w))
  return [tf.reduce_sum(h)], [w]


MODELS = {"mlp": _mlp, "convnet": _convnet, "attention": _attention,
          "cond": _with_cond, "call": _with_call}
MODES = ["memory", "speed", "budget", "list"]


def _mode(mode, ys, xs):
  if mode == "budget":
    est = tfgrad.explain_checkpoints(ys, xs, checkpoints="memory")
    plain = est["estimated_peak_plain"]
    return tfgrad.MemoryBudget((est["estimated_peak"] + plain) // 2)
  if mode == "list":
    return [t for t in _tensors(ys[0].graph) if t.op.type in (
        "Tanh", "Relu", "AddV2", "BatchMatMulV2")][1:3]
  return mode


def _tensors(graph):
  return [op.outputs[0] for op in graph.get_operations() if op.outputs]


def _checkpointed(build, mode):
  def built():
    ys, xs = build()
    return ys, xs, _mode(mode, ys, xs)
  return built


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("mode", MODES)
def test_values_match_stock_in_graph(model, mode):
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = MODELS[model]()
    ours = tfgrad.gradients(ys, xs, checkpoints=_mode(mode, ys, xs))
    theirs = tf.gradients(ys, xs)
    copies = [op for op in graph.get_operations()
              if op.name.endswith("_remat")]
    mine, stock = differential.values_in_session(ours, theirs)
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)
  if mode == "list" or (mode == "memory" and model in ("mlp", "convnet")):
    assert copies, "nothing was recomputed"


@pytest.mark.parametrize("model", ["mlp", "attention", "cond"])
@pytest.mark.parametrize("mode", ["memory", "speed", "list"])
def test_values_match_stock_in_function(model, mode):
  differential.in_function(
      MODELS[model], rtol=1e-5,
      engine=lambda ys, xs: tfgrad.gradients(
          ys, xs, checkpoints=_mode(mode, ys, xs)))


def test_v1_entry_point_and_indexed_slices_stay_sparse():
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _attention()
    ours = tfgrad.compat.v1.gradients(ys, xs, checkpoints="memory",
                                      colocate_gradients_with_ops=True)
    theirs = tf.compat.v1.gradients(ys, xs, colocate_gradients_with_ops=True)
    assert isinstance(ours[0], tf.IndexedSlices)
    mine, stock = differential.values_in_session(ours, theirs)
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)


def _chain():
  """x -> 8 x (MatMul, Tanh) -> sum, every tensor on one chain."""
  w = tf.compat.v1.placeholder_with_default(np.eye(4, dtype=np.float32),
                                            [4, 4], name="w")
  h = tf.constant(np.ones([2, 4], np.float32), name="h0")
  for i in range(8):
    h = tf.tanh(tf.matmul(h, w, name=f"mm{i}"), name=f"t{i}")
  return tf.reduce_sum(h, name="loss"), w


def test_kept_sets_of_a_chain():
  with tf.Graph().as_default():
    loss, w = _chain()
    speed = tfgrad.explain_checkpoints(loss, w, checkpoints="speed")
    assert speed["kept"] == [f"mm{i}:0" for i in range(8)]
    listed = tfgrad.explain_checkpoints(
        loss, w, checkpoints=[tf.compat.v1.get_default_graph()
                              .get_tensor_by_name("t3:0")])
    assert listed["kept"] == ["t3:0"]
    # The segment of t3 recomputes mm0..t3 (the first MatMul from h0, w).
    (name, ops), = listed["segments"]
    assert name == "t3:0"
    assert ops == [f"{k}{i}" for i in range(4) for k in ("mm", "t")]
    memory = tfgrad.explain_checkpoints(loss, w, checkpoints="memory")
    # 8 tensors some gradient reads (the Tanh outputs: MatMul's gradient
    # reads its inputs, Tanh's its output), one size: about sqrt(8) kept.
    assert 1 <= len(memory["kept"]) <= 4
    assert memory["estimated_peak"] < memory["estimated_peak_plain"]


# The estimate on _chain, by hand. Every tensor is 2 x 4 float32 = 32
# bytes; w is the x (no weights, no weight gradients). Forward order:
# mm0 t0 mm1 t1 ... mm7 t7 loss. Saved (read by a gradient): t0..t7
# (Tanh reads its output, MatMul its inputs); MatMul outputs are not.
# Fixed part: 3 x 32 (tensors in flight). A recomputed segment's turn
# holds 3 x 32 more. FLOPs: MatMul 2 x 8 x 4 = 64, Tanh 8.
_CHAIN_PLAIN = 96 + 8 * 32  # every Tanh output saved, one segment


def test_estimate_of_a_chain_by_hand():
  with tf.Graph().as_default() as graph:
    loss, w = _chain()
    t3 = graph.get_tensor_by_name("t3:0")
    listed = tfgrad.explain_checkpoints(loss, w, checkpoints=[t3])
    assert listed["estimated_peak_plain"] == _CHAIN_PLAIN
    # Segment mm0..t3: t0..t3 + 3 x 32 held = 224; top t4..loss with t3
    # kept: 32 + 4 x 32 = 160. Recompute: 4 x (64 + 8).
    assert listed["estimated_peak"] == 96 + 224
    assert listed["recompute_flops"] == 4 * (64 + 8)


def test_kept_matmul_output_is_not_recomputed():
  """Keeping mm2 (no gradient reads it) rather than t1: mm2's copy is
  built but never run, so the segment recomputes two layers, as t1's
  would, and its tie-break is the MatMul's FLOPs left out."""
  with tf.Graph().as_default() as graph:
    loss, w = _chain()
    memory = tfgrad.explain_checkpoints(loss, w, checkpoints="memory")
    assert memory["kept"] == ["mm2:0"]
    # Segment mm0..mm2: t0, t1 + 96 held = 160; top: mm2 + t2..t7 = 224.
    assert memory["estimated_peak"] == 96 + 224
    assert memory["recompute_flops"] == 2 * (64 + 8)
    # A budget the one-checkpoint schedules miss: two kept tensors.
    tight = tfgrad.explain_checkpoints(loss, w,
                                       checkpoints=tfgrad.MemoryBudget(300))
    assert tight["kept"] == ["mm2:0", "mm4:0"]
    assert tight["estimated_peak"] <= 300
    grads = tfgrad.gradients(loss, w, checkpoints="memory")
    with tf.compat.v1.Session() as sess:
      metadata = tf.compat.v1.RunMetadata()
      # Fed, w keeps the graph from being folded to constants.
      sess.run(grads, feed_dict={w: np.eye(4)},
               options=tf.compat.v1.RunOptions(
                   trace_level=tf.compat.v1.RunOptions.FULL_TRACE),
               run_metadata=metadata)
    ran = {n.node_name for d in metadata.step_stats.dev_stats
           for n in d.node_stats}
    built = {op.name for op in graph.get_operations()
             if op.name.endswith("_remat")}
    assert built >= {"mm2_remat", "t1_remat"}
    assert "t1_remat" in ran and "mm2_remat" not in ran


def test_a_kept_tanh_is_read_by_its_gradient_not_recomputed():
  """Keeping t2 (a Tanh output, which Tanh's gradient reads): the
  gradient reads the kept t2, so neither t2's copy nor mm2's (read only
  by it) runs; the values are stock's."""
  with tf.Graph().as_default() as graph:
    loss, w = _chain()
    t2 = graph.get_tensor_by_name("t2:0")
    ours = tfgrad.gradients(loss, w, checkpoints=[t2])
    theirs = tf.gradients(loss, w)
    tanh_grad = graph.get_operation_by_name("gradients/t2_remat_grad/TanhGrad")
    assert t2 in tanh_grad.inputs
    assert not graph.get_tensor_by_name("t2_remat:0").consumers()
    with tf.compat.v1.Session() as sess:
      metadata = tf.compat.v1.RunMetadata()
      mine, stock = sess.run((ours, theirs), feed_dict={w: np.eye(4) * 0.9},
                             options=tf.compat.v1.RunOptions(
                                 trace_level=tf.compat.v1.RunOptions.FULL_TRACE),
                             run_metadata=metadata)
  ran = {n.node_name for d in metadata.step_stats.dev_stats
         for n in d.node_stats}
  assert "t1_remat" in ran
  assert "t2_remat" not in ran and "mm2_remat" not in ran
  np.testing.assert_allclose(mine[0], stock[0], rtol=1e-6)


def _residual_relu_net(blocks=12):
  """conv-relu-conv blocks added to the stream, Relu after the sum (the
  ResNet of tools/remat_bench.py, small)."""
  rng = np.random.RandomState(5)
  h = tf.constant(rng.randn(2, 6, 6, 4).astype(np.float32))
  ws = []
  for i in range(blocks):
    a = differential.variable(rng.randn(3, 3, 4, 4) * 0.2)
    b = differential.variable(rng.randn(3, 3, 4, 4) * 0.2)
    ws += [a, b]
    r = tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(h, a, 1, "SAME")), b, 1, "SAME")
    h = tf.nn.relu(h + r, name=f"out{i}")
  return [tf.reduce_mean(tf.square(h))], ws


def test_residual_net_keeps_the_sums_not_the_relus():
  """A kept residual sum spares its segment the convolution before it
  (no gradient reads the sum or that convolution's output); the Relu
  after it would not. Values stay stock's."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _residual_relu_net()
    memory = tfgrad.explain_checkpoints(ys, xs, checkpoints="memory")
    kept_types = {graph.get_tensor_by_name(n).op.type
                  for n in memory["kept"]}
    assert kept_types == {"AddV2"}, memory["kept"]
    ours = tfgrad.gradients(ys, xs, checkpoints="memory")
    theirs = tf.gradients(ys, xs)
    mine, stock = differential.values_in_session(ours, theirs)
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)


_MEASURE = r"""
import json, os, statistics, sys
sys.path.insert(0, os.getcwd())
from absl import flags
import tfgrad
from tools import remat_bench
flags.FLAGS(["measure"])
sizes = dict(blocks=12, batch=8, size=8, channels=16)
plain = remat_bench._build("resnet", "plain", sizes)
memory = remat_bench._build("resnet", "memory", sizes)
budget = tfgrad.MemoryBudget((plain["estimate"] + memory["estimate"]) // 2)
built = dict(plain=plain, memory=memory,
             budget=remat_bench._build("resnet", budget, sizes))
stats = remat_bench._measure(built, 3)
print(json.dumps({e: dict(estimate=b["estimate"],
                          peak=statistics.median(stats[e]["peak"]))
                  for e, b in built.items()} | {"budget": dict(
    estimate=built["budget"]["estimate"], bytes=budget.bytes,
    peak=statistics.median(stats["budget"]["peak"]))}))
"""


def test_estimate_against_the_allocators_peak():
  """The small ResNet of tools/remat_bench.py (--quick sizes), measured
  as the bench does (TF's BFC allocator, in a fresh process so that it
  is on): the measured peak is within 15% of the estimate for
  the plain pass, "memory" and a budget, and a budget's measured peak
  within 1.1 x the budget."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true",
             TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", _MEASURE], cwd=root, env=env,
                       capture_output=True, text=True, check=True).stdout
  result = json.loads(out.strip().splitlines()[-1])
  for engine, r in result.items():
    assert 0.85 <= r["peak"] / r["estimate"] <= 1.15, (engine, r)
  assert result["budget"]["peak"] <= 1.1 * result["budget"]["bytes"]


def test_recomputation_waits_for_the_gradient():
  with tf.Graph().as_default() as graph:
    loss, w = _chain()
    t3 = graph.get_tensor_by_name("t3:0")
    tfgrad.gradients(loss, w, checkpoints=[t3])
    first = graph.get_operation_by_name("mm0_remat")
    # It reads what mm0 reads (h0, and w) and waits for the gradient of
    # t3, computed from the top segment's ops alone.
    assert [t.op.name for t in first.inputs] == ["h0", "w"]
    assert first.control_inputs, "the recomputation does not wait"
    t3_remat = graph.get_operation_by_name("t3_remat")
    assert t3_remat.type == "Tanh"
    (wait,) = first.control_inputs
    assert not _upstream(wait, {op for op in graph.get_operations()
                                if op.name.endswith("_remat")})
    # The copy of t3, not t3, gets the gradient: t3's rule is not run; the
    # copy's rule reads the kept t3 (its TanhGrad reads the op's output).
    consumers = {c.name for c in t3.consumers()}
    assert any("t3_remat_grad" in n for n in consumers), consumers
    assert not t3_remat.outputs[0].consumers()
    assert not any(n.startswith("gradients/t3_grad")
                   for n in (op.name for op in graph.get_operations()))


def _upstream(op, targets):
  """Whether some op of `targets` is among `op`'s ancestors (data and
  control inputs)."""
  seen, stack = set(), [op]
  while stack:
    cur = stack.pop()
    if cur in targets:
      return True
    for dep in list(cur.control_inputs) + [t.op for t in cur.inputs]:
      if dep not in seen:
        seen.add(dep)
        stack.append(dep)
  return False


def test_random_ops_are_not_recomputed_differently():
  rng = np.random.RandomState(5)

  @tf.function
  def noisy(h):  # a stateful call between xs and ys
    return h * tf.random.uniform(tf.shape(h))

  with tf.Graph().as_default() as graph:
    w = tf.Variable(rng.randn(4, 4).astype(np.float32) * 0.5)
    h = tf.constant(rng.randn(3, 4).astype(np.float32))
    for _ in range(3):
      h = tf.nn.dropout(tf.tanh(h @ w), rate=0.5)
      h = noisy(h)
    loss = tf.reduce_sum(h * h)
    ours = tfgrad.gradients(loss, [w], checkpoints="memory")
    listed = tfgrad.gradients(loss, [w], checkpoints=[
        t for t in _tensors(graph) if t.op.type == "Tanh"][:2])
    theirs = tf.gradients(loss, [w])
    for op in graph.get_operations():
      if op.name.endswith("_remat"):
        assert not op.op_def.is_stateful or op.type == "ReadVariableOp", op
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for _ in range(3):  # one run draws once, for all three gradients
        a, b, c = sess.run([ours[0], listed[0], theirs[0]])
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6)


def test_stateless_random_ops_are_recomputed_with_their_seeds():
  with tf.Graph().as_default() as graph:
    w = tf.Variable(np.eye(4, dtype=np.float32))
    h = tf.tanh(tf.ones([3, 4]) @ w)
    noise = tf.random.stateless_uniform([3, 4], seed=[1, 2]) * h
    h2 = tf.tanh(noise @ w, name="after")
    loss = tf.reduce_sum(tf.tanh(h2 @ w))
    ours = tfgrad.gradients(loss, [w], checkpoints=[h2])
    theirs = tf.gradients(loss, [w])
    assert any(op.name.endswith("_remat") for op in graph.get_operations())
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      a, b = sess.run([ours[0], theirs[0]])
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_none_pattern_and_unconnected_zero_match_stock():
  with tf.Graph().as_default():
    loss, w = _chain()
    other = tf.Variable(1.0)
    for unconnected in ("none", "zero"):
      ours = tfgrad.gradients(loss, [w, other], checkpoints="memory",
                              unconnected_gradients=unconnected)
      theirs = tf.gradients(loss, [w, other],
                            unconnected_gradients=unconnected)
      assert [g is None for g in ours] == [g is None for g in theirs]


@pytest.mark.parametrize("mode", ["memory", "speed", "budget"])
def test_a_data_x_is_checkpointed_like_data(mode):
  """Asking for the input batch's gradient as well as the weights' (an
  x that is not a variable) leaves the activations it feeds to be kept or
  recomputed as without it: the same kept set, values equal to stock's."""
  graph = tf.Graph()
  with graph.as_default():
    ys, ws = _mlp()
    data = graph.get_tensor_by_name("data:0")
    checkpoints = _mode(mode, ys, ws)
    weights_only = tfgrad.explain_checkpoints(ys, ws, checkpoints=checkpoints)
    with_data = tfgrad.explain_checkpoints(ys, [data] + ws,
                                           checkpoints=checkpoints)
    assert with_data["kept"] == weights_only["kept"]
    assert with_data["segments"] == weights_only["segments"]
    ours = tfgrad.gradients(ys, [data] + ws, checkpoints=checkpoints)
    theirs = tf.gradients(ys, [data] + ws)
    mine, stock = differential.values_in_session(ours, theirs)
  differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)
  if mode == "memory":
    assert with_data["segments"], "nothing is recomputed"


def _mlp_with_data_x():
  ys, ws = _mlp()
  data = tf.compat.v1.get_default_graph().get_tensor_by_name("data:0")
  return ys, [data] + ws


@pytest.mark.parametrize("mode", ["memory", "speed"])
def test_a_data_x_in_a_function_matches_stock(mode):
  differential.in_function(
      _mlp_with_data_x, rtol=1e-5,
      engine=lambda ys, xs: tfgrad.gradients(ys, xs, checkpoints=mode))


def _ragged_mlp(depth=6, width=8):
  """Ragged rows of data scaled by a ragged x of the same row lengths,
  through a tanh MLP: the loss is ragged per row (a composite y), the xs
  are the ragged scale (a composite x) and the weights."""
  rng = np.random.RandomState(4)
  splits = [0, 2, 5]
  rows = tf.RaggedTensor.from_row_splits(
      tf.constant(rng.randn(5, width).astype(np.float32), name="data"),
      splits)
  scale = tf.RaggedTensor.from_row_splits(
      tf.constant(rng.rand(5, width).astype(np.float32) + 0.5), splits)
  h, ws = rows * scale, []
  for _ in range(depth):
    w = differential.variable(rng.randn(width, width) / np.sqrt(width))
    ws.append(w)
    h = tf.ragged.map_flat_values(lambda v, w=w: tf.nn.tanh(tf.matmul(v, w)),
                                  h)
  return [h * h], [scale] + ws


@pytest.mark.parametrize("mode", ["memory", "speed", "list"])
def test_composite_ys_and_xs_are_checkpointed_as_their_components(mode):
  """Ragged ys and xs: the gradient has stock's types and values, and the
  recomputation happens (the components go through the segment pass)."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _ragged_mlp()
    checkpoints = mode if mode != "list" else [
        t for t in _tensors(graph) if t.op.type == "Tanh"][1:2]
    ours = tfgrad.gradients(ys, xs, checkpoints=checkpoints)
    theirs = tf.gradients(ys, xs)
    assert [type(g) for g in ours] == [type(g) for g in theirs]
    assert isinstance(ours[0], tf.RaggedTensor)
    copies = [op for op in graph.get_operations()
              if op.name.endswith("_remat")]
    explained = tfgrad.explain_checkpoints(ys, xs, checkpoints=checkpoints)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      mine, stock = sess.run((ours, theirs))
  np.testing.assert_allclose(mine[0].flat_values, stock[0].flat_values,
                             rtol=1e-5)
  np.testing.assert_array_equal(mine[0].row_splits, stock[0].row_splits)
  for g, h in zip(mine[1:], stock[1:]):
    np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-7)
  if mode != "speed":
    assert copies, "nothing was recomputed"
    assert explained["segments"]


def test_composite_ys_and_xs_in_a_function_match_stock():
  structure = {}

  @tf.function
  def run():
    differential.rewind_variables()
    ys, xs = _ragged_mlp()
    ours = tfgrad.gradients(ys, xs, checkpoints="memory")
    theirs = tf.gradients(ys, xs)
    structure["types"] = ([type(g) for g in ours], [type(g) for g in theirs])
    structure["copies"] = [op.name for op in ys[0].flat_values.graph
                           .get_operations() if op.name.endswith("_remat")]
    return ([ours[0].flat_values, ours[0].row_splits] + ours[1:],
            [theirs[0].flat_values, theirs[0].row_splits] + theirs[1:])

  with differential.variables_kept_across_traces():
    mine, stock = run()
  assert structure["types"][0] == structure["types"][1]
  assert structure["copies"], "nothing was recomputed"
  for g, h in zip(mine, stock):
    np.testing.assert_allclose(g.numpy(), h.numpy(), rtol=1e-5, atol=1e-7)


def test_installed_default_covers_composite_ys_and_xs():
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _ragged_mlp()
    with tfgrad.installed(checkpoints="memory"):
      ours = tfgrad.gradients(ys, xs)
    assert [op for op in graph.get_operations()
            if op.name.endswith("_remat")]
    theirs = tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      mine, stock = sess.run((ours, theirs))
  np.testing.assert_allclose(mine[0].flat_values, stock[0].flat_values,
                             rtol=1e-5)
  for g, h in zip(mine[1:], stock[1:]):
    np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-7)


def test_v1_control_flow_gets_the_plain_gradient_and_says_so(caplog):
  """A v1 while loop between xs and ys: the gradient is the plain pass's
  (values as stock's), with a warning naming why; explain_checkpoints
  raises NotImplementedError with the same reason."""
  tf.compat.v1.disable_control_flow_v2()
  try:
    graph = tf.Graph()
    with graph.as_default():
      ys, xs = _mlp(depth=2)
      w = xs[0]
      loss = tf.compat.v1.while_loop(
          lambda i, h: i < 3, lambda i, h: (i + 1, tf.tanh(h) * 0.5),
          [0, ys[0]])[1] + tf.reduce_sum(w)
      with caplog.at_level("WARNING"):
        ours = tfgrad.gradients(loss, xs, checkpoints="memory")
      assert "v1 control flow" in caplog.text
      assert "checkpoints='memory' does not apply" in caplog.text
      with pytest.raises(NotImplementedError, match="v1 control flow"):
        tfgrad.explain_checkpoints(loss, xs, checkpoints="memory")
      theirs = tf.gradients(loss, xs)
      mine, stock = differential.values_in_session(ours, theirs)
    differential.assert_same(ours, theirs, mine, stock, rtol=1e-5)
  finally:
    tf.compat.v1.enable_control_flow_v2()


def test_bad_checkpoints_value():
  with tf.Graph().as_default():
    loss, w = _chain()
    with pytest.raises(ValueError, match="memory.*speed.*MemoryBudget"):
      tfgrad.gradients(loss, w, checkpoints="fast")
    with pytest.raises(ValueError, match="MemoryBudget"):
      tfgrad.MemoryBudget(-3)


def test_listed_tensor_not_between_xs_and_ys():
  with tf.Graph().as_default() as graph:
    loss, w = _chain()
    h0 = graph.get_tensor_by_name("h0:0")
    with pytest.raises(ValueError, match=r"checkpoints\[1\] \(h0:0\)"):
      tfgrad.gradients(loss, w, checkpoints=[
          graph.get_tensor_by_name("t2:0"), h0])


def test_budget_below_smallest_schedule_says_how_small():
  with tf.Graph().as_default():
    loss, w = _chain()
    with pytest.raises(ValueError, match=r"smallest feasible.*estimated "
                                         r"peak is \d+ bytes"):
      tfgrad.gradients(loss, w, checkpoints=tfgrad.MemoryBudget(10))


def test_generous_budget_is_the_plain_gradient():
  with tf.Graph().as_default() as graph:
    loss, w = _chain()
    before = len(graph.get_operations())
    tfgrad.gradients(loss, w, checkpoints=tfgrad.MemoryBudget(10 ** 9))
    with_budget = len(graph.get_operations()) - before
    before = len(graph.get_operations())
    tfgrad.gradients(loss, w)
    assert with_budget == len(graph.get_operations()) - before


def test_copies_keep_device_colocation_and_inputs_grouping():
  with tf.Graph().as_default() as graph:
    rng = np.random.RandomState(7)
    w = differential.variable(rng.randn(4, 4) * 0.5)
    h0 = tf.constant(rng.randn(3, 4).astype(np.float32), name="h0")
    with tf.device("/device:CPU:0"):
      a = tf.tanh(tf.matmul(h0, w), name="on_cpu")
    with tf.compat.v1.colocate_with(a.op):
      b = tf.sin(a, name="colocated")
    c = tf.concat([a, b, a * b], axis=1, name="joined")  # a list input
    d = tf.tanh(c, name="d")
    loss = tf.reduce_sum(tf.tanh(tf.matmul(d, tf.ones([12, 2]))))
    ours = tfgrad.gradients(loss, [w], checkpoints=[d])
    theirs = tf.gradients(loss, [w])
    for name in ("on_cpu", "colocated", "joined"):
      op, copy = (graph.get_operation_by_name(name),
                  graph.get_operation_by_name(name + "_remat"))
      assert copy.type == op.type and copy.device == op.device
      # An explicit colocation is copied; otherwise each is its own group.
      if name == "colocated":
        assert copy.colocation_groups() == op.colocation_groups() == [
            b"loc:@on_cpu"]
      else:
        assert copy.colocation_groups() == [f"loc:@{name}_remat".encode()]
      assert len(copy.inputs) == len(op.inputs)
    assert graph.get_operation_by_name("on_cpu_remat").device
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      np.testing.assert_allclose(*sess.run((ours, theirs)), rtol=1e-5)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("mode", ["memory", "speed"])
def test_one_engine_pass_and_every_recomputation_waits(model, mode,
                                                       monkeypatch):
  """All segments are differentiated in one engine call; each copy that
  reads no other copy waits (control inputs) for a gradient (its
  segment's incoming one, read by gradient ops), which does not depend on
  the waiting copy."""
  from tfgrad import api  # pylint: disable=g-import-not-at-top
  calls = []
  real = api.gradients_helper

  def counting(*args, **kwargs):
    calls.append(kwargs.get("redirect") is not None)
    return real(*args, **kwargs)

  with tf.Graph().as_default() as graph:
    ys, xs = MODELS[model]()
    before = set(graph.get_operations())
    monkeypatch.setattr(api, "gradients_helper", counting)
    tfgrad.gradients(ys, xs, checkpoints=mode)
    monkeypatch.setattr(api, "gradients_helper", real)
    copies = {op for op in graph.get_operations()
              if op not in before and op.name.endswith("_remat")}
    # Conds and calls (their bodies) are differentiated by calls of their
    # own; the checkpointing pass itself is one.
    assert calls[0] and calls.count(True) == 1, calls
    for op in copies:
      if any(t.op in copies for t in op.inputs):
        continue
      assert op.control_inputs, f"{op.name} does not wait"
      for wait in op.control_inputs:
        assert wait.name.startswith("gradients"), (op.name, wait.name)
        assert not _upstream(wait, {op}), (op.name, wait.name)
        readers = {c.name for out in wait.outputs for c in out.consumers()}
        assert readers and all(n.startswith("gradients") for n in readers), (
            wait.name, readers)


def _reference_chain(data_bytes, pos, costs, limit):
  """The chain DP by its definition (all predecessors tried)."""
  n, inf = len(pos), (float("inf"), 0)
  best, prev = [inf] * n, [-1] * n
  start = lambda i: 0 if i < 0 else pos[i] + 1  # noqa: E731
  for j in range(n):
    if data_bytes[pos[j]] - data_bytes[0] <= limit:
      best[j] = costs[j]
    for i in range(j):
      if best[i][0] == float("inf") or \
          data_bytes[pos[j]] - data_bytes[start(i)] > limit:
        continue
      c = (best[i][0] + costs[j][0], best[i][1] + costs[j][1])
      if c < best[j]:
        best[j], prev[j] = c, i
  total = data_bytes[-1]
  if total <= limit:
    return []
  ends = [j for j in range(n) if best[j][0] < float("inf")
          and total - data_bytes[pos[j] + 1] <= limit]
  if not ends:
    return None
  j, chosen = min(ends, key=lambda j: best[j]), []
  while j >= 0:
    chosen.append(j)
    j = prev[j]
  return chosen[::-1]


def test_chain_program_matches_its_definition():
  """The DP's windowed queue gives the choices of trying every
  predecessor, ties included (equal sizes and FLOPs are common)."""
  import types  # pylint: disable=g-import-not-at-top
  from tfgrad import remat_select  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(7)
  for trial in range(200):
    n_ops = rng.randint(1, 40)
    sizes = rng.choice([1, 2, 4, 8], size=n_ops)
    data_bytes = [0] + list(np.cumsum(sizes))
    pos = sorted(rng.choice(n_ops, size=rng.randint(1, n_ops + 1),
                            replace=False))
    ops = [type("Op", (), {})() for _ in range(n_ops)]
    cands = [types.SimpleNamespace(op=ops[p]) for p in pos]
    costs = [(int(rng.choice([1, 2, 4])), -int(rng.choice([0, 5])))
             for _ in pos]
    by_id = {id(c): cost for c, cost in zip(cands, costs)}
    fwd = types.SimpleNamespace(
        pos={op: i for i, op in enumerate(ops)},
        prefix=(data_bytes, None, None),
        bytes_of=lambda t: by_id[id(t)][0],
        unrun_flops_of=lambda t: -by_id[id(t)][1])
    for limit in sorted({1, 3, 8, 20, int(data_bytes[-1])}):
      got = remat_select._chain(fwd, cands, limit)  # pylint: disable=protected-access
      want = _reference_chain(data_bytes, pos, costs, limit)
      got = None if got is None else [cands.index(t) for t in got]
      assert got == want, (trial, limit)
