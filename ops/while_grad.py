"""While and StatelessWhile (control flow v2): the gradient loop is built
by tfgrad (`tfgrad/while_builder.py`), its body differentiated by tfgrad's
engine. The rule decides which incoming gradients the gradient loop
carries and which of its results become gradients, so that no op it adds
is dead."""

import numpy as np
import tensorflow as tf

from tfgrad import emit
from tfgrad import loop_remat
from tfgrad import remat
from tfgrad import tf_compat
from tfgrad import while_builder
from tfgrad.emit import raw
from tfgrad.ops import _helpers
from tfgrad.registry import RegisterGradient
from tfgrad.registry import takes_none_for_unreached_outputs


def _carried(body_out):
  """False for a body output no gradient can flow through: not trainable,
  or the TensorList accumulator of a non-trainable value."""
  if not tf_compat.is_trainable(body_out):
    return False
  if body_out.op.type == "TensorListPopBack" and body_out.value_index == 0:
    return tf_compat.is_trainable_dtype(body_out.op.get_attr("element_dtype"))
  return True


def _zeros_start(op, i):
  """Whether loop variable i, reached by no gradient, starts from zeros:
  a resource or TensorList (a list of zeros the length of the forward's)
  when its input has a default gradient, else when the output is
  trainable and has one."""
  out = op.outputs[i]
  if out.dtype in (tf.resource, tf.variant) and \
      tf_compat.supports_default_grad(op.inputs[i]):
    return True
  return tf_compat.is_trainable(out) and tf_compat.supports_default_grad(out)


def _zeros(x, out):
  """Zeros starting the gradient of loop output `out` (input `x`): for a
  resource, of its variable's shape and dtype."""
  if out.dtype != tf.resource:
    return raw.ZerosLike(x=out)
  shape, dtype = tf_compat.default_grad_shape_and_dtype(x)
  if shape.is_fully_defined():
    dims = emit.const(np.array(shape.as_list(), np.int32), tf.int32)
  else:
    dims = raw.VariableShape(input=out, out_type=tf.int32)
  return raw.Fill(dims=dims, value=emit.const(0, dtype))


def _loop_output_grads(op, body, grads):
  """The gradients the gradient loop starts from.

  A loop variable nothing reached still needs zeros: its gradient flows
  through the body into the other variables' gradients. An invariant the
  body passes through unchanged gets None when its input needs no
  gradient, else zeros. Accumulator outputs a gradient added get None
  unless a later gradient marked them loop variables. IndexedSlices are
  densified (the loop variable is a Tensor)."""
  grads = list(grads)
  loop_vars = while_builder.original_output_count(op)
  for i, g in enumerate(grads):
    if i >= loop_vars or not _carried(body.outputs[i]):
      grads[i] = None
    elif body.outputs[i] is body.inputs[i] and not _helpers.needs_grad(op, i):
      grads[i] = None
    elif g is None and _zeros_start(op, i):
      grads[i] = _zeros(op.inputs[i], op.outputs[i])
    elif isinstance(g, tf.IndexedSlices):
      grads[i] = tf.convert_to_tensor(g)
  return grads


def _as_output(g):
  """Identity over a gradient loop result. A While's own outputs are
  separated from later consumers by Identity ops (lowering to v1 control
  flow relies on it when one is fetched), as TF's rule does for all of
  them; here only for the results that are returned."""
  return raw.Identity(input=g)


def _differentiate(ys, xs, grad_ys, body):
  from tfgrad import api  # pylint: disable=g-import-not-at-top
  return api.gradients_helper(ys, xs, grad_ys=grad_ys, src_graph=body,
                              unconnected_gradients="zero",
                              seed_identity=False)


@takes_none_for_unreached_outputs
def _while_grad(op, *grads):
  """Runs the loop backwards: a While over the body's gradient, fed the
  forward intermediates it reads through TensorList accumulators."""
  graphs = while_builder.loop_graphs(op)
  body = graphs[1]
  if any(g is not None for g in grads) and all(
      g is None or _zeros_of(op, i, g) for i, g in enumerate(grads)):
    return _zeros_for_inputs(op, body)
  grads = _loop_output_grads(op, body, grads)
  anchor = while_builder.anchor_index(op)
  if anchor is not None:
    grads[anchor] = None
  if all(g is None for g in grads):
    results = [None] * len(op.inputs)
  elif anchor is None and remat.checkpoints_loop(op):
    results = loop_remat.build(op, graphs, grads, _differentiate)
  else:
    results = while_builder.build(op, graphs, grads, _differentiate)
  results = [_as_output(g) if g is not None and _helpers.needs_grad(op, i)
             else None for i, g in enumerate(results)]
  if anchor is not None and _helpers.needs_grad(op, anchor):
    results[anchor] = raw.ZerosLike(x=op.inputs[anchor])
  return results


def _zeros_of(op, i, g):
  """True if gradient `g` of output i is ZerosLike of that output (what a
  gradient loop gives its anchor, see while_builder)."""
  return (isinstance(g, tf.Tensor) and g.op.type == "ZerosLike"
          and g.op.inputs[0] is op.outputs[i])


def _zeros_for_inputs(op, body):
  """The gradient when only zeros came in: zeros for every input that
  needs one and would carry one (no loop is built)."""
  loop_vars = while_builder.original_output_count(op)
  return [tf_compat.zeros_like_unconnected(x)
          if _helpers.needs_grad(op, i) and (
              i >= loop_vars or _carried(body.outputs[i]))
          and tf_compat.is_trainable(x) else None
          for i, x in enumerate(op.inputs)]


RegisterGradient("While")(_while_grad)
RegisterGradient("StatelessWhile")(_while_grad)
