"""Gradient loops of control flow v2 `While`/`StatelessWhile` ops.

A While op runs its body function n times; its gradient is a second While
running n times, whose body is the gradient of the forward body,
differentiated by tfgrad's engine. Loop variables of the gradient loop:

    counter, maximum_iterations, n, gradients of the loop variables,
    then what the gradient body reads from outside it (captures)

The gradient body reads forward values these ways (`_GradBody`):

    a loop invariant                    the forward loop's result for it
    a resource                          the forward loop's input for it
    a Const of the forward body         copied
    a variable read (only when asked,   read again from the variable
      `reread_variables`)
    Shape/Size/Rank of a forward value  computed in the forward body, then
                                        as any other intermediate:
    any other forward intermediate      pushed on a TensorList accumulator
                                        by the forward loop, popped here

Only the intermediates the rules read get accumulators (tfgrad's rules
read fewer than TF's: `x * 2.0` reads none). When the gradient loop reads
no trainable result of the forward loop at all, it passes one through
untouched (the anchor, see `_anchor`). They are added to the forward
op once, by a graph edit as stock's (a new body function with one more
loop variable per accumulator, new outputs); a later gradient of the same
loop finds and reuses them. The whole build holds the forward graph's
building lock, so threads differentiating one loop take turns and the
second finds the first's accumulators.
"""

import weakref

import numpy as np
import tensorflow as tf

from tfgrad import emit
from tfgrad import functional
from tfgrad import tf_compat
from tfgrad.emit import raw

# Shape queries the gradient body makes of forward values run in the
# forward body instead, so that the loop accumulates a shape, not the value.
_SHAPE_OPS = frozenset(["Shape", "Size", "Rank", "TensorListElementShape",
                        "TensorListLength"])

# Body FuncGraphs of the gradient loops built here, by While op: a gradient
# of a gradient loop needs them (TF's rebuilt-from-definition graph is
# slower). Held by weak reference: they capture tensors of the op's graph,
# which holds the op, so a strong reference would keep the key alive for
# good; the functions the op's graph holds keep them alive as long as it
# lives. (Their conds are written as FunctionDefs, `tf_compat.LessCond`,
# with no FuncGraph: a second order converts the definition, one Less.)
_loop_graphs = weakref.WeakKeyDictionary()  # op -> (body ref, anchor index)


def loop_graphs(op):
  """(cond, body) FuncGraphs of While `op`."""
  graphs = _loop_graphs.get(op)
  body = None if graphs is None else graphs[0]()
  if body is None:
    body = tf_compat.while_body_graph(op)
  return tf_compat.while_cond_graph(op), body


def anchor_index(op):
  """For a gradient loop built here: the index of its anchor input (see
  `_build`), else None."""
  graphs = _loop_graphs.get(op)
  return None if graphs is None else graphs[1]


def original_output_count(op):
  return tf_compat.while_original_output_count(op)


def _accumulator(body, t):
  """The body output holding TensorListPushBack(list input, t) fed back to
  the same input position (an accumulator a gradient added), or None."""
  inputs = {id(x): i for i, x in enumerate(body.inputs)}
  outputs = {id(x): i for i, x in enumerate(body.outputs)}
  for consumer in t.consumers():
    if consumer.type != "TensorListPushBack" or consumer.inputs[1] is not t:
      continue
    i = inputs.get(id(consumer.inputs[0]))
    out = consumer.outputs[0]
    j = outputs.get(id(out))
    if j is None:
      for reader in out.consumers():
        if reader.type == "Identity" and id(reader.outputs[0]) in outputs:
          out = reader.outputs[0]
          j = outputs[id(out)]
          break
    if i is not None and i == j:
      return out
  return None


def _is_invariant(body, t):
  """Index k when `t` is body input k passed on unchanged, else None."""
  for k, x in enumerate(body.inputs):
    if x is t:
      return k if k < len(body.outputs) and body.outputs[k] is t else None
  return None


class _GradBody(tf_compat.WhileBodyFuncGraph):
  """The gradient body: captures forward-body tensors as the module
  docstring says. `pending` are the forward tensors this build needs new
  accumulators for, with their empty TensorLists; `capture_outputs` maps each
  captured placeholder to what the body hands to the next iteration."""

  def __init__(self, name, op, cond, body, reread_variables=False):
    super().__init__(name)
    self._op, self._cond, self._body = op, cond, body
    self._reread_variables = reread_variables
    self.pending = []  # (forward tensor, empty TensorList) to accumulate
    self.capture_outputs = {}
    self._captured = {}  # id(forward tensor) -> tensor here
    self._keep = []  # the forward tensors keyed in _captured
    self._moved = {}
    self._moves_shapes = not tf_compat.in_xla_context(body)

  def _create_op_internal(self, op_type, inputs, dtypes=None,  # pylint: disable=redefined-outer-name
                          input_types=None, name=None, attrs=None,
                          op_def=None, compute_device=True):
    if op_type in _SHAPE_OPS and self._moves_shapes and inputs and all(
        t.graph is self._body and _accumulator(self._body, t) is None
        for t in inputs):
      key = (op_type, tuple(id(t) for t in inputs))
      moved = self._moved.get(key)
      if moved is None:
        with self._body.as_default():
          moved = self._body._create_op_internal(  # pylint: disable=protected-access
              op_type, inputs, dtypes=dtypes, input_types=input_types,
              attrs=attrs, op_def=op_def, compute_device=compute_device)
        self._moved[key] = moved
      return moved
    return super()._create_op_internal(
        op_type, inputs, dtypes=dtypes, input_types=input_types, name=name,
        attrs=attrs, op_def=op_def, compute_device=compute_device)

  def captures_before_lean_op(self, op_type):
    """Whether an op with forward inputs may capture them and then take the
    lean op path (`tf_compat._captured_first`): not for shape queries,
    which `_create_op_internal` may move into the forward body."""
    return not (op_type in _SHAPE_OPS and self._moves_shapes)

  def _capture_helper(self, tensor, name):
    found = self._captured.get(id(tensor))
    if found is not None:
      return found
    if tensor.graph is not self._body:
      captured = self._new_capture(tensor)
      self.capture_outputs[id(captured)] = captured
    else:
      captured = self._from_forward_body(tensor, name)
    self._captured[id(tensor)] = captured
    self._keep.append(tensor)
    return captured

  def _new_capture(self, tensor):
    return functional.lean_capture(self, tensor)

  def _from_forward_body(self, tensor, name):
    while tensor.op.type == "Identity":
      tensor = tensor.op.inputs[0]
    found = self._captured.get(id(tensor))
    if found is not None:
      return found
    k = _is_invariant(self._body, tensor)
    if k is not None:
      captured = self._new_capture(tensor)
      self.capture_outputs[id(captured)] = captured
      return captured
    value = tf_compat.constant_value(tensor)
    if value is not None:
      return emit.const(value, tensor.dtype)
    if self._reread_variables and tensor.op.type == "ReadVariableOp":
      return self._read_again(tensor)
    if tensor.dtype == tf.resource:
      return self.capture(
          self._op.inputs[tf_compat.resource_input_index(self._body, tensor)])
    accumulated = _accumulator(self._body, tensor)
    if accumulated is None:
      accumulated = self._new_accumulator(tensor)
    placeholder = self._new_capture(accumulated)
    rest, value = raw.TensorListPopBack(
        input_handle=placeholder, element_shape=emit.const(-1, tf.int32),
        element_dtype=tensor.dtype)
    value.set_shape(tensor.shape)
    self.capture_outputs[id(placeholder)] = rest
    return value

  def _read_again(self, read):
    """The variable `read` (a ReadVariableOp output of the forward body)
    reads, read here again: no accumulator. Loop checkpointing asks for
    it, whose segment loops read the variable again anyway."""
    handle = self._capture_helper(read.op.inputs[0], None)
    value = raw.ReadVariableOp(resource=handle, dtype=read.dtype)
    value.set_shape(read.shape)
    return value

  def _new_accumulator(self, tensor):
    """The empty TensorList an accumulator of `tensor` will start from, in
    the forward loop's graph. The gradient body captures it for now; the
    forward loop gets the accumulator once the build succeeded
    (`_add_accumulators`), so that a failed build leaves the forward loop
    as it was."""
    with self._body.outer_graph.as_default(), \
        tf_compat.clear_control_inputs():
      empty = raw.EmptyTensorList(
          element_shape=element_shape(tensor.shape),
          max_num_elements=self._op.inputs[1], element_dtype=tensor.dtype,
          name=f"{tensor.op.name}_accumulator".replace("/", "_"))
    self.pending.append((tensor, empty))
    return empty


def element_shape(shape):
  """A TensorList element_shape input for static shape `shape`."""
  if shape.rank is None:
    return emit.const(-1, tf.int32)
  dims = [-1 if d is None else d for d in shape.as_list()]
  return emit.const(np.array(dims, np.int32), tf.int32)


def trace(graph, fn, args):
  """`fn` traced into the empty FuncGraph `graph` on one placeholder per
  tensor of `args` (their handle data copied; `fn` returns a flat list of
  tensors); what `func_graph_from_py_func` does for flat tensor lists, with
  tfgrad's lean op creation. Stateful ops run in the order they were made
  and become control outputs (`tf_compat.order_stateful`), as in TF's
  loops, traced with automatic control dependencies."""
  with graph.as_default(), tf_compat.mutation_lock(graph):
    placeholders = [_placeholder(graph, a) for a in args]
    graph.inputs.extend(placeholders)
    outputs = list(fn(*placeholders))
    graph.structured_outputs = outputs
    graph.outputs.extend(graph.capture(t) for t in outputs)
  graph.control_outputs.extend(tf_compat.order_stateful(graph))
  return graph


def _placeholder(graph, like):
  """A Placeholder of `graph` for a value like tensor `like` (its handle
  data copied), built by `tf_compat.create_op` directly: a loop's cond and
  body take one per loop variable, so the generated wrapper's argument
  handling would cost more than the op."""
  # (attribute protos shared per dtype and shape, serialized once)
  attrs = {"dtype": emit._attr("type", like.dtype),  # pylint: disable=protected-access
           "shape": emit._attr("shape", like.shape._dims)}  # pylint: disable=protected-access
  p = tf_compat.create_op(graph, "Placeholder", [], attrs, None,
                          "Placeholder", []).outputs[0]
  if like.dtype in (tf.resource, tf.variant):  # (others carry none)
    tf_compat.copy_handle_data(like, p)
  return p


def _add_accumulators(op, cond, body, pending):
  """Graph edit: the forward loop pushes each pending tensor onto its
  TensorList, a new loop variable; {id(empty list): op output}."""
  first = len(op.outputs)
  pushed = []
  for tensor, empty in pending:
    with body.as_default():
      pushed.append(raw.TensorListPushBack(
          input_handle=functional.lean_capture(body, empty), tensor=tensor))
    if tf_compat.is_function_graph(cond):  # (a LessCond takes them later)
      with cond.as_default():
        functional.lean_capture(cond, empty)
  body.outputs.extend(pushed)
  tf_compat.add_while_accumulators(op, cond, body,
                                   [e for _, e in pending], pushed)
  return {id(e): op.outputs[first + j] for j, (_, e) in enumerate(pending)}


def build(op, graphs, grads, differentiate, reread_variables=False):
  """The gradient loop of While `op`, whose FuncGraphs are `graphs`
  (`loop_graphs(op)`), for `grads` (one per loop variable, None where none
  flows in); one result per input, None where no gradient was carried.
  `differentiate(ys, xs, grad_ys, body)` is the engine, returning a
  gradient (zeros when unconnected) per x. `reread_variables`: the
  gradient body reads variables again where the rules read a variable
  read of the forward body, instead of accumulating each iteration's
  value (same values unless the variable changes in between; loop
  checkpointing, which re-runs the body anyway, asks for it)."""
  with tf_compat.building_lock(op.graph):
    return _build(op, graphs, grads, differentiate, reread_variables)


def _build(op, graphs, grads, differentiate, reread_variables):
  cond, body = graphs
  carried = [i for i, g in enumerate(grads) if g is not None]
  ys = [body.outputs[i] for i in carried]
  xs = [body.inputs[i] for i in carried]
  n_iters, max_iters = op.outputs[0], op.inputs[1]
  counter = emit.const(0, n_iters.dtype, name="grad_counter")
  args = [counter, max_iters, n_iters] + [grads[i] for i in carried]

  def body_fn(counter, max_iters, n_iters, *grad_ys):
    result = differentiate(ys, xs, list(grad_ys), body)
    result = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices)
              else g for g in result]
    step = raw.AddV2(x=counter, y=emit.const(1, counter.dtype))
    return [step, max_iters, n_iters] + result

  name = tf_compat.grad_fn_name(body.name)
  grad_body = trace(_GradBody(name, op, cond, body, reread_variables),
                    body_fn, args)
  added = {}
  if grad_body.pending:
    added = _add_accumulators(op, cond, body, grad_body.pending)
  tf_compat.set_while_original_outputs(op, len(op.outputs))
  captured = [_resolved(op, body, added, t)
              for t in grad_body.external_captures]
  anchor_at = None
  anchor = _anchor(op, carried, captured)
  if anchor is not None:
    anchor_at = len(args) + len(captured)
    with grad_body.as_default():
      grad_body.capture(anchor)
    captured.append(anchor)
  for _, internal in grad_body.captures:
    grad_body.outputs.append(grad_body.capture_outputs[id(internal)])
  loop_vars = args + captured

  # counter < n_iters (loop_vars[0] and [2]), with no graph traced
  cond_name = tf_compat.grad_fn_name(op.get_attr("cond").name)
  grad_cond = tf_compat.LessCond(cond_name, loop_vars, 0, 2)
  grad_op, outputs = tf_compat.build_while(
      loop_vars, grad_cond, grad_body, op.get_attr("parallel_iterations"),
      f"{op.name}_grad")
  _loop_graphs[grad_op] = (weakref.ref(grad_body), anchor_at)
  results = [None] * len(op.inputs)
  for k, i in enumerate(carried):
    results[i] = outputs[3 + k]
  return results


def _anchor(op, carried, captured):
  """A trainable loop result of `op` for the gradient loop to pass through
  untouched, when the gradient loop reads no trainable output of `op`
  otherwise (no accumulator of a trainable value, no invariant): then the
  gradient still depends on the forward loop through a trainable edge, as
  stock's always does through its accumulators, so a second gradient
  toward a value feeding the forward loop is zeros as stock's, not None.
  None when not needed or there is no such result."""
  if any(t.op is op and tf_compat.is_trainable(t) for t in captured):
    return None
  for i in carried:
    if op.outputs[i].dtype.is_floating or op.outputs[i].dtype.is_complex:
      return op.outputs[i]
  return None


def _resolved(op, body, added, t):
  """A capture of the gradient body as the gradient loop reads it: an
  accumulator of the forward body, or the empty list of one added by this
  build (`added`), is the forward op's output for it."""
  if id(t) in added:
    return added[id(t)]
  if t.graph is body:
    for i, out in enumerate(body.outputs):
      if out is t:
        return op.outputs[i]
  return t
