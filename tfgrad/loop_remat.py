"""Loop checkpointing: the gradient of a v2 `While` in sqrt(T) memory.

The plain gradient (`while_builder`) saves every intermediate the body's
gradient reads, once per iteration: T copies, the largest memory of an
RNN. With `checkpoints` set, a loop whose gradient is needed is
differentiated in phases instead (k = ceil(sqrt(T)), T known only when the
graph runs; S = ceil(T / k) segments):

    checkpoint loop   re-runs the body T times from the loop's inputs and
                      keeps the loop state at iterations 0, k, 2k, ...
                      (one TensorList per changing loop variable, k + 1
                      slots: S <= k used, other iterations write the
                      spare one);
    reverse loop      runs over the segments, last first; for segment s:
      segment loop      re-runs its (at most k) iterations from the saved
                        state: a second While op over the checkpoint
                        loop's own functions, to which the plain builder
                        adds its per-iteration accumulators (k elements
                        each);
      gradient loop     the plain gradient loop of the segment loop, fed
                        the gradient of the state after the segment, gives
                        the gradient of the state before it, carried to the
                        segment before; it reads variables again where
                        the rules read the body's variable reads
                        (`while_builder.build(reread_variables=True)`):
                        no accumulator for them.

The forward op is not changed (no accumulators, no new outputs), so the
forward pass keeps no per-iteration state at all; the price is running
the body about twice more. Gradients of loop invariants (captured
weights) are summed over segments by the gradient loops themselves: each
starts from what the segments after it gave.

Conds, function calls and nested loops in the body (If/Case,
PartitionedCall, While) are covered: the checkpoint loop's copy of the
body runs copies of the functions they run (and of those these run),
under new names, each with a FuncGraph of its own (`_FunctionCopies`).
The cond, call and While builders rewrite the op they differentiate and
its functions to output the intermediates the gradient reads (a graph
edit, as stock's); so they rewrite the segment loop's ops and these
copies, which the checkpointed gradient owns, and the forward loop, its
ops and the functions they run stay as they were: a later gradient of
the same graph (tfgrad's plain one, stock's) rewrites those itself,
under names of its own. An inner loop gets the plain gradient inside
the segment loop: its accumulators (the inner iterations' intermediates)
are accumulated by the segment loop, k outer iterations' worth at a time
instead of T.

Loops this does not cover are kept whole (the plain gradient);
`why_kept_whole` says why: among them loops running a stateful op other
than a variable read, in the body or in a function it runs (a re-run
would draw again).
"""

import collections

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import function_pb2

from tfgrad import emit
from tfgrad import functional
from tfgrad import graph_walk
from tfgrad import tf_compat
from tfgrad import while_builder
from tfgrad.emit import raw

# Stateful ops a body may hold: recomputing them gives the same values.
_REPEATABLE_STATEFUL = frozenset(["ReadVariableOp", "ResourceGather"])
LOOP_TYPES = frozenset(["While", "StatelessWhile"])


_FUNCTION_ATTR_TYPES = frozenset(["func", "list(func)"])


def _calls_function(op):
  """Whether `op` runs a function (a function-valued attribute): read from
  the registered OpDef (a lookup) rather than the op's NodeDef (a parse
  per op); an op type the registry lacks is checked on its NodeDef."""
  op_def = tf_compat.op_def(op.type)
  if op_def is not None:
    return any(a.type in _FUNCTION_ATTR_TYPES for a in op_def.attr)
  return bool(tf_compat.function_names(op.node_def.attr))


def _through_identity(t):
  while t.op.type == "Identity":
    t = t.op.inputs[0]
  return t


def _counter_reason(op, body):
  """Why the first two loop variables are not tf.while_loop's iteration
  counter (from 0, +1 per iteration, read by nothing else) and iteration
  bound (passed on unchanged), or None."""
  if len(body.inputs) < 2 or len(body.outputs) != len(body.inputs):
    return "its loop variables are not tf.while_loop's"
  counter = body.inputs[0]
  start = tf.get_static_value(op.inputs[0])
  nxt = _through_identity(body.outputs[0])
  others = [t for t in nxt.op.inputs if t is not counter]
  if (start is None or np.ndim(start) != 0 or int(start) != 0
      or not counter.dtype.is_integer or nxt.op.type != "AddV2"
      or len(others) != 1 or tf.get_static_value(others[0]) != 1
      or any(c is not nxt.op for c in counter.consumers())):
    return "its first loop variable is not an iteration counter from 0"
  if _through_identity(body.outputs[1]) is not body.inputs[1]:
    return "its second loop variable changes across iterations"
  return None


def _function_reason(graph, names, seen):
  """Why the functions `names` (of `graph`'s library), or those they run,
  keep a loop running them whole (a stateful op other than a variable
  read; an op type not registered), or None. `seen`: the names
  walked already."""
  for name in names:
    if name in seen:
      continue
    seen.add(name)
    fdef = tf_compat.function_def_of(graph, name)
    if fdef is None:
      return f"the graph does not hold function {name}"
    for node in fdef.node_def:
      where = f"{node.name} ({node.op}) in {name}"
      inner = tf_compat.function_names(node.attr)
      if inner:
        reason = _function_reason(graph, inner, seen)
        if reason is not None:
          return reason
        continue
      op_def = tf_compat.op_def(node.op)
      if op_def is None:
        return f"{where}, an op type with no registered definition"
      if op_def.is_stateful and node.op not in _REPEATABLE_STATEFUL:
        return (f"the stateful op {where}: recomputing it could change "
                "values")
  return None


def has_accumulators(op):
  """Whether an earlier gradient added accumulator outputs to While `op`."""
  return len(op.outputs) > tf_compat.while_original_output_count(op)


def why_kept_whole(op):
  """Why loop checkpointing leaves While op `op` to the plain gradient
  (all per-iteration accumulators), or None when it checkpoints it."""
  if op.type not in LOOP_TYPES:
    return f"{op.type} is not a v2 While"
  if has_accumulators(op):
    return "an earlier gradient already added accumulators to it"
  body = tf_compat.while_body_graph(op)
  reason = _counter_reason(op, body)
  if reason is not None:
    return reason
  for o in body.get_operations():
    if _calls_function(o):
      reason = _function_reason(body, tf_compat.function_names(o.node_def.attr),
                                set())
      if reason is not None:
        return f"its body runs functions ({o.name}, {o.type}): {reason}"
      continue
    if tf_compat.is_stateful(o) and o.type not in _REPEATABLE_STATEFUL:
      return (f"its body holds the stateful op {o.name} ({o.type}): "
              "recomputing it could change values")
  for x, y in zip(body.inputs, body.outputs):
    y = _through_identity(y)
    if y.op.type == "TensorListPushBack" and y.op.inputs[0] is x:
      return "an earlier gradient already added accumulators to it"
  for i, (x, y) in enumerate(zip(body.inputs, body.outputs)):
    if x.dtype in (tf.resource, tf.variant) and \
        _through_identity(y) is not x:
      return f"loop variable {i} ({x.dtype.name}) changes across iterations"
  return None


# ----- copying the body -----

def _topological(body):
  """The body's ops, each after its inputs and control inputs."""
  return graph_walk.post_order(
      body.get_operations(),
      lambda op: list(op.control_inputs) + [t.op for t in op.inputs])


class _FunctionCopies:
  """Copies, under new names, of the functions the ops of a loop body run
  (branches, called functions, an inner loop's cond and body) and of
  those these run in turn, added to `graph` (the copy of the body's
  graph), each with a FuncGraph of its own (`functional.add_own_copy`).
  The copied body's ops run them, so the cond, call and While gradient
  builders, which rewrite the op they differentiate and its functions to
  output intermediates, rewrite copies the checkpointed gradient owns:
  never the forward loop's ops or the functions they run, whose names
  other gradients of the same graph (stock's, tfgrad's plain ones)
  derive their rewrites' names from."""

  def __init__(self, source, graph):
    self._source, self._graph = source, graph
    self._names = {}  # (original name, shapes) -> copy's name

  def attrs(self, op):
    """`op`'s attributes, naming the copies of the functions it runs; a
    call's function (attribute `f`, called on the op's inputs) is copied
    for the inputs' shapes and handle data."""
    attrs = dict(op.node_def.attr.items())  # (parsed anew: ours to edit)
    self._rename(attrs, list(op.inputs))
    return attrs

  def _rename(self, attrs, call_args=None):
    """Points the function-valued attributes in `attrs` at copies; the
    call function `f` gets `call_args` (see `_copy`)."""
    for key, value in attrs.items():
      if value.HasField("func"):
        value.func.name = self._copy(value.func.name,
                                     call_args if key == "f" else None)
      elif value.HasField("list"):
        for f in value.list.func:
          f.name = self._copy(f.name)

  def _copy(self, name, args=None):
    """The name of the copy of function `name`; `args`: a call's inputs,
    whose shapes and handle data its arguments take (one copy per
    shapes), else the original function graph's arguments give the
    handle data (when the function was made from one)."""
    fdef = tf_compat.function_def_of(self._source, name)
    if args is not None and len(args) != len(fdef.signature.input_arg):
      args = None
    key = (name, None if args is None else tuple(str(t.shape) for t in args))
    found = self._names.get(key)
    if found is None:
      fdef, original = function_pb2.FunctionDef(), fdef
      fdef.CopyFrom(original)
      for node in fdef.node_def:
        self._rename(node.attr)
      found = f"{name}_checkpointed_{tf_compat.new_uid()}"
      fdef.signature.name = found
      like = args
      if like is None:
        source = tf_compat.function_graph_of(self._source, name)
        like = None if source is None else list(source.inputs)
      functional.add_own_copy(
          self._graph, fdef,
          None if args is None else [t.shape for t in args], like)
      self._names[key] = found
    return found


def _copy_body(body, inputs):
  """The body's ops copied into the default graph, reading `inputs` (one
  per body input); the copies of the body's outputs. Ops running
  functions run copies of them (`_FunctionCopies`)."""
  from tfgrad import remat  # pylint: disable=g-import-not-at-top
  graph = tf_compat.default_graph()
  functions = _FunctionCopies(body, graph)
  mapping = {id(p): t for p, t in zip(body.inputs, inputs)}
  copied = {}
  with graph.name_scope(None):
    for o in _topological(body):
      if o.type == "Placeholder" and id(o.outputs[0]) in mapping:
        continue
      ins = [mapping[id(t)] for t in o.inputs]
      waits = [copied[c] for c in o.control_inputs]
      op_def = tf_compat.op_def(o.type)
      sizes = None if op_def is None else _group_sizes(o, op_def)
      attrs = functions.attrs(o) if _calls_function(o) else None
      if sizes is None:
        with graph.control_dependencies(waits):
          new = (remat.copy_named(graph, o, ins, o.name) if attrs is None
                 else tf_compat.copy_op(graph, o, ins, o.name, attrs))
      else:
        new = tf_compat.create_op(graph, o.type, ins,
                                  attrs or dict(o.node_def.attr.items()),
                                  op_def, o.name, _regrouped(ins, sizes),
                                  waits)
      copied[o] = new
      for old, out in zip(o.outputs, new.outputs):
        if old.dtype in (tf.resource, tf.variant):
          tf_compat.copy_handle_data(old, out)
        if not out.shape.is_fully_defined():
          out.set_shape(old.shape)
        mapping[id(old)] = out
  return [mapping[id(t)] for t in body.outputs]


def _group_sizes(op, op_def):
  """Per input argument of `op_def` (op's registered OpDef, read once per
  type, where `op.op_def` parses it per call): None for a single tensor,
  else the length of its list; None overall when the op is copied by
  `remat.copy_named` instead (a device set, inputs not matching)."""
  if op.device:
    return None
  sizes, i = [], 0
  for arg in op_def.input_arg:
    if arg.number_attr:
      n = op.get_attr(arg.number_attr)
    elif arg.type_list_attr:
      n = len(op.get_attr(arg.type_list_attr))
    else:
      sizes.append(None)
      i += 1
      continue
    sizes.append(n)
    i += n
  return sizes if i == len(op.inputs) else None


def _regrouped(inputs, sizes):
  grouped, i = [], 0
  for n in sizes:
    if n is None:
      grouped.append(inputs[i])
      i += 1
    else:
      grouped.append(list(inputs[i:i + n]))
      i += n
  return grouped


class _Body(tf_compat.WhileBodyFuncGraph):
  """The body of a loop built here. The loops take what their bodies read
  as loop variables, so these capture little or nothing; what they do
  capture (a tensor of an enclosing graph an op of the plain builder
  reads) goes through a placeholder made on tfgrad's lean op path
  (`functional.lean_capture`), and the op reading it takes that path too,
  instead of TF's capture and op constructor, which cost several ops'
  worth of time each."""

  def captures_before_lean_op(self, unused_op_type):
    return True

  def capture(self, tensor, name=None, shape=None):
    graph = getattr(tensor, "graph", None)  # (None for an eager tensor)
    if graph is self:
      return tensor
    if graph is not None:
      return functional.lean_capture(self, tensor)
    return super().capture(tensor, name, shape)

  def _capture_helper(self, tensor, name):
    return functional.lean_capture(self, tensor)


_Loop = collections.namedtuple("_Loop", "op outputs cond body captured")


def _loop(name, args, body_fn, parallel_iterations):
  """A While over `args` (counter first, its bound second) running
  `body_fn` while counter < bound; what the body reads from outside is
  passed through as extra loop variables (`captured`, after `args`)."""
  fn_name = f"{name}_{tf_compat.new_uid()}"
  graph = while_builder.trace(_Body(fn_name + "_body"), body_fn, args)
  captured = list(graph.external_captures)
  graph.outputs.extend(graph.internal_captures)
  loop_vars = list(args) + captured
  cond = tf_compat.LessCond(fn_name + "_cond", loop_vars, 0, 1)
  op, outputs = tf_compat.build_while(loop_vars, cond, graph,
                                      parallel_iterations, name)
  return _Loop(op, outputs, cond, graph, captured)


# ----- the phases -----

def _checkpoint_loop(op, body, varying, trips, k):
  """Phase 1: one TensorList per `varying` loop variable holding its value
  before iterations 0, k, 2k, ... (S <= k of them, as T <= k * k; slot k
  is the spare one the other iterations write); the loop, which the
  segments re-run. k is a loop variable passed on unchanged (the loop
  captures nothing), so a segment can run the same functions."""
  n = len(op.inputs)
  slots = raw.AddV2(x=k, y=emit.const(1, k.dtype))
  lists = [raw.TensorListReserve(
      element_shape=while_builder.element_shape(body.inputs[i].shape),
      num_elements=slots, element_dtype=body.inputs[i].dtype)
      for i in varying]
  args = [op.inputs[0], trips] + list(op.inputs[2:]) + lists + [k]

  def body_fn(counter, bound, *rest):
    state = [counter, bound] + list(rest[:n - 2])
    k = rest[-1]
    at_checkpoint = raw.Equal(x=raw.FloorMod(x=counter, y=k),
                              y=emit.const(0, counter.dtype))
    slot = raw.SelectV2(condition=at_checkpoint,
                        t=raw.FloorDiv(x=counter, y=k), e=k)
    saved = [raw.TensorListSetItem(input_handle=lst, index=slot,
                                   item=state[i])
             for lst, i in zip(rest[n - 2:], varying)]
    outs = _copy_body(body, state)
    return [outs[0], bound] + outs[2:] + saved + [k]

  loop = _loop(f"{op.name}_checkpoints".replace("/", "_"), args, body_fn,
               op.get_attr("parallel_iterations"))
  return loop.outputs[n:n + len(varying)], loop


class _Reads(collections.namedtuple("_Reads", "k trips lists inputs")):
  """What the reverse loop's body reads from outside, passed in as loop
  variables (cheaper to build than captures): k, the trip count, the
  checkpoint lists and the forward op's inputs from index 2 (None where
  the checkpoint lists hold the value)."""

  def flat(self):
    return [self.k, self.trips] + list(self.lists) + [
        t for t in self.inputs if t is not None]

  def rebuilt(self, flat):
    """The same reads from `flat` (the body's loop variables for them)."""
    k, trips, rest = flat[0], flat[1], list(flat[2:])
    lists, rest = rest[:len(self.lists)], rest[len(self.lists):]
    inputs = [None if t is None else rest.pop(0) for t in self.inputs]
    return _Reads(k, trips, lists, inputs)


def _segment(op, body, checkpoints, reads, s, seg_grads, differentiate):
  """Phase 2, one segment: its loop re-run from the saved state, then the
  plain gradient loop of that; one gradient per loop variable. The state
  is read once the gradient coming in from the segment after is there:
  else the reverse loop would re-run several segments at once (its
  parallel iterations), each holding its accumulators.

  The segment loop runs the checkpoint loop's own functions (`checkpoints`)
  for its at most k iterations, so the segments build no loop body of
  their own; its writes to the lists (slot 0, then the spare slot) go to
  a copy of them that nothing reads."""
  n = len(op.inputs)
  k = reads.k
  with tf.control_dependencies([g for g in seg_grads if g is not None]):
    s = raw.Identity(input=s)
  length = raw.Minimum(x=k, y=raw.Sub(x=reads.trips, y=raw.Mul(x=s, y=k)))
  state = [emit.const(0, op.inputs[0].dtype), length] + list(reads.inputs)
  varying = [i for i in range(2, n) if state[i] is None]
  for lst, i in zip(reads.lists, varying):
    value = raw.TensorListGetItem(
        input_handle=lst, index=s,
        element_shape=while_builder.element_shape(body.inputs[i].shape),
        element_dtype=body.inputs[i].dtype)
    value.set_shape(body.inputs[i].shape)
    state[i] = value
  seg_op, _ = tf_compat.build_while(
      state + list(reads.lists) + [k] + checkpoints.captured,
      checkpoints.cond, checkpoints.body, op.get_attr("parallel_iterations"),
      f"{op.name}_segment".replace("/", "_"), registered=True,
      like=checkpoints.op)
  grads = list(seg_grads) + [None] * (len(seg_op.inputs) - n)
  return while_builder.build(seg_op, (checkpoints.cond, checkpoints.body),
                             grads, differentiate, reread_variables=True)[:n]


def build(op, graphs, grads, differentiate):
  """The gradient of While `op` by loop checkpointing (see the module
  doc); same contract as `while_builder.build`: one result per input,
  None where no gradient was carried."""
  _, body = graphs
  n = len(op.inputs)
  carried = [i for i, g in enumerate(grads) if g is not None]
  varying = [i for i in range(2, n)
             if _through_identity(body.outputs[i]) is not body.inputs[i]]
  dtype = op.outputs[0].dtype
  trips = op.outputs[0]
  root = raw.Ceil(x=raw.Sqrt(x=raw.Cast(x=trips, DstT=tf.float64)))
  k = raw.Maximum(x=raw.Cast(x=root, DstT=dtype), y=emit.const(1, dtype))
  segments = raw.FloorDiv(x=raw.Sub(x=raw.AddV2(x=trips, y=k),
                                    y=emit.const(1, dtype)), y=k)
  lists, checkpoints = _checkpoint_loop(op, body, varying, trips, k)
  reads = _Reads(k, trips, lists, [None if i in varying else op.inputs[i]
                                   for i in range(2, n)])
  args = [emit.const(0, dtype), segments] + [grads[i] for i in carried]

  def body_fn(j, bound, *rest):
    gs, passed = rest[:len(carried)], rest[len(carried):]
    s = raw.Sub(x=raw.Sub(x=bound, y=j), y=emit.const(1, dtype))
    seg_grads = [None] * n
    for i, g in zip(carried, gs):
      seg_grads[i] = g
    results = _segment(op, body, checkpoints, reads.rebuilt(passed), s,
                       seg_grads, differentiate)
    return [raw.AddV2(x=j, y=emit.const(1, dtype)), bound] + [
        results[i] for i in carried] + list(passed)

  outputs = _loop(f"{op.name}_grad".replace("/", "_"), args + reads.flat(),
                  body_fn, op.get_attr("parallel_iterations")).outputs
  results = [None] * n
  for j, i in enumerate(carried):
    results[i] = outputs[2 + j]
  return results
