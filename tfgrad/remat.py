"""Memory-saving gradients: `tfgrad.gradients(..., checkpoints=...)`.

The forward graph between the xs and the ys is cut at the kept tensors
(`remat_select` chooses them). The gradient is then one engine pass:

    copies    for each kept tensor c, the ops that compute c from other
              kept tensors, xs and parameters are copied first (same op
              type, attributes, device and colocation; each copy reads the
              other copies of its segment and the originals' other inputs);
    redirect  the engine's walk sees every reader of c reading c's copy,
              so the copy takes c's gradient: the ops between the last
              kept tensors and the ys are differentiated as they are, and
              a segment's turn comes, latest first, once every gradient
              contribution to c is in;
    wait      at that turn (`on_ready`) the contributions are summed and
              the copies that start the segment get the sum as a control
              input, so they run, and their buffers live, only then;
              parameters (variable reads, weight reshapes, never
              recomputed) pass gradients on to the xs in the same walk.

One pass, not one engine call per segment: each call costs a walk and
fixed setup, which dominated construction time for many small segments.
Ops with state (random number generators, stateful calls) are never
copied: their outputs and inputs are kept, their gradients run on the
original op. Stateless random ops are copied with their seeds, so they
recompute the same values.
"""

import contextlib
import threading

from absl import logging
import tensorflow as tf

from tfgrad import aggregate
from tfgrad import emit
from tfgrad import graph_walk
from tfgrad import remat_select
from tfgrad import tf_compat


def _as_list(x):
  return list(x) if isinstance(x, (list, tuple)) else [x]


# ----- the default `tfgrad.install(checkpoints=...)` sets -----

class _Installed:
  """The process-wide default of the last `install(checkpoints=...)`."""
  lock = threading.Lock()
  value = None


_thread_default = threading.local()  # .stack: `installed(checkpoints=)` blocks


def check_default(checkpoints):
  """ValueError unless `checkpoints` can be a default for every call: None,
  "memory", "speed" or a MemoryBudget (a list of tensors belongs to one
  graph)."""
  if checkpoints is None:
    return
  if isinstance(checkpoints, (list, tuple)):
    raise ValueError("install(checkpoints=...) takes None, \"memory\", "
                     "\"speed\" or a tfgrad.MemoryBudget, not a list of "
                     "tensors (pass those to tfgrad.gradients)")
  remat_select.check_choice(checkpoints)


def set_installed_default(checkpoints):
  check_default(checkpoints)
  with _Installed.lock:
    _Installed.value = checkpoints


@contextlib.contextmanager
def thread_default(checkpoints):
  """The default of calls on this thread inside the block (None: inherit)."""
  check_default(checkpoints)
  stack = getattr(_thread_default, "stack", None)
  if stack is None:
    stack = _thread_default.stack = []
  stack.append(checkpoints)
  try:
    yield
  finally:
    stack.pop()


def installed_default():
  """What a call that leaves `checkpoints` None gets: the innermost
  `installed(checkpoints=...)` block of this thread that gave one, else the
  last `install(checkpoints=...)`, else None."""
  stack = getattr(_thread_default, "stack", None)
  value = next((v for v in reversed(stack) if v is not None), None) \
      if stack else None
  if value is None:
    value = _Installed.value
  return value


# ----- loop checkpointing, for the length of one call -----

_loops = threading.local()  # .graphs: (graph, loop reasons) of the calls
#                               running here


@contextlib.contextmanager
def _checkpointing_loops(graph, reasons):
  """While this thread runs a rematerializing call, `While` ops of `graph`
  (not those inside loop or function bodies) get loop checkpointing;
  `reasons`: what `loop_remat.why_kept_whole` said of the loops the
  call's analysis saw (`Forward.loop_reasons`), not asked again."""
  graphs = getattr(_loops, "graphs", None)
  if graphs is None:
    graphs = _loops.graphs = []
  graphs.append((graph, reasons))
  try:
    yield
  finally:
    graphs.pop()


def checkpoints_loop(op):
  """Whether the gradient of While `op`, built now on this thread, uses
  loop checkpointing (`tfgrad/loop_remat.py`): a rematerializing call is
  running and the loop is one it can checkpoint."""
  from tfgrad import loop_remat  # pylint: disable=g-import-not-at-top
  graphs = getattr(_loops, "graphs", None)
  if not graphs or op.graph is not graphs[-1][0]:
    return False
  reasons = graphs[-1][1]
  if op not in reasons:
    return loop_remat.why_kept_whole(op) is None
  # (what may have changed since: another thread's plain gradient of the
  # same loop adding its accumulators)
  return reasons[op] is None and not loop_remat.has_accumulators(op)


class _Call:
  """The arguments every engine call of one rematerializing call shares."""

  def __init__(self, scope, colocate, gate, aggregation, strict):
    self.scope, self.colocate, self.gate = scope, colocate, gate
    self.aggregation, self.strict = aggregation, strict

  def grads(self, ys, xs, grad_ys, stop_gradients=None, **hooks):
    from tfgrad import api  # pylint: disable=g-import-not-at-top
    return api.gradients_helper(
        ys, xs, grad_ys, self.scope, self.colocate, self.gate,
        self.aggregation, stop_gradients, tf.UnconnectedGradients.NONE,
        strict=self.strict, **hooks)


class NotApplicable(NotImplementedError):
  """The call falls outside what checkpointing covers (see README); the
  message says why."""


def prepare(ys, xs, grad_ys, stop_gradients, strict, checkpoints):
  """Argument checks and the forward analysis of `ys` and `xs` (lists of
  graph values, `api.tensor_lists`): (ys, xs, grad_ys, stops, fwd,
  plan). Raises `NotApplicable` when the call falls outside what
  checkpointing covers."""
  from tfgrad import api  # pylint: disable=g-import-not-at-top
  from tfgrad import backprop  # pylint: disable=g-import-not-at-top
  remat_select.check_choice(checkpoints)
  if tf.executing_eagerly():
    raise RuntimeError("tf.gradients is not supported when eager execution "
                       "is enabled. Use tf.GradientTape instead.")
  grad_ys = [None] * len(ys) if grad_ys is None else _as_list(grad_ys)
  stops = [] if stop_gradients is None else _as_list(stop_gradients)
  ys, xs, grad_ys = api._validated(ys, xs, grad_ys, stops)  # pylint: disable=protected-access
  graph = tf_compat.default_graph()
  resolver = graph_walk.InputResolver(
      xs, tf_compat.function_graph_chain(graph))
  sub = graph_walk.between(
      [y.op for y in ys], [x.op for x in xs], [t.op for t in stops],
      resolver, blocks=lambda op: backprop.blocks_gradient(op, graph, strict))
  elsewhere = next((op for op in sub.members if op.graph is not graph), None)
  if elsewhere is not None:
    raise NotApplicable(
        f"op {elsewhere.name} ({elsewhere.type}) between the xs and the ys "
        "is in another graph than the call's")
  if tf_compat.has_v1_control_flow(sub.ops):
    raise NotApplicable("v1 control flow (Enter/Exit/Switch/Merge frames) "
                        "lies between the xs and the ys")
  inputs = lambda op: list(op.inputs)  # noqa: E731
  fwd = remat_select.analyse(ys, xs, sub.members, inputs)
  plan = remat_select.choose(fwd, checkpoints, inputs)
  return ys, xs, grad_ys, stops, fwd, plan


def gradients(ys, xs, grad_ys, name, colocate, gate, aggregation,
              stop_gradients, unconnected, strict, checkpoints):
  """`tfgrad.gradients` with rematerialization (see the module doc)."""
  from tfgrad import api  # pylint: disable=g-import-not-at-top
  try:
    unconnected = tf.UnconnectedGradients(unconnected)
  except ValueError:
    raise ValueError("Unknown value for unconnected_gradients: "
                     f"'{unconnected}'") from None
  aggregation = aggregate.check_method(aggregation)
  strict = api._strict_default() if strict is None else bool(strict)  # pylint: disable=protected-access
  ys, xs = api.tensor_lists(ys, xs)
  if tf_compat.any_composite(xs) or tf_compat.any_composite(ys):
    # as the plain pass: composites' component tensors are differentiated
    # and the gradients packed back into the xs' types
    flat_grads = gradients(
        tf_compat.flatten_composites(ys), tf_compat.flatten_composites(xs),
        None if grad_ys is None else tf_compat.flatten_composites(
            _as_list(grad_ys)),
        name, colocate, gate, aggregation, stop_gradients, unconnected,
        strict, checkpoints)
    return tf_compat.unflatten_composites(xs, flat_grads)
  try:
    prepared = prepare(ys, xs, grad_ys, stop_gradients, strict, checkpoints)
  except NotApplicable as e:  # the plain pass, said
    logging.warning("tfgrad.gradients: checkpoints=%r does not apply here, "
                    "the plain gradient is built: %s", checkpoints, e)
    return api.gradients_helper(ys, xs, grad_ys, name, colocate, gate,
                                aggregation, stop_gradients, unconnected,
                                strict=strict)
  ys, xs, grad_ys, stops, fwd, plan = prepared
  if plan.kept is None:  # a budget everything fits in: the plain pass
    return api.gradients_helper(ys, xs, grad_ys, name, colocate, gate,
                                aggregation, stop_gradients, unconnected,
                                strict=strict)
  graph = tf_compat.default_graph()
  with tf.compat.v1.name_scope(name, "gradients", ys + xs) as scope:
    call = _Call(scope, colocate, gate, aggregation, strict)
    with _checkpointing_loops(graph, fwd.loop_reasons):
      return _Backprop(graph, call, fwd, plan, stops).run(
          ys, xs, grad_ys, unconnected)


class _Backprop:
  """The segment-by-segment pass of one call."""

  def __init__(self, graph, call, fwd, plan, stops):
    self.graph, self.call, self.fwd = graph, call, fwd
    self.stops = list(stops)
    self.stop_ops = {t.op for t in stops}
    kept = {}
    self.waits = {}  # last copy of a segment -> the ops that wait
    for t in plan.kept:  # a kept op keeps all its outputs the graph uses
      for out in t.op.outputs:
        if tf_compat.is_trainable(out) and (
            any(c in fwd.members for c in out.consumers()) or out is t):
          kept[id(out)] = out
    for op in self.stop_ops:
      if fwd.kind.get(op) in ("data", "pinned"):
        for out in op.outputs:
          kept[id(out)] = out
    self.kept = sorted(kept.values(), key=lambda t: fwd.pos[t.op])
    self.kept_ids = set(kept)
    self.uid = tf_compat.new_gradient_uid(graph)

  def run(self, ys, xs, grad_ys, unconnected):
    """Builds the copies of every segment, then differentiates once: the
    engine sees each kept tensor's readers reading its copy, so the copy
    takes the tensor's gradient, and a segment's turn comes once that
    gradient is complete (`_ready` then makes the segment's first copies
    wait for it)."""
    redirect, self.waits = {}, {}
    for c in reversed(self.kept):
      if (id(c) not in redirect and c.op not in self.stop_ops
          and self.fwd.kind[c.op] == "data"):
        self._segment(c, redirect)
    ys = [redirect.get(id(y), y) for y in ys]
    grads = self.call.grads(ys, xs, grad_ys, self.stops, redirect=redirect,
                            on_ready=self._ready)
    self._read_kept_values(redirect)
    if unconnected == tf.UnconnectedGradients.ZERO:
      grads = [tf_compat.zeros_like_unconnected(x) if g is None else g
               for x, g in zip(xs, grads)]
    return grads

  def _needs_grad(self, t):
    return (tf_compat.is_trainable(t) and t.op in self.fwd.members
            and (id(t) in self.fwd.x_ids or self.fwd.kind.get(t.op) != "x"))

  def _segment_ops(self, c):
    """Ops computing c from kept tensors, xs and parameters, topological."""
    fwd, ops, stack = self.fwd, {c.op}, [c.op]
    while stack:
      for t in stack.pop().inputs:
        if (t.op in fwd.pos and t.op not in ops and fwd.kind[t.op] == "data"
            and id(t) not in self.kept_ids and t.op not in self.stop_ops):
          ops.add(t.op)
          stack.append(t.op)
    return sorted(ops, key=fwd.pos.get)

  def _segment(self, c, redirect):
    """Copies the ops of c's segment and redirects c.op's kept outputs to
    the copy's. Copies read each other, and the tensors from outside the
    segment (kept tensors, parameters, xs) as the originals do: the
    engine's walk sends the gradients of kept tensors on to their own
    copies. The copies reading no other copy are the segment's roots:
    `_ready` makes them wait."""
    copies, roots = {}, []
    for op in self._segment_ops(c):
      inputs = [copies.get(id(t), t) for t in op.inputs]
      new = _copy(self.graph, op, inputs)
      if not any(id(t) in copies for t in op.inputs):
        roots.append(new)
      for old, out in zip(op.outputs, new.outputs):
        copies[id(old)] = out
    for out in c.op.outputs:
      if id(out) in self.kept_ids:
        redirect[id(out)] = copies[id(out)]
    self.waits[copies[id(c)].op] = roots

  def _read_kept_values(self, redirect):
    """Gradient ops that read a kept tensor's copy (the rules of ops whose
    gradient reads their own output: Tanh, Sigmoid, Relu, Exp, ...) read
    the kept tensor instead: the same value, held anyway, so the copy of
    the kept op (and of what only it reads) never runs. Only this call's
    gradient ops read such a copy: copies in later segments read the kept
    tensors themselves."""
    for t in self.kept:
      copy = redirect.get(id(t))
      if copy is None:
        continue
      for consumer in copy.consumers():
        for i, source in enumerate(consumer.inputs):
          if source is copy:
            tf_compat.update_input(consumer, i, t)

  def _ready(self, op, per_output):
    """The engine's turn for the last copy of a segment: sums each output's
    gradient contributions (the engine then finds one) and makes the
    segment's roots wait for the sums, so the recomputation runs, and its
    buffers live, only once the gradient is there."""
    roots = self.waits.pop(op, None)
    if roots is None:
      return
    waits = []
    for i, contributions in enumerate(per_output):
      if contributions:
        g = aggregate.aggregate(
            [emit.materialize(x) for x in contributions], op, i,
            self.call.aggregation, self.uid)
        per_output[i] = [g]
        waits.append(_waitable(g).op)
    for root in roots:
      _wait_for(root, waits)


def _grouped(op, inputs):
  """`inputs` with list-valued arguments of op's OpDef as lists, or None
  when they cannot be matched."""
  return tf_compat.grouped_inputs(
      op.op_def, inputs,
      lambda arg: (op.get_attr(arg.number_attr) if arg.number_attr
                   else len(op.get_attr(arg.type_list_attr))))


def _copy(graph, op, inputs):
  """A copy of `op` reading `inputs`, named `<op>_remat`."""
  return copy_named(graph, op, inputs, op.name + "_remat")


def copy_named(graph, op, inputs, name):
  """A copy of `op` reading `inputs`, named `name` from the root name
  scope: built by TF's lean constructor path when it applies
  (`tf_compat.create_op`), else by `tf_compat.copy_op`."""
  grouped = None if op.device else _grouped(op, inputs)
  if grouped is None:
    return tf_compat.copy_op(graph, op, inputs, name)
  attrs = dict(op.node_def.attr.items())
  with graph.name_scope(None):
    return tf_compat.create_op(graph, op.type, inputs, attrs, op.op_def,
                               name, grouped)


def _wait_for(op, waits):
  """Adds control inputs to `op`, built before what it must wait for
  (TF's `Operation._add_control_input`, TF 2.16-2.21; the op is new and
  was never run)."""
  for w in waits:
    op._add_control_input(w)  # pylint: disable=protected-access


def _waitable(g):
  """What the segment's first copies wait for: the gradient's values."""
  if isinstance(g, tf.IndexedSlices):
    return g.values
  return g


class Explanation(dict):
  """What `explain_checkpoints` returns: a dict with `kept` (tensor
  names), `segments` (per kept tensor, the op names recomputed for it),
  `loops` (per v2 While op between xs and ys, its name and None when
  loop checkpointing applies to it, else why it is kept whole),
  `estimated_peak_plain`, `estimated_peak` (bytes) and `recompute_flops`;
  str() gives a readable report."""

  def __str__(self):
    lines = [f"kept {len(self['kept'])} tensors; estimated peak "
             f"{self['estimated_peak_plain']} -> {self['estimated_peak']} "
             f"bytes; recompute {self['recompute_flops']} FLOPs"]
    for name, ops in self["segments"]:
      lines.append(f"  {name}: recomputes {len(ops)} ops "
                   f"({', '.join(ops[:4])}{', ...' if len(ops) > 4 else ''})")
    for name, why in self.get("loops", []):
      lines.append(f"  loop {name}: " + (
          "checkpointed (state kept every ceil(sqrt(T)) of its T "
          "iterations, the others recomputed)" if why is None
          else f"kept whole: {why}"))
    return "\n".join(lines)


def _loops_explained(fwd, whole=None):
  """(name, None or why kept whole) for each While op between the xs and
  the ys; `whole`: a reason that applies to all of them."""
  from tfgrad import loop_remat  # pylint: disable=g-import-not-at-top
  loops = sorted((op for op in fwd.members
                  if op.type in loop_remat.LOOP_TYPES),
                 key=lambda op: op.name)
  return [(op.name, whole or (fwd.loop_reasons[op] if op in fwd.loop_reasons
                              else loop_remat.why_kept_whole(op)))
          for op in loops]


def explain_checkpoints(ys, xs, checkpoints="memory", stop_gradients=None):
  """Which tensors `checkpoints` keeps, which ops each kept tensor's
  segment recomputes, which loops are checkpointed (and why the others
  are kept whole), and the estimated peak before and after. Builds
  nothing. Composite ys and xs (ragged, sparse) are taken as their
  component tensors, as `gradients` takes them."""
  from tfgrad import api  # pylint: disable=g-import-not-at-top
  ys, xs = api.tensor_lists(ys, xs)
  if tf_compat.any_composite(xs) or tf_compat.any_composite(ys):
    ys = tf_compat.flatten_composites(ys)
    xs = tf_compat.flatten_composites(xs)
  try:
    prepared = prepare(ys, xs, None, stop_gradients, False, checkpoints)
  except NotApplicable as e:
    raise NotImplementedError(f"checkpoints do not apply here: {e}") from None
  _, _, _, stops, fwd, plan = prepared
  if plan.kept is None:
    return Explanation(kept=["(everything: the plain gradient)"], segments=[],
                       loops=_loops_explained(
                           fwd, "the budget fits the plain gradient"),
                       estimated_peak_plain=plan.plain_estimate,
                       estimated_peak=plan.estimate, recompute_flops=0)
  bp = _Backprop(tf_compat.default_graph(), None, fwd, plan, stops)
  segments = [(c.name, [op.name for op in bp._segment_ops(c)])  # pylint: disable=protected-access
              for c in bp.kept if fwd.kind[c.op] == "data"]
  return Explanation(kept=[t.name for t in plan.kept], segments=segments,
                     loops=_loops_explained(fwd),
                     estimated_peak_plain=plan.plain_estimate,
                     estimated_peak=plan.estimate,
                     recompute_flops=plan.recompute_flops)
