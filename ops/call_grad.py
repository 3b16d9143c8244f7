"""PartitionedCall and StatefulPartitionedCall: calls of graph functions
(tf.function), built by tfgrad. The called function's graph is
differentiated by tfgrad's engine into a gradient function, built once per
function and request (which inputs need a gradient, which outputs got
one) and shared by every call of it; the call op is rewritten to a
forward function that also outputs the intermediates that gradient reads
(only those: a linear function needs none), and the gradient is one call
of the gradient function. TF's delayed-rewrite gradient does the same
with TF's builder, for every input and output.

The gradient calls are differentiated the same way (second order). Other
calls TF gives no gradient function (ops imported from a GraphDef) are
differentiated by TF's SymbolicGradient op, as TF does.
"""

import tensorflow as tf

from tfgrad import api
from tfgrad import functional
from tfgrad import tf_compat
from tfgrad.emit import raw
from tfgrad.ops import _helpers
from tfgrad.registry import RegisterGradient
from tfgrad.registry import takes_none_for_unreached_outputs


def _symbolic(op, grads):
  """TF's SymbolicGradient of the call, zeros for every missing gradient."""
  grads = [g if g is not None else tf_compat.zeros_for_output(op, i)
           for i, g in enumerate(grads)]
  return tf_compat.symbolic_gradient(op, grads)


def _dense(g):
  return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


@takes_none_for_unreached_outputs
def _call_grad(op, *grads):
  """Gradient call: f's vector-Jacobian product, from the output
  gradients and the intermediates the forward call now outputs."""
  kind, fn = tf_compat.override(op, tf_compat.private_attrs(op))
  source = tf_compat.delayed_rewrite_source(fn) if kind == "function" \
      else functional.own_function_source(op.get_attr("f").name)
  if source is None:
    return _symbolic(op, grads)
  body, attrs = source
  if kind == "function" and len(op.outputs) > len(body.outputs):
    # not a call of a function made from this graph: TF's gradient
    return tf_compat.routed_through_tfgrad(fn)(op, *grads)
  grads = list(grads)[:len(op.outputs)]
  needed = [k for k in range(len(op.inputs)) if _helpers.needs_grad(op, k)]
  reached = [j for j, g in enumerate(grads)
             if g is not None and tf_compat.is_trainable(body.outputs[j])]
  in_grads = [None] * len(op.inputs)
  got = set()
  if needed and reached:
    bg, kinds, fn, covered = functional.call_gradient(
        op, grads, body, attrs, needed,
        api._strict_default())  # pylint: disable=protected-access
    if any(kinds):
      results = _call_backward(op, bg, kinds, fn,
                               [_dense(grads[j]) for j in reached])
      wanted = set(needed)
      for k, r in zip(covered, results):
        if k in wanted and r is not None:
          in_grads[k] = r
          got.add(k)
  missing = [k for k in needed if k not in got]
  for k in functional.connected_inputs(body, missing) if missing else ():
    in_grads[k] = tf_compat.zeros_like_input(op.inputs[k])
  return in_grads


def _call_backward(op, bg, kinds, fn, seeds):
  """The call of gradient function `fn`. When its output shapes are all
  known, the call op is built naming a function the graph does not hold
  (`fn` itself when not added yet, else `_unbound_name`) and pointed at
  `fn` after: TF's shape inference of a call op instantiates the called
  function (and the functions it calls) to infer the shapes the op gets
  below anyway, a cost each later call of an added function would pay
  again. The graph's mutation lock spans the op's creation and the edit,
  so no Session run sees the op before it names `fn`."""
  outer, _ = bg.outer_inputs(op, 0)
  graph = tf_compat.default_graph()
  shapes_known = all(t.shape.is_fully_defined() for t in bg.graph.outputs)
  bound = fn.name
  if shapes_known and tf_compat.has_function(graph, fn.name):
    bound = _unbound_name(graph, fn.name)
  if not shapes_known or bound is None:
    tf_compat.add_function(graph, fn)
    bound = fn.name
  make = (raw.StatefulPartitionedCall if tf_compat.has_stateful_op(bg.graph)
          else raw.PartitionedCall)
  with tf_compat.mutation_lock(graph):
    outs = make(args=seeds + outer, Tout=[t.dtype for t in bg.graph.outputs],
                f=tf_compat.function_attr(bound))
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    tf_compat.add_function(graph, fn)
    if bound != fn.name:
      tf_compat.point_call_at(outs[0].op, fn.name)
  for o, t in zip(outs, bg.graph.outputs):
    o.set_shape(t.shape)
  return functional.unflatten_results(outs, kinds)


def _unbound_name(graph, name):
  """A function name derived from `name` that `graph` does not hold (a
  call op names it only while being built), else None."""
  unbound = f"{tf.compat.as_str(name)}_unbound"
  return None if tf_compat.has_function(graph, unbound) else unbound


RegisterGradient("PartitionedCall")(_call_grad)
RegisterGradient("StatefulPartitionedCall")(_call_grad)
