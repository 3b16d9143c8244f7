"""The ops tfgrad's fast path builds, checked one by one on every bench model.

Each bench model (small sizes) is built with its ops spread over two
logical CPU devices, and differentiated under a name scope with
`colocate_gradients_with_ops` and `gate_gradients`, by tfgrad and by stock
TF on twin graphs. Every op tfgrad adds is checked: its name is under the
scope; an op built for a forward op's rule (`<forward op>_grad/...`) has
that op's device and `_class` colocation groups, and a constant shared by
rules sits on the device of every op reading it; gradients leave a rule's
scope only through its gate (TF's `tuple`: Identity ops with the gate's
NoOp as a control input) when the rule returned more than one; the graph
imports from its GraphDef and runs in a Session, and the same model and
gradient run inside a tf.function; all values equal stock's.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from tfgrad.cli import models

try:  # a second logical CPU for tf.function runs (before TF's runtime starts)
  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices("CPU")[0],
      [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:
  pass  # already started by another test module: soft placement applies

SCOPE = "outer"
NAME = "grads"
PREFIX = f"{SCOPE}/{NAME}/"
DEVICES = ("/device:CPU:0", "/device:CPU:1")

MODELS = {
    "mlp": dict(depth=3, width=8, batch=4),
    "cnn": dict(batch=2, size=8, channels=4),
    "transformer": dict(blocks=1, batch=2, seq=4, d_model=8, heads=2),
    "embedding": dict(vocab=50, dim=8, batch=4, bag=3),
    "fanout": dict(n=6, size=4),
    "many_ys": dict(n_ys=5, n_xs=4, size=3),
    "while_rnn": dict(steps=3, batch=2, hidden=4, features=3),
    "nested_function": dict(depth=2, width=4, batch=3),
}

def _placer(model):
  """A device function spreading the model over both devices: op by op,
  except for the while-loop RNN, whose loop stays on one device and its
  head on the other (with the loop's inputs spread op by op, stock TF's
  own While gradient, which tfgrad runs too, colocates a VariableShape
  with a constant of the other device, and no Session can run it)."""
  if model == "while_rnn":
    return lambda op: DEVICES[op.name.startswith("head")]
  alternate = itertools.cycle(DEVICES)
  return lambda op: next(alternate)


_SESSION_CONFIG = tf.compat.v1.ConfigProto(device_count={"CPU": 2},
                                           allow_soft_placement=False)


def _build(model, engine):
  """(graph, ys, xs, grads, ops added by the gradient call)."""
  graph = tf.Graph()
  with graph.as_default():
    with graph.device(_placer(model)):
      ys, xs = models.build(model, **MODELS[model])
    before = len(graph.get_operations())
    with tf.name_scope(SCOPE):
      grads = engine(ys, xs, name=NAME, colocate_gradients_with_ops=True,
                     gate_gradients=True)
    added = graph.get_operations()[before:]
  return graph, ys, xs, grads, added


def _fetches(grads):
  out = []
  for g in grads:
    if isinstance(g, tf.IndexedSlices):
      out.append(tf.convert_to_tensor(g))
    else:
      out.append(g)
  return out


def _values(graph, grads, fetch_names=None):
  """Gradient values from a Session on two CPUs (variables initialised)."""
  with graph.as_default():
    init = tf.compat.v1.global_variables_initializer()
    fetches = _fetches(grads)
  with tf.compat.v1.Session(graph=graph, config=_SESSION_CONFIG) as sess:
    sess.run(init)
    return sess.run(fetches)


def _forward_op(graph, op):
  """The forward op whose rule built `op` (None for ops built outside a
  rule: sums of gradients, gates' NoOps outside, the seed)."""
  parts = op.name[len(PREFIX):].split("/")
  for i in range(len(parts), 0, -1):
    head = "/".join(parts[:i])
    if head.endswith("_grad"):
      break
  else:
    return None
  try:
    return graph.get_operation_by_name(head[:-len("_grad")])
  except KeyError:
    return None


def _gate_of(op):
  """The gate NoOp of `op`'s rule scope, if `op` is one of a gate's
  Identity outputs."""
  if op.type != "Identity" or "/tuple/control_dependency" not in op.name:
    return None
  gates = [c for c in op.control_inputs if c.type == "NoOp"
           and c.name.endswith("/tuple/group_deps")]
  return gates[0] if gates else None


def _check_added_ops(graph, grads, added, stock_gates):
  grad_tensors = {t.name for t in _fetches_no_convert(grads)}
  checked = 0
  for op in added:
    assert op.name.startswith(PREFIX), op.name
    fwd = _forward_op(graph, op)
    if op.type == "Const" and not op.colocation_groups() == (
        fwd.colocation_groups() if fwd is not None else None):
      # a constant shared by rules: on the device of all its readers
      readers = {c.device for c in op.outputs[0].consumers()}
      assert readers <= {op.device}, (op.name, op.device, readers)
      checked += 1
      continue
    if _gate_of(op) is not None:
      # a gate's output sits with the gradient it passes on (TF's tuple)
      source = op.inputs[0].op
      assert op.device == source.device, (op.name, op.device, source.device)
      assert op.colocation_groups() == source.colocation_groups(), op.name
      checked += 1
      continue
    if fwd is None or "/tuple/" in op.name:
      continue
    assert op.device == fwd.device, (op.name, op.device, fwd.name, fwd.device)
    assert op.colocation_groups() == fwd.colocation_groups(), (
        op.name, op.colocation_groups(), fwd.colocation_groups())
    checked += 1
  # most ops belong to a forward op's rule (the rest: sums, gates, seed)
  assert checked >= len(added) // 2, (checked, len(added))
  # Gating: where a rule's scope has a gate, every gradient leaves the
  # scope through it; where stock's rule was gated and more than one
  # tensor leaves tfgrad's scope, tfgrad's is gated too.
  added_set = set(added)
  leaving, gates = {}, {}
  for op in added:
    fwd = _forward_op(graph, op)
    if fwd is None:
      continue
    scope = PREFIX + fwd.name + "_grad/"
    if op.type == "NoOp" and op.name == scope + "tuple/group_deps":
      gates[fwd.name] = op
    if op.type == "Const" or op.type == "NoOp":
      continue
    for out in op.outputs:
      outside = [c for c in out.consumers()
                 if c in added_set and not c.name.startswith(scope)]
      if outside or out.name in grad_tensors:
        leaving.setdefault(fwd.name, set()).add(out)
  for fwd_name, outs in leaving.items():
    gate = gates.get(fwd_name)
    if gate is None:
      assert len(outs) < 2 or fwd_name not in stock_gates, (
          fwd_name, sorted(t.name for t in outs))
      continue
    for out in outs:
      assert _gate_of(out.op) is gate, (fwd_name, out.name,
                                        out.op.control_inputs)


def _gated(graph):
  """Forward op names whose rule's gradients are gated in `graph`."""
  suffix = "_grad/tuple/group_deps"
  return {op.name[len(PREFIX):-len(suffix)] for op in graph.get_operations()
          if op.name.startswith(PREFIX) and op.name.endswith(suffix)}


def _fetches_no_convert(grads):
  out = []
  for g in grads:
    if isinstance(g, tf.IndexedSlices):
      out.extend([g.values, g.indices])
    elif g is not None:
      out.append(g)
  return out


def _imported_values(graph, grads):
  """Values of `grads` from a fresh graph imported from `graph`'s
  GraphDef (variables initialised through their imported initialisers)."""
  with graph.as_default():
    init = tf.compat.v1.global_variables_initializer()
    fetches = _fetches(grads)
  names = [t.name for t in fetches]
  graph_def = graph.as_graph_def()
  imported = tf.Graph()
  with imported.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
  with tf.compat.v1.Session(graph=imported, config=_SESSION_CONFIG) as sess:
    sess.run(imported.get_operation_by_name(init.name))
    return sess.run(names)


def _function_values(model, engine):
  """The model and its gradient built and run inside a tf.function
  (v1-style, so the model's variables may be created there)."""
  def step():
    with tf.compat.v1.get_default_graph().device(_placer(model)):
      ys, xs = models.build(model, **MODELS[model])
    with tf.name_scope(SCOPE):
      grads = engine(ys, xs, name=NAME, colocate_gradients_with_ops=True,
                     gate_gradients=True)
    return _fetches(grads)
  fn = tf.compat.v1.wrap_function(step, [])
  return [v.numpy() for v in fn()]


def _assert_close(ours, theirs):
  assert len(ours) == len(theirs)
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_added_op(model):
  graph, _, _, grads, added = _build(model, tfgrad.compat.v1.gradients)
  s_graph, _, _, s_grads, _ = _build(model, tf.compat.v1.gradients)
  assert added
  _check_added_ops(graph, grads, added, _gated(s_graph))
  stock = _values(s_graph, s_grads)
  _assert_close(_values(graph, grads), stock)
  _assert_close(_imported_values(graph, grads), stock)
  _assert_close(_function_values(model, tfgrad.compat.v1.gradients),
                _function_values(model, tf.compat.v1.gradients))


def test_checks_catch_a_stray_device():
  """The device check fails for a gradient op placed off its forward
  op's device (the checks can fail)."""
  graph, _, _, grads, added = _build("mlp", tfgrad.compat.v1.gradients)
  with graph.as_default():
    fwd = next(op for op in added if _forward_op(graph, op) is not None
               and op.type != "Const" and "/tuple/" not in op.name)
    fwd._set_device("/device:CPU:7")  # pylint: disable=protected-access
  with pytest.raises(AssertionError):
    _check_added_ops(graph, grads, added, set())
