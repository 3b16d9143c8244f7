"""Functional control flow: If, While, Case and their stateless forms.

TF's rules for these ops build the gradient of each branch or loop body as a
new function graph, differentiating the body with TF's internal
`_GradientsHelper(..., src_graph=body)`. tfgrad runs those rules through a
private view of their module in which that name is tfgrad's engine (see
`tf_compat.routed_through_tfgrad`), so the bodies are differentiated with
tfgrad's rules; the surrounding plumbing (accumulators for loop
intermediates, rewriting the forward op to output them) stays TF's. Strict
mode accepts these types for that reason.

While and StatelessWhile get a rule of ours around TF's: it decides which
incoming gradients the gradient loop carries and which of the loop's
results become graph outputs, so that no op it adds is dead (see
`_while_grad`).

The v1 control-flow ops (Switch, Merge, Enter, Exit, NextIteration,
LoopCond and their Ref forms) are not listed: graphs with v1 while loops
are handed to TF's engine as a whole (see `tfgrad.api`).
"""

import tensorflow as tf

from tfgrad import tf_compat
from tfgrad.emit import raw
from tfgrad.ops import _helpers
from tfgrad.registry import NotDifferentiable
from tfgrad.registry import RegisterGradient
from tfgrad.registry import UseTFGradient
from tfgrad.registry import takes_none_for_unreached_outputs

def _passes_through(op, index):
  """True if the loop body hands input `index` on unchanged (a captured
  invariant): then that output's gradient reaches no other loop variable."""
  body = tf_compat.while_body_graph(op)
  return body.outputs[index] is body.inputs[index]


def _loop_output_grads(op, grads):
  """The gradients the gradient loop starts from.

  A loop variable nothing reached still needs zeros: its gradient flows
  through the body into the other variables' gradients. An invariant the
  body passes through unchanged gets None when its input needs no gradient
  (TF's rule leaves None out of the gradient loop), else zeros. Accumulator
  outputs past the original loop variables get None when nothing reached
  them, as TF's rule gives them."""
  grads = list(grads)
  loop_vars = tf_compat.while_original_output_count(op)
  for i, g in enumerate(grads):
    if i >= loop_vars:
      continue
    if _passes_through(op, i) and not _helpers.needs_grad(op, i):
      grads[i] = None
      continue
    out = op.outputs[i]
    if g is None and tf_compat.is_trainable(out) \
        and tf_compat.supports_default_grad(out):
      grads[i] = tf_compat.zeros_for_output(op, i)
  return grads


def _as_output(g):
  """Identity over a gradient loop result. A While's own outputs are
  separated from later consumers by Identity ops (lowering to v1 control
  flow relies on it when one is fetched), as TF's rule does for all of
  them; here only for the results that are returned."""
  if isinstance(g, tf.IndexedSlices):
    return tf.IndexedSlices(
        raw.Identity(input=g.values), raw.Identity(input=g.indices),
        None if g.dense_shape is None else raw.Identity(input=g.dense_shape))
  return raw.Identity(input=g)


@takes_none_for_unreached_outputs
def _while_grad(op, *grads):
  """TF's While rule (gradient loop, accumulators for the forward loop's
  intermediates), fed only the gradients it uses and keeping only the
  results someone asked for: TF's rule, given zeros for every unreached
  output and wrapping each result in Identity, leaves ops no returned
  gradient depends on.

  TF's rule is not told which inputs need no gradient (TF rules never
  are): it would take every input past the first capture for an
  invariant, and after a first gradient has added accumulators to the
  loop, those are not (their gradients carry a second derivative)."""
  grads = _loop_output_grads(op, grads)
  if all(g is None for g in grads):
    return [None] * len(op.inputs)
  results = tf_compat.tf_while_grad()(op, *grads)
  return [_as_output(g) if g is not None and _helpers.needs_grad(op, i)
          else None for i, g in enumerate(results)]


RegisterGradient("While")(_while_grad)
RegisterGradient("StatelessWhile")(_while_grad)

# v1 control flow. Loops (Enter/Exit/NextIteration frames) never reach a
# rule here: graphs holding them are handed to TF's engine whole. Switch and
# Merge of a v1 `tf.cond` do, and TF's rules for them work from the cond's
# control-flow context, which lives on the forward ops.
for _op_type in ("Switch", "RefSwitch", "Merge", "RefMerge", "Enter",
                 "RefEnter", "Exit", "RefExit", "NextIteration",
                 "RefNextIteration"):
  UseTFGradient(_op_type)

NotDifferentiable("LoopCond")  # TF's rule returns None for its predicate
