"""Read-only graph queries for backprop: which ops lie between xs and ys,
how many gradient contributions each waits for, and where backprop stops.

Everything here is O(ops in the subgraph it visits); nothing scans a whole
graph. Inputs are seen through `InputResolver`, which crosses function-graph
capture boundaries so that a y inside a `tf.function` body can be
differentiated with respect to an x in the graph that encloses it.
"""

import collections
import dataclasses

from tfgrad import tf_compat


class InputResolver:
  """Maps an op to its inputs, replacing captured placeholders of function
  graphs by the outer tensors they stand for (unless the placeholder is
  itself one of the xs). Results are cached per op for one backprop call.
  `redirect` (id(tensor) -> tensor) sends the gradient of a tensor to
  another: ops reading the first are seen reading the second (the copies
  `tfgrad.remat` recomputes take the gradients of what they recompute)."""

  def __init__(self, xs, func_graphs, redirect=None):
    self._x_ids = {id(x) for x in xs}
    self._redirect = redirect
    self._cache = {}
    self._graph_inputs_cache = {}
    self._outer_of = {}     # id(placeholder) -> outer tensor
    self._inner_of = collections.defaultdict(list)  # id(outer) -> placeholders
    for graph in func_graphs:
      for outer, inner in tf_compat.captures(graph):
        self._inner_of[id(outer)].append(inner)
    self._indexed_graphs = set()

  def _index_captures(self, graph):
    if graph not in self._indexed_graphs:
      self._indexed_graphs.add(graph)
      for outer, inner in tf_compat.captures(graph):
        self._outer_of[id(inner)] = outer

  def _resolve(self, t):
    while (not tf_compat.is_eager_tensor(t)
           and tf_compat.is_function_graph(t.graph)
           and tf_compat.is_placeholder(t.op)):
      self._index_captures(t.graph)
      outer = self._outer_of.get(id(t))
      if outer is None:
        break
      t = outer
    return t

  def inputs(self, op):
    """All inputs of `op` (eager captures included), capture-resolved."""
    cached = self._cache.get(op)
    if cached is None:
      if tf_compat.is_function_graph(op.graph):
        cached = [t if id(t) in self._x_ids else self._resolve(t)
                  for t in op.inputs]
      else:
        cached = list(op.inputs)
      if self._redirect:
        cached = [self._redirect.get(id(t), t) for t in cached]
      self._cache[op] = cached
    return cached

  def graph_inputs(self, op):
    """Inputs of `op` that are graph tensors (captured eager values dropped)."""
    cached = self._graph_inputs_cache.get(op)
    if cached is None:
      cached = self._graph_inputs_cache[op] = [
          t for t in self.inputs(op) if not tf_compat.is_eager_tensor(t)]
    return cached

  def consumers(self, t):
    """Ops consuming `t`, including through captures by function graphs."""
    if not self._inner_of:
      return t.consumers()
    result = list(t.consumers())
    for inner in self._inner_of.get(id(t), ()):
      result.extend(self.consumers(inner))
    return result


@dataclasses.dataclass
class Subgraph:
  """The part of the graph backprop visits."""
  ops: list                 # ops on some path from an x to a y, y side first
  members: set              # the same ops, as a set
  pending: dict             # op -> gradient contributions it still awaits
  reachable_to_ops: set     # the ys' ops that some x reaches
  stop_ops: set             # ops whose rules must not run
  from_ops: list = dataclasses.field(default_factory=list)   # the xs' ops
  stop_gradient_ops: set = dataclasses.field(default_factory=set)
  full_reach: set = None    # reachable_from(from_ops) unblocked, on demand
  blocked: set = dataclasses.field(default_factory=set)  # ops `blocks` cut


def reachable_from(from_ops, resolver, blocks=None, blocked=None):
  """Ops reachable from `from_ops` through trainable tensors, not passing
  through ops for which `blocks(op)` is true (ops declared not
  differentiable: no gradient crosses them, so inputs that reach an x only
  through one need no gradient). The ops cut are added to `blocked`."""
  reached = set()
  blocked = set() if blocked is None else blocked
  queue = collections.deque(from_ops)
  starts = set(from_ops)
  is_trainable, consumers = tf_compat.is_trainable, resolver.consumers
  while queue:
    op = queue.popleft()
    if op in reached or op in blocked:
      continue
    if blocks is not None and op not in starts and blocks(op):
      blocked.add(op)
      continue
    reached.add(op)
    for out in op.outputs:
      if is_trainable(out):
        queue.extend(consumers(out))
  return reached


def between(to_ops, from_ops, stop_gradient_ops, resolver, blocks=None):
  """The ops between xs' ops and ys' ops, their pending counts and stops."""
  blocked = set()
  reached = reachable_from(from_ops, resolver, blocks, blocked)
  reachable_to_ops = {op for op in to_ops if op in reached}
  ops, members = [], set()
  queue = collections.deque(to_ops)
  while queue:
    op = queue.popleft()
    if op in reached and op not in members:
      members.add(op)
      ops.append(op)
      queue.extend(t.op for t in resolver.graph_inputs(op))
  pending = collections.defaultdict(int)
  for op in ops:
    for t in resolver.graph_inputs(op):
      if t.op in members:
        pending[t.op] += 1
  stops = stop_ops(from_ops, stop_gradient_ops, pending, resolver)
  return Subgraph(ops, members, pending, reachable_to_ops, stops,
                  list(from_ops), set(stop_gradient_ops), blocked=blocked)


def stop_ops(from_ops, stop_gradient_ops, pending, resolver):
  """xs' ops with no x upstream of them, plus explicit `stop_gradients` ops:
  backprop does not run rules for these."""
  stops = {op for op in from_ops
           if not any(pending.get(t.op, 0) > 0
                      for t in resolver.graph_inputs(op))}
  stops.update(stop_gradient_ops)
  return stops


def stops_in_unpruned_walk(op, subgraph, resolver):
  """Whether `op` is a stop op when reachability also crosses ops declared
  not differentiable (as stock TF's walk does): an explicit stop, or an xs'
  op none of whose inputs an x reaches. Such a walk can only reach more,
  so this is False for ops outside `subgraph.stop_ops`."""
  if op not in subgraph.stop_ops:
    return False
  if op in subgraph.stop_gradient_ops:
    return True
  if subgraph.full_reach is None:
    subgraph.full_reach = reachable_from(subgraph.from_ops, resolver)
  return not any(t.op in subgraph.full_reach
                 for t in resolver.graph_inputs(op))


def unneeded_inputs(op, members, resolver):
  """Indices of `op`'s inputs through which no x can be reached: their
  gradients would be dead ops."""
  return tuple(i for i, t in enumerate(resolver.inputs(op))
               if tf_compat.is_eager_tensor(t) or t.op not in members)


def path_from_ys(op, to_ops, resolver):
  """One chain of op names from a y's op down to `op`, for error messages."""
  parent = {y_op: None for y_op in to_ops}
  queue = collections.deque(to_ops)
  while queue:
    cur = queue.popleft()
    if cur is op:
      chain = []
      while cur is not None:
        chain.append(cur.name)
        cur = parent[cur]
      return list(reversed(chain))
    for t in resolver.graph_inputs(cur):
      if t.op not in parent:
        parent[t.op] = cur
        queue.append(t.op)
  return [op.name]
