"""If, StatelessIf, Case and StatelessCase (control flow v2 conds), built
by tfgrad: each branch's gradient is a function graph differentiated by
tfgrad's engine (`tfgrad.functional`), the forward op is rewritten once to
output the intermediates those gradients read, wrapped in optionals (only
the branch that ran fills them; TF's rules wrap them the same way), and
the gradient is one If/Case on the same predicate or index.

Compared with TF's rules: only inputs some x depends on get a gradient,
outputs nothing reached are left out (no zeros fed in), and the gradient
op's results get an Identity only where a gradient is returned.

In an XLA context (which compiles no optionals) or with optionals switched
off, intermediates are output unwrapped, as TF's rules output them there:
each branch's in output slots of their own, the other branches filling
those slots with FakeParams of the same dtype and shape (never read: the
gradient runs the branch that ran; XLA turns them into zeros).
"""

import tensorflow as tf

from tfgrad import functional
from tfgrad import tf_compat
from tfgrad.emit import raw
from tfgrad.ops import _helpers
from tfgrad.registry import RegisterGradient
from tfgrad.registry import takes_none_for_unreached_outputs


def _branch_gradients(op, bodies, grads, needed, wrap):
  """Each branch differentiated toward the inputs in `needed`, its
  intermediates wrapped in optionals if `wrap`."""
  result = []
  for body in bodies:
    bg = functional.BodyGradient(body, wrap=wrap, in_cond=True)
    ys, grad_ys = [], []
    for y, g in zip(body.outputs, grads):
      if g is not None and tf_compat.is_trainable(y):
        ys.append(y)
        grad_ys.append(g)
    bg.results = bg.differentiate(ys, grad_ys,
                                  [body.inputs[k] for k in needed])
    result.append(bg)
  return result


def _flat(g):
  if isinstance(g, tf.IndexedSlices):
    return [g.values, g.indices, g.dense_shape]
  return [g]


def _match_results(body_grads, needed):
  """Makes the branches' results agree, as TF's rules do: zeros where one
  branch has no gradient and another has, IndexedSlices where one has
  them (a dense_shape and int64 indices where needed). Sets each graph's
  outputs; returns per needed input None, "dense" or "slices"."""
  kinds = []
  outputs = [[] for _ in body_grads]
  for j, k in enumerate(needed):
    results = [bg.results[j] for bg in body_grads]
    if all(r is None for r in results):
      kinds.append(None)
      continue
    sparse = any(isinstance(r, tf.IndexedSlices) for r in results)
    for b, bg in enumerate(body_grads):
      with bg.graph.as_default():
        r = results[b]
        if r is None:
          r = tf_compat.zeros_like_input(bg.body.inputs[k])
        if sparse:
          r = _as_slices(r, bg.body.inputs[k])
        results[b] = r
    if sparse and len({r.indices.dtype for r in results}) > 1:
      for b, bg in enumerate(body_grads):
        with bg.graph.as_default():
          r = results[b]
          results[b] = tf.IndexedSlices(r.values, tf.cast(r.indices, tf.int64),
                                        r.dense_shape)
    for b, r in enumerate(results):
      outputs[b].extend(_flat(r))
    kinds.append("slices" if sparse else "dense")
  for bg, outs in zip(body_grads, outputs):
    bg.graph.outputs = outs
  return kinds


def _as_slices(r, x):
  if not isinstance(r, tf.IndexedSlices):
    return tf_compat.as_indexed_slices(r)
  if r.dense_shape is None:
    return tf.IndexedSlices(r.values, r.indices, tf.shape(x))
  return r


def _own_slots_per_branch(body_grads):
  """Lays out unwrapped intermediates for the forward rewrite: every
  branch's added tensors in slots of their own, in branch order, and in
  the other branches a FakeParam of the same dtype and shape (unknown
  dimensions 0, as XLA needs static shapes) in each of those slots."""
  laid_out = [[] for _ in body_grads]
  for b, bg in enumerate(body_grads):
    for t in bg.added:
      for c, other in enumerate(body_grads):
        laid_out[c].append(t if c == b else _fake_param(other.body, t))
  for bg, added in zip(body_grads, laid_out):
    bg.added = added


def _fake_param(body, t):
  """A FakeParam in `body` standing for `t` of another branch."""
  shape = t.shape
  if shape.rank is not None:
    shape = tf.TensorShape([0 if d is None else d for d in shape.as_list()])
  with body.as_default():
    return tf.raw_ops.FakeParam(dtype=t.dtype, shape=shape)


def _gradient_op(op, body_grads, first, build):
  """The If/Case computing the gradients: arguments matched across the
  branches, `build(inputs, tout, funcs, shapes, stateful)` creates it."""
  graphs = [bg.graph for bg in body_grads]
  pairs = [bg.outer_inputs(op, first) for bg in body_grads]
  inputs = functional.matched_inputs(graphs, [p[0] for p in pairs],
                                     [p[1] for p in pairs])
  funcs = [tf_compat.register_function(g) for g in graphs]
  tout = [t.dtype for t in graphs[0].outputs]
  shapes = []
  for ts in zip(*[g.outputs for g in graphs]):
    shape = ts[0].shape
    for t in ts[1:]:
      shape = shape.most_specific_compatible_shape(t.shape)
    shapes.append(shape)
  stateful = any(tf_compat.has_stateful_op(g) for g in graphs)
  grad_op = build(inputs, tout, funcs, shapes, stateful)
  tf_compat.finish_functional_op(grad_op, tf_compat.lowering_attr(op))
  return grad_op


def _unflatten(grad_op, kinds, needed, n_inputs):
  """The gradient op's outputs (each behind an Identity) as one gradient
  per op input, None for the index/predicate and unneeded inputs."""
  outs = iter(grad_op.outputs if grad_op is not None else ())
  grads = [None] * n_inputs
  for k, kind in zip(needed, kinds):
    if kind == "dense":
      grads[k + 1] = raw.Identity(input=next(outs))
    elif kind == "slices":
      values, indices, shape = (raw.Identity(input=next(outs))
                                for _ in range(3))
      grads[k + 1] = tf.IndexedSlices(values, indices, shape)
  return grads


def _cond_gradient(op, grads, func_attr, build):
  """The gradient of an If/Case op `op`: its branches' gradient function
  graphs, the forward rewrite, the gradient op."""
  wrap = tf_compat.optionals_usable(tf_compat.default_graph())
  needed = [k for k in range(len(op.inputs) - 1)
            if _helpers.needs_grad(op, k + 1)]
  grads = list(grads) + [None] * (len(op.outputs) - len(grads))
  if not needed or all(g is None for g in grads):
    return [None] * len(op.inputs)
  with tf_compat.building_lock(op.graph):
    bodies = tf_compat.branch_graphs(op)
    body_grads = _branch_gradients(op, bodies, grads, needed, wrap)
    kinds = _match_results(body_grads, needed)
    if all(kind is None for kind in kinds):
      grad_op = None
    else:
      if not wrap:
        _own_slots_per_branch(body_grads)
      functional.rewrite(op, body_grads, func_attr,
                         functional.none_optionals)
      grad_op = _gradient_op(op, body_grads, 1, build)
  grads = _unflatten(grad_op, kinds, needed, len(op.inputs))
  return _zeros_where_tf_has_them(op, bodies, grads, needed, kinds)


def _zeros_where_tf_has_them(op, bodies, grads, needed, kinds):
  """Zeros for the inputs that got no gradient because the outputs they
  lead to were not reached: TF's rules, fed zeros there, return zeros."""
  missing = [k for k, kind in zip(needed, kinds) if kind is None]
  if not missing:
    return grads
  connected = set()
  for body in bodies:
    connected.update(functional.connected_inputs(body, missing))
  for k in connected:
    grads[k + 1] = tf_compat.zeros_like_input(op.inputs[k + 1])
  return grads


@takes_none_for_unreached_outputs
def _if_grad(op, *grads):
  """Gradient If on the same predicate; branch b computes branch b's
  vector-Jacobian product from the intermediates it saved."""
  pred = op.inputs[0]

  def build(inputs, tout, funcs, shapes, stateful):
    make = tf.raw_ops.If if stateful else tf.raw_ops.StatelessIf
    return make(cond=pred, input=inputs, Tout=tout, then_branch=funcs[0],
                else_branch=funcs[1], output_shapes=shapes,
                name="gradient")[0].op
  return _cond_gradient(op, grads, ("then_branch", "else_branch"), build)


@takes_none_for_unreached_outputs
def _case_grad(op, *grads):
  """Gradient Case on the same branch index."""
  index = op.inputs[0]

  def build(inputs, tout, funcs, shapes, stateful):
    make = tf.raw_ops.Case if stateful else tf.raw_ops.StatelessCase
    return make(branch_index=index, input=inputs, Tout=tout, branches=funcs,
                output_shapes=shapes, name="gradient")[0].op
  return _cond_gradient(op, grads, "branches", build)


RegisterGradient("If")(_if_grad)
RegisterGradient("StatelessIf")(_if_grad)
RegisterGradient("Case")(_case_grad)
RegisterGradient("StatelessCase")(_case_grad)
