"""v1 control flow: Switch, Merge, Enter, Exit, NextIteration (and Ref forms).

These ops make up v1 `tf.cond` (Switch/Merge in a CondContext) and v1 while
loops (Enter/Merge/Switch/NextIteration/Exit in a WhileContext). Reversed,
an Exit becomes the gradient loop's Enter, an Enter its Exit (or, for a
loop invariant, an accumulator loop summing every iteration's gradient),
a loop Switch its Merge and a loop Merge its Switch. The gradient loop
itself and the forward values it reads belong to the call's loop state
(`tfgrad.v1_loops`); each rule finds it on the current gradient loop
context (`grad_state`).
"""

import tensorflow as tf

from tfgrad import v1_loops
from tfgrad.registry import RegisterGradient
from tfgrad.registry import passes_gradients_through


def _grad_loop():
  """The gradient loop context being built (None outside one)."""
  ctxt = v1_loops.current_context()
  return ctxt.GetWhileContext() if ctxt is not None else None


# ----- loops -----

def _switch_grad(op, *grads):
  """A loop Switch becomes the gradient loop's Merge (its second input, the
  body's gradient, is filled on the second visit); a cond Switch merges
  both branches' gradients; a bare Switch routes each by the predicate."""
  ctxt = v1_loops.context_of(op)
  if isinstance(ctxt, v1_loops.WhileContext):
    return _loop_switch_grad(op, grads)
  if isinstance(ctxt, v1_loops.CondContext):
    other = grads[1 - ctxt.branch]
    if other is None:
      if op.inputs[0].dtype == tf.resource:
        taken = grads[ctxt.branch]
        return v1_loops.merge([taken, taken], name="cond_resource_grad")[0], \
            None
      return None, None
    return v1_loops.merge(list(grads), name="cond_grad")[0], None
  false_grad = v1_loops.switch(grads[0], op.inputs[1])[0]
  true_grad = v1_loops.switch(grads[1], op.inputs[1])[1]
  return v1_loops.merge([false_grad, true_grad])[0], None


def _loop_switch_grad(op, grads):
  """First visit (from the Exit): Merge(g, g) starts the gradient loop
  variable. Second visit (from the body): the body's gradient becomes the
  Merge's back edge."""
  switch_map = _grad_loop().grad_state.switch_map
  b_merge = switch_map.get(op)
  if b_merge is not None:
    if grads[1] is not None:
      v1_loops.close_back_edge(b_merge, grads[1])
    return None, None
  if grads[0] is None:
    return None, None  # reached from the body only: nothing to carry
  b_merge = v1_loops.lean_merge([grads[0], grads[0]], name="b_switch")
  switch_map[op] = b_merge
  return b_merge, None


def _merge_grad(op, grad, _):
  """A loop Merge becomes a Switch on the gradient loop's predicate; a
  cond Merge a Switch on the cond's predicate (recorded per iteration
  inside a loop); a bare Merge routes by its value_index."""
  ctxt = v1_loops.output_context_of(op.inputs[0].op)
  if isinstance(ctxt, v1_loops.WhileContext):
    return v1_loops.lean_switch(grad, _grad_loop().pivot)
  if isinstance(ctxt, v1_loops.CondContext):
    return v1_loops.switch_ref_or_tensor(grad, _pred_in_loop(ctxt.pred),
                                         name="cond_grad")
  return [v1_loops.switch_ref_or_tensor(grad, tf.equal(op.outputs[1], i))[1]
          for i in range(len(op.inputs))]


def _pred_in_loop(pred):
  """A cond's predicate as the gradient loop reads it: outside gradient
  loops the predicate itself, inside one its value in the matching forward
  iteration (pushed per iteration, popped once per gradient loop)."""
  grad_loop = _grad_loop()
  state = grad_loop.grad_state if grad_loop is not None else None
  if state is None:
    return pred
  found = state.history_map.get(pred.name)
  if found is None:
    state.grad_context.Exit()
    try:
      history = state.AddForwardAccumulator(pred)
    finally:
      state.grad_context.Enter()
    found = state.AddBackpropAccumulatedValue(history, pred)
    state.history_map[pred.name] = found
  return found


def _exit_grad(op, grad):
  """An Exit becomes the gradient loop's Enter of its gradient."""
  grad_loop = _grad_loop()
  if not grad_loop.back_prop:
    return None
  if v1_loops.context_of(op).grad_state:
    raise TypeError(f"Second-order gradient through the gradient loop "
                    f"'{v1_loops.context_of(op).name}' (op '{op.name}') of "
                    "a v1 while loop is not supported")
  if isinstance(grad, tf.Tensor):
    grad_loop.AddName(grad.name)
  elif isinstance(grad, (tf.IndexedSlices, tf.SparseTensor)):
    grad_loop.AddName(grad.values.name)
    grad_loop.AddName(grad.indices.name)
    if grad.dense_shape is not None:
      grad_loop.AddName(grad.dense_shape.name)
  else:
    raise TypeError(f"Gradient of Exit '{op.name}' is a {type(grad)}, not a "
                    "Tensor, IndexedSlices or SparseTensor")
  grad_loop.Enter()
  try:
    result = v1_loops.enter_frame(
        grad, grad_loop.name, False, grad_loop.parallel_iterations,
        name="b_exit")
  finally:
    grad_loop.Exit()
  grad_loop.loop_enters.append(result)
  return result


def _enter_grad(op, grad):
  """An Enter of a loop variable becomes the gradient loop's Exit; of a
  loop invariant, a loop summing the gradients of every iteration."""
  grad_loop = _grad_loop()
  if grad_loop is None or not grad_loop.back_prop \
      or grad_loop.grad_state is None:
    return grad
  if op.get_attr("is_constant"):
    if isinstance(grad, tf.Tensor):
      return v1_loops.add_invariant_accumulator(grad_loop, op, grad)
    if isinstance(grad, tf.IndexedSlices):
      return grad_loop.AddBackpropIndexedSlicesAccumulator(op, grad)
    raise TypeError(f"Gradient of loop invariant '{op.name}' is a "
                    f"{type(grad)}, not a Tensor or IndexedSlices")
  result = v1_loops.exit_frame(grad)
  grad_loop.loop_exits.append(result)
  grad_loop.ExitResult([result])
  return result


@passes_gradients_through
def _next_iteration_grad(_, grad):
  """Identity: the gradient loop's NextIteration is added by the Switch's
  rule."""
  return grad


for _suffix in ("", "Ref"):
  RegisterGradient(_suffix + "Switch")(_switch_grad)
  RegisterGradient(_suffix + "Merge")(_merge_grad)
  RegisterGradient(_suffix + "Exit")(_exit_grad)
  RegisterGradient(_suffix + "Enter")(_enter_grad)
  RegisterGradient(_suffix + "NextIteration")(_next_iteration_grad)
