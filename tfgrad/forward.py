"""Native forward mode: tangents pushed from xs to ys through forward rules.

A forward rule has the signature `rule(op, *tangents)`: one tangent (or
None, for an input no x reaches) per `op.inputs`, and it returns one
tangent (or None) per `op.outputs`, reading `op.inputs`, `op.outputs` and
`op.get_attr(...)` only. Rules register with `RegisterForward("OpType")`
(the rules themselves live in `tfgrad.ops.forward_rules`).

`tangents_or_none` returns None, and `jvp` then takes the double-reverse
construction, when any op between the xs and the ys has no forward rule
(function calls and loops have none), or an x or y is not a tensor of the
graph being built (a variable's handle outside a `tf.function`).

Batched tangents: `batched_tangents_or_none` pushes tangents with one
leading batch axis ([b] + x.shape per x) through the same ops in one pass,
giving [b] + y.shape per y: b jvps for the ops of one. It uses an op type's
batched rule (`RegisterBatchedForward`: the same signature, every tangent
with the batch axis in front), and where an op type has none, or its rule
returns NotImplemented for this op, its plain forward rule vectorized over
the batch axis with pfor (`tf.vectorized_map`).

A batched tangent may be given as a `Basis`: the identity basis of x's
entries (every unit tensor of x's shape, or of one row of x, on every
row), not built. Ops that only rearrange entries pass it on, and an op
with a basis rule (`RegisterBasisForward`: MatMul) turns it into its
result directly (the identity times W is W, rearranged: no product);
anywhere else it is built (`Basis.tensor()`) and the batched rule runs.
"""

import tensorflow as tf

from tfgrad import graph_walk
from tfgrad import registry
from tfgrad import tf_compat

FORWARD = registry.Registry("forward rule")
BATCHED = registry.Registry("batched forward rule")
BASIS = registry.Registry("basis forward rule")


class Basis:
  """An identity basis as a batched tangent, not yet built.

  rows=False: n = x's entry count, entry j of the batch is the j-th unit
  tensor of `shape` (x's static shape): [n] + shape when built.
  rows=True: `like`'s leading axis is a batch of rows, n is one row's
  entry count, and entry j is the j-th unit tensor of a row on every row:
  [n, b] + shape[1:] when built (b = like's leading dimension, which may
  be known only at run time).
  """

  def __init__(self, shape, dtype, rows=False, like=None):
    self.shape = tf.TensorShape(shape)
    self.dtype = tf.as_dtype(dtype)
    self.rows = rows
    self.like = like
    unit = self.shape[1:] if rows else self.shape
    self.unit = unit
    self.n = unit.num_elements()
    self._built = None

  def reshaped(self, shape):
    """The same basis over the same entries, in another (static) shape."""
    return Basis(shape, self.dtype)

  def tensor(self):
    """The basis built (once: later calls return the same tensor)."""
    if self._built is None:
      eye = tf.eye(self.n, dtype=self.dtype)
      if not self.rows:
        self._built = tf.reshape(eye, [self.n] + self.shape.as_list())
      else:
        unit = tf.reshape(eye, [self.n, 1] + self.unit.as_list())
        batch = tf.shape(self.like)[:1]
        self._built = tf.broadcast_to(unit, tf.concat(
            [[self.n], batch, self.unit.as_list()], 0))
    return self._built


class RegisterForward:
  """Decorator: `@RegisterForward("Tanh") def _tanh_jvp(op, t): ...`."""

  def __init__(self, op_type):
    self._op_type = op_type

  def __call__(self, rule):
    FORWARD.register(self._op_type, rule,
                     f"{rule.__code__.co_filename}:"
                     f"{rule.__code__.co_firstlineno}")
    return rule


class RegisterBatchedForward:
  """Decorator: `@RegisterBatchedForward("MatMul") def _mm(op, ta, tb):`,
  tangents [b] + input shape, returning [b] + output shape (or
  NotImplemented: this op's tangents are then pushed by its plain rule,
  vectorized)."""

  def __init__(self, op_type):
    self._op_type = op_type

  def __call__(self, rule):
    BATCHED.register(self._op_type, rule,
                     f"{rule.__code__.co_filename}:"
                     f"{rule.__code__.co_firstlineno}")
    return rule


class RegisterBasisForward:
  """Decorator: `@RegisterBasisForward("MatMul") def _mm(op, ta, tb):`,
  where at least one tangent is a `Basis` (others Tensors or None);
  returns the batched tangents of the outputs (Tensors or Bases), or
  NotImplemented (the bases are then built and the batched rule runs)."""

  def __init__(self, op_type):
    self._op_type = op_type

  def __call__(self, rule):
    BASIS.register(self._op_type, rule,
                   f"{rule.__code__.co_filename}:"
                   f"{rule.__code__.co_firstlineno}")
    return rule


def _ops_between(ys, xs):
  """Ops on a path from an x to a y, inputs before consumers."""
  x_set = {x.ref() for x in xs}
  reached = set()
  stack = [c for x in xs for c in x.consumers()]
  while stack:
    op = stack.pop()
    if op in reached:
      continue
    reached.add(op)
    for out in op.outputs:
      stack.extend(out.consumers())
  order, seen = [], set()
  for y in ys:
    if y.ref() in x_set:
      continue
    if y.op not in reached:
      continue
    graph_walk.post_order(
        [y.op], lambda op: [t.op for t in op.inputs if t.op in reached],
        seen, order)
  return order


def _carries(x):
  """False for an integer or boolean x: a constant, with no tangent."""
  return not (x.dtype.is_integer or x.dtype.is_bool)


def _carries_tangents(op):
  """False for ops with no floating output, or declared not
  differentiable: their outputs have no tangent."""
  if registry.GRADIENTS.get(op.type, "") is None:
    return False
  return any(t.dtype.is_floating or t.dtype.is_complex for t in op.outputs)


def _native_ops(ys, xs):
  """The ops that carry tangents from xs to ys, in order, or None when
  one has no forward rule or a value is not of the graph being built."""
  graph = tf.compat.v1.get_default_graph()
  values = list(ys) + list(xs)
  if any(tf_compat.is_eager_tensor(t) or t.graph is not graph
         for t in values):
    return None           # e.g. a variable's handle captured by a function
  ops = [op for op in _ops_between(ys, xs) if _carries_tangents(op)]
  if any(FORWARD.get(op.type) is None for op in ops):
    return None
  return ops


def supported(ys, xs):
  """True when `tangents_or_none(ys, xs, ...)` takes the native path."""
  return _native_ops(ys, xs) is not None


def tangents_or_none(ys, xs, tangents):
  """Tangents of ys (None where no x reaches), or None when some op on the
  way has no forward rule. xs are Tensors (resource handles for
  variables), tangents Tensors or None, one per x."""
  ops = _native_ops(ys, xs)
  if ops is None:
    return None
  known = {}
  for x, t in zip(xs, tangents):
    if t is not None and _carries(x):
      known[x.ref()] = t
  for op in ops:
    ins = [known.get(t.ref()) for t in op.inputs]
    if all(t is None for t in ins):
      continue
    outs = FORWARD.get(op.type)(op, *ins)
    for out, t in zip(op.outputs, outs):
      if t is not None:
        known[out.ref()] = t
  return [known.get(y.ref()) for y in ys]


def batched_tangents_or_none(ys, xs, tangents):
  """As `tangents_or_none`, with a leading batch axis on every tangent
  (the same b for all) and on the results: [b] + y.shape per y. A
  tangent may be a `Basis`."""
  ops = _native_ops(ys, xs)
  if ops is None:
    return None
  known = {}
  for x, t in zip(xs, tangents):
    if t is not None and _carries(x):
      known[x.ref()] = t
  for op in ops:
    ins = [known.get(t.ref()) for t in op.inputs]
    if all(t is None for t in ins):
      continue
    outs = NotImplemented
    if any(isinstance(t, Basis) for t in ins):
      rule = BASIS.get(op.type)
      outs = NotImplemented if rule is None else rule(op, *ins)
      if outs is NotImplemented:
        ins = [t.tensor() if isinstance(t, Basis) else t for t in ins]
    if outs is NotImplemented:
      rule = BATCHED.get(op.type)
      outs = NotImplemented if rule is None else rule(op, *ins)
    if outs is NotImplemented:
      outs = _vectorized(FORWARD.get(op.type), op, ins)
    for out, t in zip(op.outputs, outs):
      if t is not None:
        known[out.ref()] = t
  return [t.tensor() if isinstance(t, Basis) else t
          for t in (known.get(y.ref()) for y in ys)]


def _vectorized(rule, op, ins):
  """op's plain forward rule over the batch axis of its tangents (pfor)."""
  live = [i for i, t in enumerate(ins) if t is not None]
  pattern = []

  def one(ts):
    full = [None] * len(ins)
    for i, t in zip(live, ts):
      full[i] = t
    outs = list(rule(op, *full))
    pattern[:] = [t is None for t in outs]
    return [tf.zeros([], out.dtype) if t is None else t
            for t, out in zip(outs, op.outputs)]

  stacked = tf.vectorized_map(one, [ins[i] for i in live],
                              fallback_to_while_loop=True, warn=False)
  return [None if none else t for none, t in zip(pattern, stacked)]
