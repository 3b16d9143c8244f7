"""What creating a gradient's ops alone costs: the floor under any engine
that builds the same ops from Python.

`measure(build, grad_fn)` builds a model in a fresh graph, calls `grad_fn`
once and records the ops it added (their NodeDefs) and the functions it
added to the graph's library. It then builds the model again, twice, and
creates those same ops there, timed, in two ways:

    one by one   each op through the lean C API path the engine uses for
                 its rules' ops (`tf_compat.create_op`, under the same
                 mutation lock, open C graph and stack trace as a gradient
                 call), its name, attributes and inputs already known:
                 nothing to walk, look up or decide
    batch        all of them in one TF_GraphImportGraphDef call, then a
                 Python Operation for each (`tf_compat.import_nodes`); the
                 NodeDefs are given, so what an engine would spend building
                 them is not counted

Both re-create the original ops exactly (the same NodeDefs; the tests check
it, and run the batch-made gradient). An engine's build time minus `one by
one` is what it spends deciding what to build: the walk, finding and
calling rules, the rules' own Python, handing gradients on.

Gradients whose ops read ops made after them (v1 while loops: a Merge
reads the NextIteration built later) or ops of the forward graph that the
gradient call itself changed (the accumulator outputs a While gradient adds
to the forward loop) cannot be made again in a fresh build of the model:
for those `measure` returns None, with the reason.
"""

import contextlib
import dataclasses
import gc
import time

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tfgrad import tf_compat


@dataclasses.dataclass
class Floor:
  """Microseconds per added op: `one_by_one`, `batch` (see module doc)."""
  ops: int
  one_by_one_us: float
  batch_us: float


class NotReplayable(Exception):
  """The gradient's ops cannot be made again in a fresh build."""


def record(build, grad_fn):
  """Builds `build()` -> (ys, xs) in a fresh graph and calls `grad_fn`;
  returns (GraphDef of the added nodes, GraphDef holding only the
  functions the call added, names of the forward graph's nodes)."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    before = {op.name for op in graph.get_operations()}
    functions_before = set(tf_compat.library_node_counts(graph))
    grad_fn(ys, xs)
    full = graph.as_graph_def()
  added = graph_pb2.GraphDef(versions=full.versions)
  added.node.extend(n for n in full.node if n.name not in before)
  library = graph_pb2.GraphDef(versions=full.versions)
  library.library.function.extend(
      f for f in full.library.function
      if f.signature.name not in functions_before)
  library.library.gradient.extend(full.library.gradient)
  return added, library, before


def _source(ref):
  """(op name, output index or None for a control input) of a NodeDef
  input string."""
  if ref.startswith("^"):
    return ref[1:], None
  name, _, index = ref.partition(":")
  return name, int(index) if index else 0


def _grouped(op_def, attrs, inputs):
  """`inputs` grouped by `op_def`'s arguments (list arguments as lists),
  as the C API takes them; list lengths from the NodeDef's `attrs`."""
  return tf_compat.grouped_inputs(
      op_def, inputs,
      lambda arg: (attrs[arg.number_attr].i if arg.number_attr
                   else len(attrs[arg.type_list_attr].list.type)))


def _fresh(build, library):
  """A fresh graph with the model built and the recorded functions added
  (outside any timing)."""
  graph = tf.Graph()
  with graph.as_default():
    build()
    if library.library.function:
      tf.graph_util.import_graph_def(library, name="")
  return graph


def _outside(added, forward):
  """Input strings of `added` that name forward ops, which must exist in
  a fresh build; NotReplayable if any names an op neither forward nor
  made earlier in `added`."""
  made, outside = set(), set()
  for node in added.node:
    for ref in node.input:
      name, _ = _source(ref)
      if name in made:
        continue
      if name not in forward:
        raise NotReplayable(
            f"op '{node.name}' reads '{ref}', made after it (a loop's back "
            "edge)")
      outside.add(ref)
    made.add(node.name)
  return outside


def _forward_refs(graph, outside):
  """Tensors and ops of `graph` for the forward input strings `outside`
  (NotReplayable when the gradient call had changed the forward op,
  e.g. added outputs to it)."""
  tensors, controls = {}, {}
  for ref in outside:
    name, index = _source(ref)
    op = graph.get_operation_by_name(name)
    if index is None:
      controls[name] = op
    elif index >= len(op.outputs):
      raise NotReplayable(
          f"'{ref}' is an output the gradient call added to forward op "
          f"'{name}' (op type: {op.type})")
    else:
      tensors[f"{name}:{index}"] = op.outputs[index]
  return tensors, controls


_NO_DEVICE = contextlib.nullcontext()  # stateless, so shared


def one_by_one(build, added, library, outside, clock=time.thread_time):
  """Seconds to make `added`'s ops one by one in a fresh build (see the
  module doc); returns (seconds, graph)."""
  graph = _fresh(build, library)
  tensors, controls = _forward_refs(graph, outside)
  outputs = {}  # op name -> outputs, forward and made
  for key, t in tensors.items():
    outputs.setdefault(key.rsplit(":", 1)[0], t.op.outputs)
  ops = dict(controls)
  plan, protos = [], {}
  for node in added.node:
    # one proto per distinct attribute value, serialized once, as the
    # engine's shared attributes are
    attrs = {}
    for key, value in node.attr.items():
      data = value.SerializeToString()
      attrs[key] = protos.setdefault((key, data), value)
    op_def = graph.op_def_for_type(node.op)
    plan.append((node, [_source(r) for r in node.input], attrs, op_def))
  for proto in protos.values():
    tf_compat.keep_serialized(proto)
  try:
    with graph.as_default(), tf_compat.mutation_lock(graph), \
        tf_compat.building_in(graph), tf_compat.caller_stack_trace():
      gc.collect()
      start = clock()
      for node, sources, attrs, op_def in plan:
        inputs = [outputs[name][index] for name, index in sources
                  if index is not None]
        waits = [ops[name] for name, index in sources if index is None]
        with (graph.device(node.device) if node.device
              else _NO_DEVICE):
          op = tf_compat.create_op(
              graph, node.op, inputs, attrs, op_def, node.name,
              _grouped(op_def, attrs, inputs), waits or None)
        ops[node.name] = op
        outputs[node.name] = op.outputs
      seconds = clock() - start
  finally:
    for proto in protos.values():
      tf_compat.forget_serialized(proto)
  return seconds, graph


def batch(build, added, library, outside, clock=time.thread_time):
  """Seconds to make `added`'s ops in one import (see the module doc);
  returns (seconds, graph, the Operations made)."""
  graph = _fresh(build, library)
  tensors, controls = _forward_refs(graph, outside)
  gc.collect()
  start = clock()
  made = tf_compat.import_nodes(graph, added, tensors, controls)
  seconds = clock() - start
  return seconds, graph, made


def measure(build, grad_fn, clock=time.thread_time, repeats=3):
  """`Floor` for the ops `grad_fn` adds to `build()`'s model, or
  NotReplayable. Each way is timed `repeats` times; the fastest counts
  (the floor is the least the work can cost)."""
  added, library, forward = record(build, grad_fn)
  outside = _outside(added, forward)
  n = len(added.node)
  if not n:
    raise NotReplayable("the gradient call added no op")
  best_one = min(one_by_one(build, added, library, outside, clock)[0]
                 for _ in range(repeats))
  best_batch = min(batch(build, added, library, outside, clock)[0]
                   for _ in range(repeats))
  return Floor(n, 1e6 * best_one / n, 1e6 * best_batch / n)
