"""Why an x gets no gradient: `tfgrad.explain(ys, xs)`.

For each x, walks the data edges from x toward the ys and says whether a
gradient can flow, and if not, what blocks every path:

  connected           some path passes only ops with a rule
  no_path             no y depends on x at all
  stopped             every path passes a `tf.stop_gradient` op or an op
                      named in `stop_gradients`
  not_differentiable  every path passes an op declared not differentiable
                      (`tf.round`, `tf.argmax`, ...)
  integer             every path passes a tensor that is not floating or
                      complex (a cast to int, a shape)
  no_rule             every path passes an op with no gradient rule (the
                      gradient call raises LookupError)
  mixed               paths are blocked for different reasons

Each blocked path is reported once per blocking op, with the chain of op
names from x through the blocking op to a y. The walk does not look
inside the bodies of called functions or loops: a connected x whose
gradient is still None was stopped in there, or by a rule that returns
None for that input.
"""

import collections
import dataclasses
from typing import List, Optional

import tensorflow as tf

from tfgrad import backprop
from tfgrad import tf_compat

_REASONS = ("no_rule", "not_differentiable", "integer", "stopped")


@dataclasses.dataclass
class Blocker:
  """One op that blocks the paths through it."""
  kind: str          # stopped | not_differentiable | integer | no_rule
  op: str            # the blocking op's name
  op_type: str
  path: List[str]    # op names: x's op, ..., the blocking op, ..., a y's op
  tensor: Optional[str] = None  # for `integer`: the non-float tensor


@dataclasses.dataclass
class Explanation:
  """Why the gradient for one x is, or is not, built."""
  x: str
  reason: str
  blockers: List[Blocker] = dataclasses.field(default_factory=list)

  @property
  def connected(self):
    return self.reason == "connected"

  def describe(self):
    """One human-readable line."""
    if self.reason == "connected":
      return ("connected: a path to a y passes only ops with a rule (a rule "
              "or a function body along it returned no gradient)")
    if self.reason == "no_path":
      return "no path from any y: no y depends on this x"
    parts = []
    for b in self.blockers:
      what = {"stopped": "stopped at",
              "not_differentiable": "not differentiable:",
              "integer": "integer tensor out of",
              "no_rule": "no gradient rule for"}[b.kind]
      detail = f" ({b.tensor})" if b.tensor else ""
      parts.append(f"{what} {b.op} [{b.op_type}]{detail}, path "
                   + " -> ".join(b.path))
    return f"{self.reason}: " + "; ".join(parts)


def _backpropagatable(dtype):
  dtype = tf.as_dtype(dtype)
  return (dtype.is_floating or dtype.is_complex
          or dtype in (tf.resource, tf.variant))


def _as_list(value):
  if value is None:
    return []
  return list(value) if isinstance(value, (list, tuple)) else [value]


def _tensor(x):
  return x.handle if tf_compat.is_resource_variable(x) else x


def _block_kind(op, stop_ops):
  """Why `op` passes no gradient back to its inputs, or None if it does."""
  if op in stop_ops or op.type == "StopGradient":
    return "stopped"
  rule, function_call = backprop.find_rule(op, op.graph, strict=False)
  if rule is None and function_call is None:
    return "not_differentiable"
  if rule is backprop._MISSING:  # pylint: disable=protected-access
    return "no_rule"
  return None


def _ancestors(y_ops):
  """Ops some y depends on through data edges (the ys' ops included)."""
  seen, stack = set(), list(y_ops)
  while stack:
    op = stack.pop()
    if op not in seen:
      seen.add(op)
      stack.extend(t.op for t in op.inputs)
  return seen


def _path_to_y(op, y_tensors, ancestors):
  """Shortest chain of op names from `op` on to a y's op."""
  parents, queue = {op: None}, collections.deque([op])
  while queue:
    current = queue.popleft()
    if any(t.ref() in y_tensors for t in current.outputs):
      chain = []
      while current is not None:
        chain.append(current.name)
        current = parents[current]
      return chain[::-1]
    for t in current.outputs:
      for c in t.consumers():
        if c in ancestors and c not in parents:
          parents[c] = current
          queue.append(c)
  return [op.name]


def _explain_one(x, y_tensors, ancestors, stop_ops, kinds):
  """Breadth-first from x over ops that lead to a y, stopping at blockers."""
  if x.ref() in y_tensors:
    return Explanation(x.name, "connected")
  parents = {}
  queue = collections.deque()
  for c in x.consumers():
    if c in ancestors and c not in parents:
      parents[c] = None
      queue.append(c)
  if not queue:
    return Explanation(x.name, "no_path")
  blockers = []

  def chain(op):
    names = []
    while op is not None:
      names.append(op.name)
      op = parents[op]
    return [x.op.name] + names[::-1]

  while queue:
    op = queue.popleft()
    if op not in kinds:
      kinds[op] = _block_kind(op, stop_ops)
    if kinds[op] is not None:
      blockers.append(Blocker(kinds[op], op.name, op.type,
                              chain(op) + _path_to_y(op, y_tensors,
                                                     ancestors)[1:]))
      continue
    for t in op.outputs:
      if t.ref() in y_tensors and _backpropagatable(t.dtype):
        return Explanation(x.name, "connected")
      consumers = [c for c in t.consumers() if c in ancestors]
      if not consumers and t.ref() not in y_tensors:
        continue
      if not _backpropagatable(t.dtype):
        path = chain(op) + _path_to_y(op, y_tensors, ancestors)[1:]
        blockers.append(Blocker("integer", op.name, op.type, path,
                                tensor=f"{t.name}: {t.dtype.name}"))
        continue
      for c in consumers:
        if c not in parents:
          parents[c] = op
          queue.append(c)
  found = {b.kind for b in blockers}
  reason = found.pop() if len(found) == 1 else "mixed"
  order = {k: i for i, k in enumerate(_REASONS)}
  blockers.sort(key=lambda b: order[b.kind])
  return Explanation(x.name, reason, blockers)


def explain(ys, xs, stop_gradients=None):
  """For each x (same arguments as `tfgrad.gradients`), an `Explanation`:
  whether a gradient can flow from the ys to x and, if not, what blocks
  every path (see the module docstring). Graph context only, like
  `gradients`; reads the graph, adds nothing to it."""
  ys = [_tensor(y) for y in _as_list(ys)]
  xs = [_tensor(x) for x in _as_list(xs)]
  stop_ops = {_tensor(t).op for t in _as_list(stop_gradients)}
  y_tensors = {y.ref() for y in ys}
  ancestors = _ancestors({y.op for y in ys})
  kinds = {}
  return [_explain_one(x, y_tensors, ancestors, stop_ops, kinds) for x in xs]
