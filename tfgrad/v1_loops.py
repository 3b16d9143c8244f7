"""Gradients through v1 while loops: tfgrad's own loop state.

A v1 loop (built by `tf.compat.v1.while_loop` when control flow v2 is off:
`tf.compat.v1.nn.dynamic_rnn`, `tf.scan`, `tf.map_fn`, `tf.foldl` in a TF1
program) is a frame of Enter/Merge/Switch/NextIteration/Exit ops with a
`WhileContext` on them. Its gradient is a second v1 loop, made with TF's
`WhileContext` class, that runs the forward loop's iterations last first.
This module decides everything around that loop, in named phases:

  plan       `LoopStates.plan`: one `LoopGradState` per forward loop whose
             Exit lies between xs and ys, outer loops before inner ones;
             every Exit of such a loop joins the pass, so that a loop
             variable nothing reached still gets zeros (its gradient flows
             through the body into the others)
  counters   `LoopGradState.__init__`: a counter added to the forward loop
             (how many iterations ran) and the gradient loop counting it
             down, which is what makes the gradient loop stop
  history    `LoopGradState.GetRealValue`: a forward value the gradient
             loop reads is pushed on a stack in every forward iteration
             (`StackPushV2`, honouring the loop's `swap_memory`) and popped
             in every gradient iteration; values computed in the loop body
             outside its conds share one stack per dtype (`_push_pooled`,
             `_pop_pooled`); `add_value` (or `WhileContext.AddValue`) of
             the gradient loop calls it for each forward tensor an op there
             reads, the rules call it for cond predicates
  schedule   `LoopStates.release`: a loop's Exits wait for each other
             (the gradient loop starts once all are known, with zeros for
             those nothing reached), and a loop's Switch is visited twice:
             from its Exit, then from the body
  finish     `LoopStates.finish`: a gradient loop variable whose body gave
             no gradient back is fed zeros from the second iteration on

The names TF's `WhileContext` and `control_flow_util` call on a gradient
loop's `grad_state` (`forward_context`, `outer_grad_state`,
`forward_index`, `grad_sync`, `GetRealValue`, `AddForwardAccumulator`,
`AddBackpropAccumulatedValue`) keep TF's spelling for that reason.

The loop machinery (counters, Enters, Merges, Switches, back edges,
stacks) is built by the lean path of `tf_compat.create_op`, which inside a
v1 while context does what `WhileContext.AddOp` does; TF's own builders
remain for reference dtypes, IndexedSlices and unknown shapes.

This module is the adapter for v1 frames: it reaches into TF's private
control-flow context API (`_get_control_flow_context`,
`_add_control_input`, `control_flow_ops._Enter`, ...; TF 2.16-2.21) and
nothing else in tfgrad does, apart from the rules in
`ops/v1_control_flow_grad.py`, which call its helpers.
"""

import contextlib
import functools

import tensorflow as tf

from tensorflow.python.ops import array_ops
from tensorflow.python.ops import control_flow_ops
from tensorflow.python.ops import control_flow_util
from tensorflow.python.ops import control_flow_v2_func_graphs
from tensorflow.python.ops import default_gradient
from tensorflow.python.ops import gen_data_flow_ops

# pylint: disable=protected-access,invalid-name

WhileContext = control_flow_ops.WhileContext
CondContext = control_flow_ops.CondContext

is_switch = control_flow_util.IsSwitch
check_input_context = control_flow_util.CheckInputFromValidContext
is_loop_switch = control_flow_util.IsLoopSwitch
while_context_of = control_flow_util.GetWhileContext
output_context_of = control_flow_util.GetOutputContext

merge = control_flow_ops.merge
switch = control_flow_ops.switch

_EXIT_TYPES = frozenset(["Exit", "RefExit"])
_ENTER_TYPES = frozenset(["Enter", "RefEnter"])


def is_loop_exit(op):
  """`control_flow_util.IsLoopExit`, reading the op's type once (each read
  is a C API call; the lean loop path asks for every input of every op)."""
  return op.type in _EXIT_TYPES


def is_loop_constant_enter(op):
  """`control_flow_util.IsLoopConstantEnter` (an Enter of a loop
  invariant), reading the type once and the flag through the typed
  attribute getter rather than `get_attr`'s AttrValue parse."""
  return op.type in _ENTER_TYPES and op._get_attr_bool("is_constant")


def context_of(op):
  """The v1 control-flow context `op` was built in (None outside any)."""
  return op._get_control_flow_context()


def current_context():
  """The default graph's current v1 control-flow context."""
  return tf.compat.v1.get_default_graph()._get_control_flow_context()


def switch_ref_or_tensor(data, pred, name="Switch"):
  return control_flow_ops._SwitchRefOrTensor(data, pred, name=name)


def enter_frame(t, frame, is_constant, parallel_iterations, name):
  """`t` entered into loop frame `frame` (an Enter op with `t`'s shape),
  by the lean path for a plain tensor."""
  if not _plain(t):
    return control_flow_ops._Enter(t, frame, is_constant=is_constant,
                                   parallel_iterations=parallel_iterations,
                                   name=name)
  entered = _build_op("Enter", [t], name, T=_type_attr(t),
                      frame_name=dict(s=frame.encode()),
                      is_constant=dict(b=is_constant),
                      parallel_iterations=dict(i=parallel_iterations))
  entered = entered.outputs[0]
  entered.set_shape(t.shape)
  return entered


def exit_frame(t, name="Exit"):
  """`t` leaving its loop frame (an Exit op), by the lean path for a plain
  tensor."""
  if not _plain(t):
    return control_flow_ops.exit(t, name=name)
  return _build_op("Exit", [t], name, T=_type_attr(t)).outputs[0]


def add_value(ctxt, val):
  """`ctxt.AddValue(val)` (`val` as v1 context `ctxt` reads it), with a
  new loop invariant's Enter built by the lean path: a value `ctxt`
  already knows is looked up in TF's own per-context maps; one from
  outside is entered from the outer context's view of it, once, and
  recorded in those maps as TF records it; a forward value read in a
  gradient loop is its history (`GetRealValue`). TF's method does the
  rest: cond contexts, reference dtypes, control dependency scopes."""
  if not isinstance(ctxt, WhileContext) or not _plain(val):
    return ctxt.AddValue(val)
  name = val.name
  if name in ctxt._values or val.op._control_flow_context is ctxt:
    found = ctxt._external_values.get(name)
    return val if found is None else found
  graph = val.graph
  if graph._control_dependencies_for_inputs([val.op]):
    return ctxt.AddValue(val)
  now = current_context()
  now = now.GetWhileContext() if now is not None else None
  if now is not None and now.grad_state is not None:
    fwd = while_context_of(val.op)
    if fwd is not None and is_loop_exit(val.op):
      fwd = fwd.outer_context
      fwd = fwd.GetWhileContext() if fwd is not None else None
    if fwd == now.grad_state.forward_context:  # its history, as TF reads it
      ctxt._values.add(name)
      found = ctxt._external_values[name] = now.grad_state.GetRealValue(val)
      return found
  ctxt._values.add(name)
  outer = ctxt.outer_context
  result = add_value(outer, val) if outer is not None else val
  entered = _build_op("Enter", [result], "Enter", bare=True,
                      T=_type_attr(result),
                      frame_name=dict(s=ctxt.name.encode()),
                      is_constant=dict(b=True),
                      parallel_iterations=dict(
                          i=ctxt.parallel_iterations)).outputs[0]
  entered.set_shape(result.shape)
  graph.prevent_feeding(entered)
  if outer is not None:
    outer.AddInnerOp(entered.op)
  entered.op._set_control_flow_context(ctxt)
  graph._record_op_seen_by_control_dependencies(entered.op)
  ctxt._values.add(entered.name)
  ctxt._external_values[name] = entered
  return entered


def _const(value, dtype, name, shape=None):
  """A constant in the current context, by the lean path."""
  proto = _scalar_proto(value, tf.as_dtype(dtype), shape)
  if proto is None:
    proto = tf.make_tensor_proto(value, dtype, shape)
  return _build_op("Const", [], name, value=dict(tensor=proto),
                   dtype=dict(type=tf.as_dtype(dtype).as_datatype_enum)
                   ).outputs[0]


# TensorProto fields holding one value of these dtypes.
_SCALAR_FIELD = {tf.float32: "float_val", tf.float64: "double_val",
                 tf.int32: "int_val", tf.int64: "int64_val"}


def _scalar_proto(value, dtype, shape):
  """`tf.make_tensor_proto(value, dtype, shape)` for a Python int or float
  (filling `shape`, a list of ints, or a scalar), built directly: the same
  proto (one value and the shape), without the generic path's numpy
  conversions, which cost about two op creations. None for anything else."""
  field = _SCALAR_FIELD.get(dtype)
  if field is None or type(value) not in (int, float) \
      or (dtype.is_integer and type(value) is not int) \
      or (shape and 0 in shape):
    return None
  from tfgrad import tf_compat  # pylint: disable=g-import-not-at-top
  proto = tf_compat.tensor_proto(dtype, shape or ())
  getattr(proto, field).append(value)
  return proto


# `tf.zeros` of a static shape below this many elements is one Const
# holding a single value (above, a Fill).
_SMALL_ZEROS = 1000


def _static_zeros(shape, dtype):
  """`tf.zeros(shape, dtype)` for a fully defined `shape`: the same Const
  (name, value, shape), built by the lean path in the current context
  when TF would build a Const of one of the common dtypes; TF's `zeros`
  otherwise."""
  dims = shape.as_list()
  size = 1
  for d in dims:
    size *= d
  if dtype not in _SCALAR_FIELD or not 0 < size < _SMALL_ZEROS:
    return tf.zeros(dims, dtype)
  return _const(0, dtype, "zeros", dims)


def add_forward_counter(fwd, outer):
  """`WhileContext.AddForwardLoopCounter` (`n = 0; while pivot: n += 1` in
  forward loop `fwd`, the count leaving it), built by the lean path, in
  the outer context of `fwd`. Nested (`outer`: the outer loop's grad
  state), the count starts only after the outer iteration's counter step,
  so that the pushes of consecutive runs of `fwd` stay in order. Returns
  (count, the NextIteration of the index)."""
  zero = _const(0, tf.int32, "f_count")
  if outer is not None:
    zero.op._add_control_input(outer.forward_index.op.inputs[0].op)
  fwd.Enter()
  try:
    fwd.AddName(zero.name)
    entered = enter_frame(zero, fwd.name, False, fwd.parallel_iterations,
                          "f_count")
    fwd.loop_enters.append(entered)
    n = lean_merge([entered, entered])
    done, going = lean_switch(n, fwd.pivot, colocate=False)
    index = _build_op("AddV2", [going, _const(1, tf.int32, "f_count/y")],
                      "Add", T=_type_attr(going)).outputs[0]
    next_n = lean_next_iteration(index)
    n.op._update_input(1, next_n)
    total = exit_frame(done, "f_count")
    fwd.loop_exits.append(total)
    fwd.ExitResult([total])
  finally:
    fwd.Exit()
  return total, next_n


def add_invariant_accumulator(grad_ctxt, op, grad):
  """`WhileContext.AddBackpropAccumulator` (a loop in gradient loop
  `grad_ctxt` summing the gradient of loop invariant `op` over all
  iterations, starting from zeros), by the lean path when `grad` is a plain
  tensor of static shape; TF's method otherwise (the zeros' shape is then
  recorded from the forward loop)."""
  if not (_plain(grad) and grad.shape.is_fully_defined()):
    return grad_ctxt.AddBackpropAccumulator(op, grad)
  with _outside(grad_ctxt), _inside(grad_ctxt.outer_context):
    zeros = _const(0, grad.dtype, "b_acc", grad.shape.as_list())
  grad_ctxt.AddName(zeros.name)
  entered = enter_frame(zeros, grad_ctxt.name, False,
                        grad_ctxt.parallel_iterations, "b_acc")
  grad_ctxt.loop_enters.append(entered)
  acc = lean_merge([entered, entered], name="b_acc")
  done, going = lean_switch(acc, grad_ctxt.pivot, colocate=False)
  total = _build_op("AddV2", [going, grad], "Add",
                    T=_type_attr(grad)).outputs[0]
  acc.op._update_input(1, lean_next_iteration(total))
  result = exit_frame(done, "b_acc")
  grad_ctxt.loop_exits.append(result)
  grad_ctxt.ExitResult([result])
  return result


def close_back_edge(merge_t, value):
  """Feeds `value` into the second input of the gradient loop's Merge
  through a NextIteration (no shape invariant: the first iteration's
  zeros may be less specific)."""
  if not _plain(merge_t, value):
    control_flow_ops._AddNextAndBackEdge(merge_t, value,
                                         enforce_shape_invariant=False)
    return
  merge_t.op._update_input(1, lean_next_iteration(value))


def _dynamic_shape(t):
  """Shape(t) as an op (never folded to a constant, so that it can be
  pushed on a stack where it is computed)."""
  return array_ops.shape_internal(t, optimize=False)


def _in_xla(op):
  """True if `op` is compiled by XLA: inside an XLA compile context
  (`xla.compile`, TPU rewrites) or tagged `_XlaCompile` (`jit_scope`)."""
  return control_flow_util.IsInXLAContext(op)


def _xla_context_of(value):
  """The XLA compile context `value` is built in (`xla.compile`, a TPU
  rewrite), or None: a history stack must be made in it to be compiled
  with the loop, as stock makes it in the context the gradient was
  called in (which `control_dependencies(None)` has cleared here)."""
  return control_flow_util.GetContainingXLAContext(context_of(value.op))


def _xla_stack_size(value, loop, ctxt):
  """The max_size XLA needs for a stack holding `value` once per iteration
  of forward loop `loop`, made in context `ctxt` (where the gradient is
  built): the product of the `maximum_iterations` of `loop` and of the
  loops around it up to `ctxt`. A bound built outside `ctxt`'s reach (in
  an enclosing loop's body) must be a static value. Raises stock's
  ValueError when a loop has no bound, or a bound out of reach is not
  static."""
  static, dynamic = 1, []
  while loop not in (None, ctxt):
    bound = loop.maximum_iterations
    if bound is None:
      raise ValueError(
          f"Cannot create a gradient accumulator for tensor '{value.name}' "
          "inside XLA while_loop because maximum_iterations was not passed "
          f"to the tf.while_loop call ('{loop.name}').")
    bound_ctxt = bound.op._get_control_flow_context()
    if control_flow_util.IsContainingContext(ctxt, bound_ctxt):
      dynamic.append(bound)
    else:
      known = tf.get_static_value(bound)
      if known is None:
        raise ValueError(
            f"Cannot create a gradient accumulator for tensor '{value.name}' "
            f"inside XLA while_loop. maximum_iterations tensor '{bound.name}' "
            f"for while_loop context '{loop.name}' must be statically known "
            "(e.g. a constant value or known shape dimension), or be defined "
            f"at or outside the while loop context "
            f"'{ctxt.name if ctxt is not None else ''}' (currently defined in "
            f"'{bound_ctxt.name}').")
      static *= int(known)
    loop = control_flow_util.GetContainingWhileContext(loop.outer_context,
                                                       stop_ctxt=ctxt)
  size = tf.constant(static, tf.int32, name="f_acc_size")
  for bound in dynamic:
    size = size * bound
  return size


def _is_constant(t):
  return t.op.type == "Const"


def _constant_enter_of(t):
  """The Enter of a loop invariant `t` stands for (through Identity and
  Switch), or None."""
  return control_flow_util.GetLoopConstantEnter(t)


class _inside:  # pylint: disable=invalid-name
  """Within v1 context `ctxt` (None: as it is). A class, not a generator:
  the backprop pass enters one per op."""

  __slots__ = ("_ctxt",)

  def __init__(self, ctxt):
    self._ctxt = ctxt

  def __enter__(self):
    if self._ctxt is not None:
      self._ctxt.Enter()

  def __exit__(self, *exc):
    if self._ctxt is not None:
      self._ctxt.Exit()
    return False


inside = _inside  # (for tf_compat)


class _RuleContext(_inside):
  """`LoopStates.context`: within a gradient loop, checking on entry that
  `op` is not a loop Switch reached from inside its own loop."""

  __slots__ = ("_check",)

  def __init__(self, ctxt, check):
    super().__init__(ctxt)
    self._check = check

  def __enter__(self):
    super().__enter__()
    if self._check is not None:
      try:
        _check_not_initial_value(*self._check)
      except BaseException:
        self.__exit__()
        raise


@contextlib.contextmanager
def _outside(ctxt):
  """Out of v1 context `ctxt` for a while (it is the current one)."""
  ctxt.Exit()
  try:
    yield
  finally:
    ctxt.Enter()


def _outside_all_loops(t):
  """The tensor loop invariant `t` enters its loops from."""
  while True:
    enter = _constant_enter_of(t)
    if enter is None:
      return t
    t = enter.inputs[0]


_PASSES_HANDLE_ON = frozenset(["Enter", "RefEnter", "Identity", "Switch",
                               "Merge", "Exit", "NextIteration"])
_READS_ONLY = frozenset(["ReadVariableOp", "ResourceGather",
                         "ResourceGatherNd", "VariableShape",
                         "VarIsInitializedOp"])


def _never_written(handle):
  """True if `handle` is a VarHandleOp's and every op of the graph using
  it (through frames) only reads it, or is the variable's initializer."""
  if handle.op.type != "VarHandleOp":
    return False
  graph = handle.graph
  initializers = set()
  for key in (tf.compat.v1.GraphKeys.GLOBAL_VARIABLES,
              tf.compat.v1.GraphKeys.LOCAL_VARIABLES):
    for v in graph.get_collection(key):
      init = getattr(v, "initializer", None)
      if init is not None:
        initializers.add(init)
  seen, stack = set(), [handle]
  while stack:
    for user in stack.pop().consumers():
      if user in seen:
        continue
      seen.add(user)
      if user.type in _PASSES_HANDLE_ON:
        stack.extend(user.outputs)
      elif user.type not in _READS_ONLY and user not in initializers:
        return False
  return True


def _sync_trigger(ctxt, index, name):
  """A ControlTrigger in `ctxt` that the loop index waits for: pushes or
  pops made control inputs of it run in iteration order."""
  trigger = _build_op("ControlTrigger", [], name, bare=True)
  trigger._set_control_flow_context(ctxt)
  index.op._add_control_input(trigger)
  return trigger


def _add_backprop_counter(grad_ctxt, count, outer):
  """The gradient loop's counter, which drives it: `n = count; while n >= 1:
  n -= 1` (its predicate and body index become the context's pivots).
  Returns the NextIteration of the index. Unlike `WhileContext.
  AddBackpropLoopCounter`, the counter leaves the loop (an Exit) only in a
  nested gradient loop, where the outer loop's pops wait for it; the
  outermost loop's would be a dead op."""
  one = _const(1, tf.int32, "b_count")
  grad_ctxt.Enter()
  try:
    grad_ctxt.AddName(count.name)
    entered = enter_frame(count, grad_ctxt.name, False,
                          grad_ctxt.parallel_iterations, name="b_count")
    grad_ctxt.loop_enters.append(entered)
    n = lean_merge([entered, entered])
    grad_ctxt._pivot_for_pred = n
    going_on = _build_op("GreaterEqual", [n, one], "GreaterEqual",
                         T=_type_attr(n)).outputs[0]
    grad_ctxt._pivot = _build_op("LoopCond", [going_on],
                                 "b_count").outputs[0]
    done, going = lean_switch(n, grad_ctxt._pivot, colocate=False)
    index = _build_op("Sub", [going, one], "Sub",
                      T=_type_attr(going)).outputs[0]
    grad_ctxt._pivot_for_body = index
    next_n = lean_next_iteration(index)
    n.op._update_input(1, next_n)
    if outer is not None:
      final = exit_frame(done, name="b_count")
      grad_ctxt.loop_exits.append(final)
      outer.grad_sync._add_control_input(final.op)
      grad_ctxt.ExitResult([final])
  finally:
    grad_ctxt.Exit()
  return next_n


def _cond_inside(ctxt, stop):
  """The innermost CondContext from `ctxt` out to (not including) `stop`."""
  while ctxt and ctxt != stop:
    if isinstance(ctxt, CondContext):
      return ctxt
    ctxt = ctxt.outer_context
  return None


def _build_op(op_type, inputs, name=None, grouped=None, bare=False,
              own_order=False, **attrs):
  """One op of the loop machinery through `tf_compat.create_op` (its lean
  path, also inside v1 loop contexts), with `attrs` given as AttrValue
  fields (`T=dict(type=...)`). Unlike `emit.raw`, never made to wait for
  the gradient a rule is building: a history push or pop is ordered by
  the loop's own triggers, and a wait across frames would be invalid.
  With `own_order`, the graph's control dependency scopes are ignored too
  (as `control_dependencies(None)` would, in the current context).
  (`tf_compat` is imported late: it imports this module.)"""
  from tfgrad import tf_compat  # pylint: disable=g-import-not-at-top
  graph = tf.compat.v1.get_default_graph()
  attrs = {k: _attr_of(v, tf_compat) for k, v in attrs.items()}
  if bare:  # no context bookkeeping: the caller does it
    return tf_compat.create_op_bare(graph, op_type, inputs, attrs, name)
  return tf_compat.create_op(graph, op_type, inputs, attrs,
                             tf_compat.op_def(op_type), name,
                             list(inputs) if grouped is None else grouped,
                             use_control_dependencies=not own_order)


# AttrValue fields whose values are few (dtypes, flags, small counts).
_CACHED_FIELDS = frozenset(["type", "b", "i"])


def _attr_of(fields, tf_compat):
  """The AttrValue of `fields` (one field: a shared serialized proto for
  the few values of `_CACHED_FIELDS`)."""
  if len(fields) == 1:
    (item,) = fields.items()
    if item[0] in _CACHED_FIELDS:
      return _scalar_attr(item)
  return tf_compat.attr_value(**fields)


@functools.lru_cache(maxsize=256)
def _scalar_attr(field):
  """The AttrValue with one scalar `field` (name, value) of
  `_CACHED_FIELDS`, serialized once: the loop machinery sets the same few
  on many ops. Never mutated."""
  from tfgrad import tf_compat  # pylint: disable=g-import-not-at-top
  proto = tf_compat.attr_value(**dict([field]))
  tf_compat.keep_serialized(proto)
  return proto


def _plain(*ts):
  """True for Tensors of non-reference dtypes (the ops below build their
  plain form for them; TF's wrappers handle the rest)."""
  return all(isinstance(t, tf.Tensor) and not t.dtype._is_ref_dtype
             for t in ts)


def _type_attr(t):
  return dict(type=t.dtype.as_datatype_enum)


def lean_merge(values, name="Merge"):
  """`merge(values)[0]` for plain tensors, built by the lean path."""
  if not _plain(*values):
    return merge(values, name=name)[0]
  return _build_op("Merge", list(values), name, [list(values)],
                   T=_type_attr(values[0]), N=dict(i=len(values))).outputs[0]


def _colocated_with(t):
  """`tf.compat.v1.colocate_with(t)`, kept on the lean path."""
  from tfgrad import tf_compat  # pylint: disable=g-import-not-at-top
  return tf_compat.colocated_with_tensor(t)


def lean_switch(data, pred, name="Switch", colocate=True):
  """`switch_ref_or_tensor(data, pred)` (colocated with `data`, or, when not
  `colocate`, `switch(data, pred)`) for plain tensors, by the lean path."""
  if not _plain(data):
    if colocate:
      return switch_ref_or_tensor(data, pred, name=name)
    return switch(data, pred, name=name)
  from tfgrad import tf_compat  # pylint: disable=g-import-not-at-top
  where = (tf_compat.colocated_with_tensor(data, ignore_existing=True)
           if colocate else contextlib.nullcontext())
  with where:
    return tuple(_build_op("Switch", [data, pred], name,
                           T=_type_attr(data)).outputs)


def lean_next_iteration(value):
  """`_NextIteration(value)` for a plain tensor, by the lean path."""
  if not _plain(value):
    return control_flow_ops._NextIteration(value)
  return _build_op("NextIteration", [value], "NextIteration",
                   T=_type_attr(value)).outputs[0]


class _StackPool:
  """One history stack shared by the values of one dtype a forward loop
  pushes per iteration: its handle, the handle entered into the loop, and
  the latest push and pop made for it (each new one is ordered against
  them)."""

  def __init__(self, stack, handle_in_loop):
    self.stack = stack
    self.handle_in_loop = handle_in_loop
    self.last_push = None
    self.last_pop = None


# ----- one forward loop and its gradient loop -----

class LoopGradState:
  """A forward v1 loop and the gradient loop tfgrad builds for it (TF's
  `WhileContext` holds this object as its `grad_state`)."""

  def __init__(self, forward_ctxt, outer_grad_state, shared):
    if not hasattr(forward_ctxt, "outer_context"):
      raise ValueError(
          f"The v1 while loop '{forward_ctxt.name}' lost its context "
          "(import the graph through a MetaGraphDef to differentiate it)")
    self.forward_context = forward_ctxt
    self.outer_grad_state = outer_grad_state
    self.history_map = {}    # forward tensor name -> its value in the loop
    self.switch_map = {}     # forward loop Switch -> gradient Merge
    self.forward_loop_exits = list(forward_ctxt.loop_exits)
    self.pending_exits_count = len(self.forward_loop_exits)
    self.unused_exits = []
    self.deferred_exits = []
    self._forward_sync = None
    self._grad_sync = None
    self._shared = shared   # per call: (graph, context) -> Const(-1)
    self._pools = {}        # (dtype, context, device) -> _StackPool
    self._pool_of = {}      # a pooled stack's op -> its _StackPool
    self._add_counters()

  def _add_counters(self):
    """The counters phase: the forward loop counts its iterations, the
    gradient loop counts that number down to zero. Nested in an outer
    loop, the count is one more value the outer gradient loop reads per
    iteration (from the outer loop's history)."""
    fwd, outer = self.forward_context, self.outer_grad_state
    outer_fwd = outer.forward_context if outer else fwd.outer_context
    with fwd._graph.as_default(), _inside(outer_fwd):
      count, self.forward_index = add_forward_counter(fwd, outer)
    if outer:
      outer_fwd.AddName(count.name)
      history = outer.AddForwardAccumulator(count)
    with _inside(outer.grad_context if outer else outer_fwd):
      self.grad_context = WhileContext(
          maximum_iterations=fwd.maximum_iterations,
          parallel_iterations=fwd.parallel_iterations,
          back_prop=fwd.back_prop, swap_memory=fwd.swap_memory,
          name=fwd.name, grad_state=self)
      if outer:
        count = outer.AddBackpropAccumulatedValue(history, count)
      self.grad_index = _add_backprop_counter(self.grad_context, count, outer)

  @property
  def grad_sync(self):
    """Control trigger ordering the stack pops of gradient iterations."""
    if self._grad_sync is None:
      self._grad_sync = _sync_trigger(self.grad_context, self.grad_index,
                                      "b_sync")
      if self.grad_context.outer_context:
        self.grad_context.outer_context.AddInnerOp(self._grad_sync)
    return self._grad_sync

  @property
  def forward_sync(self):
    """Control trigger ordering pushes made inside conds of the loop."""
    if self._forward_sync is None:
      self._forward_sync = _sync_trigger(self.forward_context,
                                         self.forward_index, "f_sync")
    return self._forward_sync

  # ----- history: forward values read by the gradient loop -----

  def AddForwardAccumulator(self, value, dead_branch=False):
    """A stack in the forward loop's outer frame onto which every forward
    iteration pushes `value` (inside the cond branch `value` comes from,
    on the branch not taken when `dead_branch`). Pushes run after the
    iteration's counter step, so they stay in iteration order. Returns the
    stack handle."""
    fwd = self.forward_context
    with self.forward_index.graph.as_default(), \
        tf.control_dependencies(None):
      where = current_context()
      if where is None:  # an XLA compile context's stacks are made in it
        where = _xla_context_of(value)
      if (not dead_branch and output_context_of(value.op) == fwd
          and _cond_inside(context_of(value.op), where) is None
          and not _in_xla(value.op)):  # XLA's stacks hold one per iteration
        return self._push_pooled(value, where)
      with _inside(where):
        size = self._stack_size(value, where)
        with tf.compat.v1.colocate_with(value):
          stack = gen_data_flow_ops.stack_v2(
              max_size=size, elem_type=value.dtype.base_dtype,
              name="f_acc")
      stack_in_loop = fwd.AddValue(stack)
      value_ctxt = output_context_of(value.op)
      if value_ctxt == fwd:
        with _inside(fwd):
          push = gen_data_flow_ops.stack_push_v2(
              stack_in_loop, value, swap_memory=fwd.swap_memory)
        self.forward_index.op._add_control_input(push.op)
      else:
        if not isinstance(value_ctxt, CondContext):
          raise TypeError(f"'{value.name}' is in v1 context {value_ctxt}, "
                          f"neither loop '{fwd.name}' nor a cond in it")
        where = value_ctxt.outer_context if dead_branch else value_ctxt
        with _inside(where):
          push = gen_data_flow_ops.stack_push_v2(
              stack_in_loop, value, swap_memory=fwd.swap_memory)
        if dead_branch:
          push.op._set_control_flow_context(value_ctxt)
        self.forward_sync._add_control_input(push.op)
      push.op._add_control_input(self.forward_index.op.inputs[0].op)
    return stack

  def _push_pooled(self, value, where):
    """Pushes `value` (computed in the forward loop itself, outside any
    cond of it) on the one stack of its dtype that the loop's history
    keeps in `where`, after the values pushed on it before in the same
    iteration: one stack and its two Enters serve every such value, and
    the pops (`_pop_pooled`) take them off in the reverse order. Returns
    the stack handle."""
    fwd = self.forward_context
    dtype = value.dtype.base_dtype
    key = (dtype, where, value.op.device)
    pool = self._pools.get(key)
    if pool is None:
      with _inside(where):
        size = self._stack_size(value, where)
        with _colocated_with(value):
          stack = _build_op("StackV2", [size], "f_acc", own_order=True,
                            elem_type=dict(type=dtype.as_datatype_enum),
                            stack_name=dict(s=b"")).outputs[0]
      pool = self._pools[key] = _StackPool(stack, add_value(fwd, stack))
      self._pool_of[stack.op] = pool
    with _inside(fwd):
      push = _build_op("StackPushV2", [pool.handle_in_loop, value],
                       own_order=True,
                       T=dict(type=value.dtype.base_dtype.as_datatype_enum),
                       swap_memory=dict(b=fwd.swap_memory)).outputs[0]
    push.op._add_control_input(
        pool.last_push if pool.last_push is not None
        else self.forward_index.op.inputs[0].op)
    pool.last_push = push.op
    self.forward_index.op._add_control_input(push.op)
    return pool.stack

  def _pop_pooled(self, pool, value):
    """Pops the value `_push_pooled` pushed for `value` in the matching
    forward iteration: before the pops made earlier for this stack (their
    values were pushed first), and, like every pop of the iteration,
    before the next gradient iteration starts (`grad_sync`), whatever the
    fetches need: so each iteration takes its own values off the stack."""
    with _inside(self.grad_context):
      pop = _build_op("StackPopV2", [pool.stack], own_order=True,
                      elem_type=dict(
                          type=value.dtype.base_dtype.as_datatype_enum))
      pop = pop.outputs[0]
    pop.set_shape(value.shape)
    if pool.last_pop is not None:
      pool.last_pop._add_control_input(pop.op)
    pool.last_pop = pop.op
    self.grad_sync._add_control_input(pop.op)
    return pop

  def _stack_size(self, value, ctxt):
    """The max_size of a history stack for `value` made in context
    `ctxt`: -1 (no bound), one constant per context for all stacks of the
    call (stock TF makes one per stack); in an XLA context, which compiles
    stacks of a fixed size, the bound `_xla_stack_size` derives from the
    loops' `maximum_iterations`, one per loop and context."""
    xla = _in_xla(value.op)
    key = (tf.compat.v1.get_default_graph(), ctxt,
           self.forward_context if xla else None)
    found = self._shared.get(key)
    if found is None:
      found = (_xla_stack_size(value, self.forward_context, ctxt) if xla
               else _const(-1, tf.int32, "f_acc_size"))
      self._shared[key] = found
    return found

  def AddBackpropAccumulatedValue(self, history, value, dead_branch=False):
    """Pops `history` (a stack `AddForwardAccumulator` made for `value`)
    in the gradient loop: the value of the matching forward iteration.
    Inside a cond of the loop, the pop runs only on the branch the
    forward iteration took (on the other when `dead_branch`)."""
    pool = self._pool_of.get(history.op)
    if pool is not None:
      return self._pop_pooled(pool, value)
    cond_ctxt = self._cond_between(value, history)
    with tf.control_dependencies(None), _inside(self.grad_context):
      if cond_ctxt is not None:
        pred = self._recorded_pred(cond_ctxt)
        branch = (1 - cond_ctxt.branch) if dead_branch else cond_ctxt.branch
        history = switch_ref_or_tensor(history, pred)[branch]
      pop = gen_data_flow_ops.stack_pop_v2(history, value.dtype.base_dtype)
      pop.set_shape(value.shape)
    if self.grad_context.parallel_iterations > 1:
      self.grad_sync._add_control_input(pop.op)
    return pop

  @staticmethod
  def _cond_between(value, history):
    """The innermost CondContext around `value` inside the stack's frame."""
    return _cond_inside(context_of(value.op), context_of(history.op))

  def _recorded_pred(self, cond_ctxt):
    """The cond's predicate as the gradient loop sees it (its history, if
    this or an outer gradient loop recorded one)."""
    state = self
    while state is not None:
      pred = state.history_map.get(cond_ctxt.pred.name)
      if pred is not None:
        return pred
      state = state.outer_grad_state
    return cond_ctxt.pred

  def _read_again(self, value):
    """For `value` read from a resource variable that is a loop invariant
    and that no op of the graph writes (its initializer aside): the same
    read in the gradient loop, in place of a stack holding the variable's
    value once per iteration (an RNN's weights, once per step). None
    otherwise. Writes added later (an optimizer's update) consume the
    gradients, so they run after the gradient loop has read."""
    op = value.op
    if op.type != "ReadVariableOp" \
        or _constant_enter_of(op.inputs[0]) is None:
      return None
    root = _outside_all_loops(op.inputs[0])
    key = ("unwritten", root.ref())
    if key not in self._shared:
      self._shared[key] = _never_written(root)
    if not self._shared[key]:
      return None
    handle = self.GetRealValue(op.inputs[0])
    with _inside(self.grad_context):
      read = _build_op("ReadVariableOp", [handle], "ReadVariableOp",
                       own_order=True,
                       dtype=dict(type=op.get_attr("dtype").as_datatype_enum)
                       ).outputs[0]
    read.set_shape(value.shape)
    return read

  def GetRealValue(self, value):
    """What the gradient loop reads for forward tensor `value`: a loop
    invariant is entered from outside, a constant is made again, anything
    else comes from its history (in the loop that computes it, which for a
    value of an outer loop is then entered into this one). A value of an
    outer loop gets one history, shared by the outer gradient loop and
    every inner one reading it (stock TF pushes it once per reader)."""
    found = self.history_map.get(value.name)
    if found is not None:
      return found
    found = self._read_again(value)
    if found is not None:
      self.history_map[value.name] = found
      return found
    t, state, found = value, self, None
    while True:
      enter = _constant_enter_of(t)
      if enter is not None:
        t, state = enter.inputs[0], state.outer_grad_state
        if state is None:
          found = add_value(self.grad_context, t)
          break
      elif _is_constant(t):
        found = _const(tf.get_static_value(t), t.dtype, "Const")
        break
      else:
        known = state.history_map.get(t.name) if state is not self else None
        if known is not None:  # the outer gradient loop reads it already
          found = add_value(self.grad_context, known)
          break
        with _outside(self.grad_context):
          history = state.AddForwardAccumulator(t)
        break
    if found is None:
      found = state.AddBackpropAccumulatedValue(history, t)
      if state is not self:
        state.history_map.setdefault(t.name, found)
        found = add_value(self.grad_context, found)
    self.history_map[value.name] = found
    return found


# ----- all loops of one gradient call -----

class LoopStates:
  """The v1 loops one gradient call goes through (`plan` makes it); the
  backprop pass calls `context`, `zeros_like`, `release`, `visited` and
  `finish` (see `tfgrad.backprop`)."""

  def __init__(self, from_ops):
    self._states = {}   # forward WhileContext -> LoopGradState
    self._shared = {}   # constants the states share
    self._from_ops = from_ops

  # ----- plan -----

  @classmethod
  def plan(cls, subgraph, resolver, colocated):
    """Grad states for the loops whose Exits are in `subgraph`; their
    other Exits join it (ops, members, pending counts, stop ops). None
    when `subgraph` holds no v1 loop op."""
    if not any(_is_frame_op(op) for op in subgraph.ops):
      return None
    loops = cls(subgraph.from_ops)
    added = []
    for op in list(subgraph.ops):
      if is_loop_exit(op):
        with colocated(op):
          added.extend(loops._add_loop(op, subgraph.members))
    for op in added:
      subgraph.ops.append(op)
      subgraph.members.add(op)
      for t in resolver.graph_inputs(op):
        if t.op in subgraph.members:
          subgraph.pending[t.op] += 1
    return loops

  def _add_loop(self, exit_op, members):
    """The grad state of `exit_op`'s loop (made once); returns the loop's
    Exits not yet in `members`."""
    fwd = while_context_of(exit_op)
    if fwd in self._states:
      return []
    outer = fwd.outer_context
    outer = outer.GetWhileContext() if outer else None
    state = LoopGradState(fwd, self._states.get(outer) if outer else None,
                          self._shared)
    self._states[fwd] = state
    return [t.op for t in state.forward_loop_exits if t.op not in members]

  # ----- contexts -----

  def state_of(self, op, before):
    """The grad state `op`'s gradient is built in: its loop's; an Exit's
    incoming gradients (`before`) belong to the loop around that loop."""
    if before and is_loop_exit(op):
      fwd = context_of(op).outer_context
      fwd = fwd.GetWhileContext() if fwd else None
    else:
      fwd = while_context_of(op)
    return self._states.get(fwd) if fwd else None

  def context(self, op, before):
    """Within the gradient loop `op`'s gradient belongs to (if any)."""
    state = self.state_of(op, before)
    return _RuleContext(state.grad_context if state else None,
                        None if before else (op, self._from_ops))

  @staticmethod
  def enters_frame(op):
    """True for a loop Exit: its gradients, summed outside the gradient
    loop, must be ops there (no `emit.Known` made inside the loop)."""
    return is_loop_exit(op)

  # ----- schedule -----

  def seed(self, state, queue, queued):
    """Exits no gradient will reach (pending 0, not a y): once all of a
    loop's Exits are accounted for, each gets zeros and is queued.

    An Enter whose input no x reaches is not in the pass and is never
    processed: the gradient loop variable it would end gets no Exit (stock
    TF builds one, a dead op)."""
    pending = state.subgraph.pending
    for gs in self._states.values():
      for t in gs.forward_loop_exits:
        if pending[t.op] == 0:
          gs.pending_exits_count -= 1
          if t.op not in queued:
            gs.unused_exits.append(t)
          if gs.pending_exits_count == 0:
            self._start_unused(state, gs.unused_exits, queue)

  def _start_unused(self, state, exits, queue):
    for t in exits:
      if _is_trainable(t):
        _add_grad(state.grads, t, self.zeros_for_exit(t))
      queue.append(t.op)

  def release(self, state, op, queue):
    """The pending update after `op`: an input whose count drops to zero
    is queued; a loop Switch also whenever its count drops (visited once
    per branch); a loop Exit waits until all Exits of its loop are
    released, then those with gradients are queued and the others get
    zeros (or, if none has a gradient, are queued without)."""
    pending = state.subgraph.pending
    for t in state.resolver.graph_inputs(op):
      pending[t.op] -= 1
      ready = pending[t.op] == 0 or (pending[t.op] > 0
                                     and is_loop_switch(t.op))
      if not ready:
        continue
      if not is_loop_exit(t.op):
        queue.append(t.op)
        continue
      gs = self.state_of(t.op, before=False)
      gs.deferred_exits.append(t)
      gs.pending_exits_count -= 1
      if gs.pending_exits_count:
        continue
      reached = False
      for y in gs.deferred_exits:
        if _has_grads(state.grads, y.op):
          reached = True
          queue.append(y.op)
        else:
          gs.unused_exits.append(y)
      if reached:
        self._start_unused(state, gs.unused_exits, queue)
      else:
        queue.extend(y.op for y in gs.unused_exits)

  @staticmethod
  def visited(grads, op):
    """After a loop Switch's first visit, its aggregated gradients go back
    to contribution lists, so the body's gradient can join for the second
    visit."""
    per_output = grads.get(op)
    if per_output is None or not is_loop_switch(op):
      return
    for i, g in enumerate(per_output):
      if not isinstance(g, list):
        per_output[i] = [] if g is None else [g]

  # ----- zeros -----

  def zeros_for_exit(self, t):
    """Zeros for Exit output `t` that nothing reached, built where the
    gradient call is (or, for an inner loop, in the outer gradient loop,
    with the shape from the outer loop's history when not static)."""
    fwd = context_of(t.op)
    outer = fwd.outer_context
    outer = outer.GetWhileContext() if outer else None
    outer_state = self._states.get(outer) if outer else None
    shape = t.shape
    if outer_state is None:
      if shape.is_fully_defined():
        return _static_zeros(shape, t.dtype)
      return array_ops.zeros_like(t, optimize=False)
    if shape.is_fully_defined():
      with _inside(outer_state.grad_context):
        return _static_zeros(shape, t.dtype)
    with _inside(fwd.outer_context):
      dyn = _dynamic_shape(t)
    history = outer_state.AddForwardAccumulator(dyn)
    with _inside(outer_state.grad_context):
      return tf.zeros(outer_state.AddBackpropAccumulatedValue(history, dyn),
                      t.dtype)

  def zeros_like(self, op, index):
    """Zeros for output `index` of `op` that no gradient reached, built in
    the current gradient loop; None for a loop Switch (its rule takes
    None). Outside any planned loop, `zeros_outside_loops`."""
    if is_loop_switch(op):
      return None
    if op.graph.building_function:
      return tf.zeros_like(op.outputs[index])
    gs = self._states.get(while_context_of(op))
    if gs is None:
      return zeros_outside_loops(op, index)
    return _zeros_in_loop(gs, op, index)

  # ----- finish -----

  def finish(self):
    """A gradient loop variable whose forward output does not depend on
    its input got no gradient from the body: its Merge still reads the
    first input twice. Feed it zeros from the second iteration on."""
    for gs in self._states.values():
      for b_merge in gs.switch_map.values():
        first, second = b_merge.op.inputs[0], b_merge.op.inputs[1]
        if first is not second:
          continue
        shape = first.shape
        if shape.is_fully_defined():
          with _inside(gs.grad_context):
            nxt = control_flow_ops._NextIteration(
                _static_zeros(shape, first.dtype))
        else:
          with _inside(gs.grad_context.outer_context):
            zeros = tf.zeros(_dynamic_shape(first.op.inputs[0]), first.dtype)
          with _inside(gs.grad_context):
            nxt = control_flow_ops._NextIteration(zeros)
        b_merge.op._update_input(1, nxt)


def _zeros_in_loop(gs, op, index):
  """Zeros of output `index` of `op` (in `gs`'s forward loop): a constant
  when the shape is static, else zeros of the shape recorded each forward
  iteration. For a cond's Switch, on the branch the forward pass did not
  take (the one without a gradient)."""
  dead = is_switch(op)
  ctxt = context_of(op)
  val = op.outputs[index]
  shape = val.shape
  if shape.is_fully_defined():
    if val.dtype == tf.resource:
      zeros = tf.zeros(tf.raw_ops.VariableShape(input=val),
                       _zeros_dtype(val))
    else:
      zeros = tf.constant(0, shape=shape.dims, dtype=val.dtype)
    if dead:
      pred = gs.history_map.get(ctxt.pred.name)
      zeros = switch_ref_or_tensor(zeros, pred)[1 - ctxt.branch]
    return zeros
  if dead:
    with _inside(ctxt.outer_context):
      val = switch_ref_or_tensor(op.inputs[0], ctxt.pred)[1 - ctxt.branch]
      dyn = _dynamic_shape(val)
    val.op._set_control_flow_context(ctxt)
    dyn.op._set_control_flow_context(ctxt)
  else:
    with _inside(ctxt):
      dyn = _dynamic_shape(val)
  with _outside(gs.grad_context):
    history = gs.AddForwardAccumulator(dyn, dead_branch=dead)
  shape_now = gs.AddBackpropAccumulatedValue(history, dyn, dead)
  return tf.zeros(shape_now, val.dtype)


def _zeros_dtype(t):
  return default_gradient.get_zeros_dtype(t)


@array_ops._tag_zeros_tensor
def _tagged_zeros(shape, dtype):
  """A constant tagged as zeros (v2 loop builders skip such gradients)."""
  return tf.constant(0, shape=shape, dtype=dtype)


def zeros_outside_loops(op, index):
  """Zeros for output `index` of `op` that no gradient reached, outside
  any gradient loop: for a v1 cond's Switch, zeros on the branch not
  taken (made to run only there); otherwise zeros of the output's shape."""
  val = op.outputs[index]
  if is_switch(op):
    ctxt = context_of(op)
    if ctxt:
      other = switch(op.inputs[0], ctxt.pred)[1 - ctxt.branch]
      pivot = tf.identity(other)
      if val.dtype == tf.resource:
        with tf.control_dependencies([pivot]):
          return tf.zeros(tf.raw_ops.VariableShape(input=other),
                          _zeros_dtype(val))
      dyn = _dynamic_shape(other)
      with tf.control_dependencies([pivot]):
        return tf.zeros(dyn, val.dtype)
    return array_ops.zeros_like(val, optimize=False)
  if val.dtype == tf.resource:
    return tf.zeros(tf.raw_ops.VariableShape(input=val), _zeros_dtype(val))
  if _in_v2_while_body(val) and val.dtype != tf.variant:
    if val.shape.is_fully_defined():
      return _tagged_zeros(val.shape.dims, val.dtype)
    return tf.zeros(_dynamic_shape(val), val.dtype)
  return array_ops.zeros_like(val, optimize=False)


def _in_v2_while_body(t):
  return isinstance(t.op.graph, control_flow_v2_func_graphs.WhileBodyFuncGraph)


def _check_not_initial_value(op, from_ops):
  """A loop Switch processed in its own forward loop's context means the
  gradient was asked from inside the loop body for a value from before
  the loop (its initial value): ValueError as in TF, naming the loop, the
  x's op and the Switch."""
  ctxt = context_of(op)
  if not (is_switch(op) and ctxt is not None and ctxt.IsWhileContext()
          and ctxt == current_context()):
    return
  starts, seen, queue = set(from_ops), set(), [op]
  target = None
  while queue and target is None:
    cur = queue.pop(0)
    if cur in seen:
      continue
    seen.add(cur)
    if cur in starts:
      target = cur
    queue.extend(t.op for t in cur.inputs)
  raise ValueError(
      "Cannot compute gradient inside while loop with respect to op "
      f"'{target.name if target else op.inputs[0].op.name}' (v1 while loop "
      f"'{ctxt.name}', through its loop Switch '{op.name}'). We do not "
      "support taking the gradient wrt or through the initial value of a "
      "loop variable. Gradients can be computed through loop invariants or "
      "wrt the input parameters to the loop body.")


def _is_frame_op(op):
  return op.type in _FRAME_TYPES


_FRAME_TYPES = frozenset(["Enter", "RefEnter", "Exit", "RefExit"])


def _has_grads(grads, op):
  per_output = grads.get(op)
  if not per_output:
    return False
  for g in per_output:
    if isinstance(g, list):
      if any(c is not None for c in g):
        return True
    elif g is not None:
      return True
  return False


def _add_grad(grads, t, g):
  per_output = grads.get(t.op)
  if per_output is None:
    per_output = grads[t.op] = [[] for _ in t.op.outputs]
  per_output[t.value_index].append(g)


def _is_trainable(t):
  from tfgrad import tf_compat  # pylint: disable=g-import-not-at-top
  return tf_compat.is_trainable(t)


def blocked_inside_loop(blocked):
  """True if an op declared not differentiable lies inside a v1 loop:
  then stock TF's walk, which crosses such ops, reaches the loop's other
  variables, and the pass must too (zeros where stock gives zeros)."""
  return any(context_of(op) is not None
             and while_context_of(op) is not None for op in blocked)
