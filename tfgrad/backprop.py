"""The reverse-mode pass over a tf.Graph, in named phases.

    walk      graph_walk.between: ops between xs and ys, pending counts, stops
    seed      the ys' gradients go in, ready ys' ops are queued
    per op    aggregate its output gradients -> find its rule -> fill zeros
              -> call the rule -> verify -> hand gradients to its inputs
    collect   one gradient (or None / zeros) per x

With v1 while loops on the way (`Pass.loops`, a `v1_loops.LoopStates`),
each op's gradients are built inside the gradient loop of its forward loop
(`Pass.loop_context`), zeros there come from the loop's history
(`Pass.zeros_for`), and the pending update lets a loop's Exits wait for
each other and visits a loop Switch twice (`LoopStates.release`).

The module holds no op-type names: rules come from the registry (and TF's,
as fallback) through `find_rule`.
"""

import collections
import contextlib
import dataclasses

import tensorflow as tf

from tfgrad import aggregate
from tfgrad import emit
from tfgrad import graph_walk
from tfgrad import registry
from tfgrad import rule_context
from tfgrad import tf_compat

_MISSING = object()
_NO_SCOPE = contextlib.nullcontext()  # stateless, so shared


@dataclasses.dataclass(frozen=True)
class Options:
  colocate: bool
  gate: bool
  aggregation: int
  unconnected: tf.UnconnectedGradients
  strict: bool
  optimize_identity_n: bool = False


@dataclasses.dataclass
class Pass:
  """State of one backprop pass."""
  options: Options
  src_graph: tf.Graph
  resolver: graph_walk.InputResolver
  subgraph: graph_walk.Subgraph
  to_ops: list
  gradient_uid: str
  grad_scope: str
  grads: dict = dataclasses.field(default_factory=dict)  # op -> per output

  private_attrs: dict = dataclasses.field(default_factory=dict)  # op -> ...
  rules: dict = dataclasses.field(default_factory=dict)  # op -> find_rule
  seeds: dict = dataclasses.field(default_factory=dict)  # id(grad_y) -> i
  loops: object = None  # v1_loops.LoopStates when v1 loops are on the way
  on_ready: object = None  # called (op, per_output) as an op's turn comes

  def attrs_of(self, op):
    """`tf_compat.private_attrs(op)`, read once per op and pass."""
    attrs = self.private_attrs.get(op)
    if attrs is None:
      attrs = self.private_attrs[op] = tf_compat.private_attrs(op)
    return attrs

  def rule_of(self, op):
    """`find_rule` for `op`, looked up once per op and pass."""
    found = self.rules.get(op)
    if found is None:
      found = self.rules[op] = find_rule(op, self.src_graph,
                                         self.options.strict,
                                         self.attrs_of(op))
    return found

  def loop_context(self, op, before):
    """The v1 gradient loop `op`'s gradients are built in (see
    `v1_loops.LoopStates.context`)."""
    if self.loops is None:
      return contextlib.nullcontext()
    return self.loops.context(op, before)

  def zeros_for(self, op, index):
    """Zeros for an output of `op` no gradient reached."""
    if self.loops is None:
      return tf_compat.zeros_for_output(op, index)
    return self.loops.zeros_like(op, index)

  def colocated(self, op):
    if self.options.colocate:
      return tf_compat.colocated_with_op(
          tf_compat.default_graph(), op, self.gradient_uid,
          lambda: self.attrs_of(op))
    return contextlib.nullcontext()


def add_gradient(grads, t, grad):
  """Records one gradient contribution for tensor `t`."""
  per_output = grads.get(t.op)
  if per_output is None:
    per_output = grads[t.op] = [[] for _ in t.op.outputs]
  per_output[t.value_index].append(grad)


def run(state, ys, grad_ys, xs):
  """Seeds ys' gradients, processes ops in dependency order, collects."""
  for i, (y, grad_y) in enumerate(zip(ys, grad_ys)):
    add_gradient(state.grads, y, grad_y)
    state.seeds[id(grad_y)] = i
  pending = state.subgraph.pending
  queue, queued = collections.deque(), set()
  for op in state.to_ops:
    if (pending[op] == 0 and op not in queued
        and op in state.subgraph.reachable_to_ops):
      queued.add(op)
      queue.append(op)
  if state.loops is not None:
    state.loops.seed(state, queue, queued)
  grads, stop_ops = state.grads, state.subgraph.stop_ops
  input_ops = state.resolver.input_ops
  plain = state.loops is None and not state.options.colocate
  while queue:
    op = queue.popleft()
    per_output = grads.get(op)
    if state.on_ready is not None and per_output is not None:
      state.on_ready(op, per_output)
    if per_output is None or (op in stop_ops and _unsummed(per_output)):
      pass  # builds nothing (an x's op: _collect takes its gradient)
    elif not _passed_through(state, op, per_output):
      if plain:  # no context to enter around the op's gradients
        _apply_rule(state, op, _aggregated_output_grads(state, op))
      elif state.loops is None:  # colocation alone
        with state.colocated(op):
          _apply_rule(state, op, _aggregated_output_grads(state, op))
      else:
        with state.colocated(op):
          with state.loop_context(op, before=True):
            out_grads = _aggregated_output_grads(state, op)
          with state.loop_context(op, before=False):
            _apply_rule(state, op, out_grads)
    if state.loops is not None:  # v1 loops: Exits wait, Switches twice
      state.loops.visited(grads, op)
      state.loops.release(state, op, queue)
      continue
    for inp in input_ops(op):
      count = pending[inp] - 1
      pending[inp] = count
      if count == 0:
        queue.append(inp)
  if state.loops is not None:
    state.loops.finish()
  return [_collect(state, x) for x in xs]


def _apply_rule(state, op, out_grads):
  """Calls `op`'s rule on its summed output gradients and hands the
  results to its inputs."""
  try:
    in_grads = _input_grads(state, op, out_grads)
  except LookupError as e:
    raise _through_body(state, op, e)
  if in_grads is not None:
    _hand_to_inputs(state, op, in_grads)


def _unsummed(per_output):
  """True if no output of an op received more than one contribution."""
  for contributions in per_output:
    if len(contributions) > 1:
      return False
  return True


def _passed_through(state, op, per_output):
  """Runs a rule marked `passes_gradients_through` without a name scope or
  colocation (it builds no op) when nothing else needs them: one gradient
  per output, nothing to sum or fill, no gating. False otherwise."""
  if state.options.gate or op in state.subgraph.stop_ops:
    return False
  for contributions in per_output:
    if len(contributions) != 1:
      return False
  rule, _ = state.rule_of(op)
  if not getattr(rule, "passes_gradients_through", False):
    return False
  per_output[:] = [c[0] for c in per_output]
  in_grads = _as_grad_list(rule(op, *per_output))
  _check_arity(op, in_grads, len(state.resolver.inputs(op)))
  _hand_to_inputs(state, op, in_grads)
  return True


def _as_grad_list(in_grads):
  """A rule's result as a list (rules of one-input ops may return one)."""
  return list(in_grads) if isinstance(in_grads, (list, tuple)) else [in_grads]


def _aggregated_output_grads(state, op):
  per_output = state.grads.get(op)
  if per_output is None:
    return [None] * len(op.outputs)
  for i, contributions in enumerate(per_output):
    if len(contributions) > 1:
      contributions = [emit.materialize(g) for g in contributions]
    per_output[i] = aggregate.aggregate(contributions, op, i,
                                        state.options.aggregation,
                                        state.gradient_uid)
  if state.loops is not None and state.loops.enters_frame(op):
    per_output[:] = [emit.materialize(g) for g in per_output]
  return per_output  # zeros the rule's call fills in stay for `_collect`


def find_rule(op, src_graph, strict, attrs=None):
  """Returns (rule, function_call) for `op`; rule None = no gradient.

  Order: a gradient attached to the op by TF (function calls, control flow
  v2; for calls TF gives its delayed-rewrite gradient, tfgrad's registered
  rule for the call type instead) or named by `gradient_override_map`/`tf.custom_gradient`; then
  tfgrad's registry (where `UseTFGradient` types name TF's rule); then TF's
  registry (refused in strict mode, except for override names, which are
  the user's own); then, for calls of graph functions, the function's own
  gradient or TF's SymbolicGradient.
  `attrs` is `tf_compat.private_attrs(op)` when the caller has it.
  """
  if not op.inputs:
    return None, None
  if attrs is None:
    attrs = tf_compat.private_attrs(op)
  kind, value = tf_compat.override(op, attrs)
  if kind == "function":
    if (tf_compat.delayed_rewrite_source(value) is None
        or registry.GRADIENTS.get(op.type, _MISSING) in (
            _MISSING, None, registry.USE_TF_GRADIENT)):
      return tf_compat.routed_through_tfgrad(value), None
    kind = None  # TF's delayed-rewrite call gradient: tfgrad's rule builds it
  op_type = value if kind == "type" else op.type
  rule = registry.GRADIENTS.get(op_type, _MISSING)
  if rule is registry.USE_TF_GRADIENT:
    return _tf_rule(op_type), None
  if rule is not _MISSING:
    return rule, None
  if not strict or kind == "type":
    try:
      return _tf_rule(op_type), None
    except LookupError:
      pass
  if tf_compat.is_function_call(op, src_graph):
    func = tf_compat.function_definition(op, src_graph)
    return func.python_grad_func, func
  return _MISSING, None


def _tf_rule(op_type):
  """TF's registered rule for `op_type`, run so that the bodies TF's
  control-flow and function-call rules differentiate go through tfgrad."""
  return tf_compat.routed_through_tfgrad(
      tf_compat.tf_registry_lookup(op_type))


def blocks_gradient(op, src_graph, strict):
  """True if `op` is declared not differentiable (no rule, no override):
  nothing downstream of it needs a gradient through it."""
  if registry.GRADIENTS.get(op.type, _MISSING) is not None:
    return False
  rule, func_call = find_rule(op, src_graph, strict)
  return rule is None and func_call is None


def gradient_blocker(src_graph, strict):
  """`blocks_gradient` for one walk, asked for most ops the walk reaches:
  an op type with a rule in tfgrad's registry is remembered, so that its
  ops cost one set lookup. Create one per walk (the registry may change
  between calls)."""
  registered = set()
  lookup = registry.GRADIENTS.get
  def blocks(op):
    op_type = op.type
    if op_type in registered:
      return False
    if lookup(op_type, _MISSING) is not None:
      registered.add(op_type)
      return False
    return blocks_gradient(op, src_graph, strict)
  return blocks


def _missing_rule_error(state, op):
  chain = graph_walk.path_from_ys(op, state.to_ops, state.resolver)
  kind, name = tf_compat.override(op, state.attrs_of(op))
  if kind == "type":
    what = (f"gradient_override_map names '{name}' for it, which is not "
            "registered in tfgrad's or TF's registry")
  else:
    where = ("tfgrad's registry (strict mode: TF's registry is not "
             "consulted)" if state.options.strict
             else "tfgrad's or TF's registry")
    what = f"no rule for '{op.type}' in {where}"
  error = LookupError()
  error.missing_gradient = (op, what, chain)
  return _with_path(error, chain)


def _with_path(error, chain):
  """Sets the missing-gradient LookupError's message for `chain`, the op
  names from a y down to the op (through function and loop bodies)."""
  op, what, _ = error.missing_gradient
  error.missing_gradient = (op, what, chain)
  error.args = (
      f"No gradient defined for operation '{op.name}' (op type: {op.type}): "
      f"{what}. Path from a y to this op: {' <- '.join(chain)}. Register "
      "one with tfgrad.RegisterGradient, or wrap the value in "
      "tf.stop_gradient if it should be a constant.",)
  return error


def _through_body(state, op, error):
  """A missing gradient inside the body of `op` (a function call, loop or
  cond, whose rule differentiated the body): the path gains the chain
  from this pass's ys down to `op`."""
  missing = getattr(error, "missing_gradient", None)
  if missing is None or missing[0] is op:
    return error
  outer = graph_walk.path_from_ys(op, state.to_ops, state.resolver)
  inner = error.missing_gradient[2]
  return _with_path(error, outer + [f"[body of {op.type}]"] + inner)


def _input_grads(state, op, out_grads):
  """Calls the op's rule; None when nothing flows back through `op`."""
  for g in out_grads:
    if g is not None:
      break
  else:
    return None
  if op in state.subgraph.stop_ops:
    return None
  attrs = state.attrs_of(op)
  rule, func_call = state.rule_of(op)
  if rule is _MISSING:
    raise _missing_rule_error(state, op)
  is_call = func_call is not None
  if rule is None and not is_call:
    return None
  if not getattr(rule, "takes_none_for_unreached_outputs", False):
    _fill_missing_output_grads(state, op, out_grads, needs_all=rule is None)
  # (an op without private attributes, and no call, has no XLA scope)
  xla_scope = (tf_compat.xla_attr_scope(op, attrs, func_call,
                                        state.grad_scope)
               if attrs or is_call else _NO_SCOPE)
  with tf_compat.op_grad_scope(tf_compat.default_graph(), state.src_graph,
                               op), xla_scope:
    if not getattr(rule, "takes_known_gradients", False):
      out_grads = [emit.materialize(g) for g in out_grads]
    if rule is not None:
      skip = graph_walk.unneeded_inputs(op, state.subgraph.members,
                                        state.resolver)
      in_grads = _call_rule(state, rule, op, out_grads, skip)
    else:
      in_grads = tf_compat.symbolic_gradient(op, out_grads)
    in_grads = _as_grad_list(in_grads)
    _check_arity(op, in_grads, len(state.resolver.inputs(op)))
    if state.options.gate and sum(g is not None for g in in_grads) > 1:
      in_grads = [emit.materialize(g) for g in in_grads]
      with tf.device(None), tf_compat.colocate_for_gradient(
          None, state.gradient_uid, ignore_existing=True):
        in_grads = tf.tuple(in_grads)
  return in_grads


def _call_rule(state, rule, op, out_grads, skip):
  """Calls the rule, telling it which inputs need no gradient
  (`rule_context.unneeded_inputs`, per thread, for this call only: nothing
  is written onto the Operation, which other callers share). A TypeError
  or ValueError the rule raises (a grad_ys entry of another dtype or shape
  than a rule can combine with y, say) is raised again with the op, and
  the grad_ys entries among its gradients, named."""
  try:
    if not skip:
      return rule(op, *out_grads)
    with rule_context.calling(op, skip):
      return rule(op, *out_grads)
  except (TypeError, ValueError) as e:
    if type(e) not in (TypeError, ValueError):
      raise
    seeds = _seeds_among(state, op, out_grads)
    raise type(e)(
        f"{e} (in the gradient of op '{op.name}' (op type: {op.type})"
        + (f"; {', '.join(seeds)}" if seeds else "") + ")") from e


def _seeds_among(state, op, out_grads):
  """Says which of `op`'s output gradients are grad_ys entries, for
  error messages."""
  return [f"output {i}'s gradient is grad_ys[{state.seeds[id(g)]}] "
          f"({type(g).__name__}, {g.dtype.name}, shape {g.shape}; the "
          "output is "
          f"{op.outputs[i].dtype.name}, shape {op.outputs[i].shape})"
          for i, g in enumerate(out_grads)
          if g is not None and id(g) in state.seeds]


def _fill_missing_output_grads(state, op, out_grads, needs_all):
  """Rules receive zeros, not None, for trainable outputs nothing reached;
  SymbolicGradient (`needs_all`) needs them for every output."""
  if state.options.optimize_identity_n and tf_compat.is_identity_n(op):
    return
  for i, g in enumerate(out_grads):
    if g is not None:
      continue
    out = op.outputs[i]
    if (needs_all or tf_compat.is_trainable(out)) \
        and tf_compat.supports_default_grad(out):
      out_grads[i] = state.zeros_for(op, i)


_GRADIENT_TYPES = (tf.Tensor, tf.IndexedSlices, emit.Known)


def _check_arity(op, in_grads, n_inputs):
  """A rule's result: one gradient per input (ValueError, as TF), each
  None, a Tensor or IndexedSlices (AttributeError, TF's type for a result
  without a name: a string, a numpy array, a nested list). `n_inputs` is
  `len(op.inputs)` (the resolver's inputs: one per input)."""
  for i, g in enumerate(in_grads):
    if g is not None and not isinstance(g, _GRADIENT_TYPES) \
        and not hasattr(g, "name"):
      raise AttributeError(
          f"Gradient rule for op '{op.name}' (op type: {op.type}) returned "
          f"a {type(g).__name__} for input index {i}, where a Tensor, "
          f"IndexedSlices or None is due ('{type(g).__name__}' object has "
          "no attribute 'name')")
  if len(in_grads) != n_inputs \
      and not tf_compat.rule_may_return_fewer_grads(op):
    raise ValueError(
        f"Gradient rule for op '{op.name}' (op type: {op.type}) returned "
        f"{len(in_grads)} gradients, but the op has {len(op.inputs)} inputs")


_SHAPED = (tf.Tensor, emit.Known)


def _hand_to_inputs(state, op, in_grads):
  """Checks each gradient's static shape against its input's and records it."""
  for i, (t, g) in enumerate(zip(state.resolver.inputs(op), in_grads)):
    if g is None:
      continue
    if isinstance(g, _SHAPED) and not tf_compat.is_resource(t):
      try:
        _refine_shape(g, t)
      except ValueError:
        seeds = _seeds_among(state, op, state.grads.get(op) or [])
        raise ValueError(
            "Incompatible shapes between op input and calculated input "
            f"gradient: op '{op.name}' (op type: {op.type}), input index {i}, "
            f"input shape {t.shape}, gradient shape {g.shape}"
            + (f" ({'; '.join(seeds)})" if seeds else "")) from None
    if not tf_compat.is_eager_tensor(t):
      add_gradient(state.grads, t, g)


def _refine_shape(g, t):
  """g.set_shape(t.shape). When both static shapes are fully known and
  equal (nearly always), read from the graph without building a
  TensorShape for either: nothing to refine or check. Otherwise without
  the call into the graph when g's static shape is fully known (then
  there is nothing to refine, only to check; an `emit.Known` always is)."""
  if tf_compat.same_static_shape(g, t):  # (False for an `emit.Known`)
    return
  shape = t.shape
  known = g.shape
  if known.is_fully_defined():
    if not known.is_compatible_with(shape):
      raise ValueError(f"shapes {known} and {shape} are incompatible")
    return
  g.set_shape(shape)


def _collect(state, x):
  per_output = state.grads.get(x.op)
  g = per_output[x.value_index] if per_output else None
  if isinstance(g, list):  # x's op was never processed: sum what arrived
    g = aggregate.aggregate([emit.materialize(c) for c in g], x.op,
                            x.value_index, state.options.aggregation,
                            state.gradient_uid)
  g = emit.materialize(g)
  if g is None and per_output and _tf_fills_zeros(state, x.op, x.value_index):
    g = tf_compat.zeros_for_output(x.op, x.value_index)
  if g is None and state.options.unconnected == tf.UnconnectedGradients.ZERO:
    return tf_compat.zeros_like_unconnected(x)
  return g


def _tf_fills_zeros(state, op, index):
  """Whether stock TF, processing `op` (some output of it got a gradient),
  gives output `index` zeros in place of a missing gradient: it does so for
  the op's rule, and an x there gets them. That happens when the op is not
  stopped and has a rule, or is a call of a graph function; for trainable
  outputs, or every output of a call TF differentiates by SymbolicGradient.
  Decided by TF's walk and registry, so that tfgrad's pruning and its own
  rule markers never change what an x gets."""
  out = op.outputs[index]
  if not tf_compat.supports_default_grad(out) or (
      state.options.optimize_identity_n and tf_compat.is_identity_n(op)):
    return False
  is_call = tf_compat.is_function_call(op, state.src_graph)
  has_rule = (not graph_walk.stops_in_unpruned_walk(op, state.subgraph,
                                                     state.resolver)
              and _has_tf_rule(state, op))
  return (is_call and not has_rule) or (
      has_rule and tf_compat.is_trainable(out))


def _has_tf_rule(state, op):
  """True if TF's lookup (`ops.get_gradient_function`) finds a rule for
  `op`; where TF finds none and the op is no call, tfgrad's own view (TF
  would raise there)."""
  kind, value = tf_compat.override(op, state.attrs_of(op))
  if kind == "function":
    return True
  try:
    return tf_compat.tf_registry_lookup(
        value if kind == "type" else op.type) is not None
  except LookupError:
    return state.rule_of(op)[0] not in (None, _MISSING)
