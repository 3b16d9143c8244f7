"""Read-only graph queries for backprop: which ops lie between xs and ys,
how many gradient contributions each waits for, and where backprop stops.

Everything here is O(ops in the subgraph it visits); nothing scans a whole
graph. Inputs are seen through `InputResolver`, which crosses function-graph
capture boundaries so that a y inside a `tf.function` body can be
differentiated with respect to an x in the graph that encloses it.
"""

import collections
import dataclasses

import tensorflow as tf

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
    self._edges_cache = {}
    self._outer_of = {}     # id(placeholder) -> outer tensor
    self._inner_of = collections.defaultdict(list)  # id(outer) -> placeholders
    for graph in func_graphs:
      for outer, inner in tf_compat.captures(graph):
        self._inner_of[id(outer)].append(inner)
    self._indexed_graphs = set()
    self._plain_graphs = {}  # graph -> no capture to resolve, no redirect
    # `is_trainable` for this call, answered once per dtype.
    self.is_trainable = tf_compat.trainability_check()

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

  def input_edges(self, op):
    """(`graph_inputs(op)`, their ops), read once per op: the walks and the
    pending counts ask for these for every op they visit."""
    cached = self._edges_cache.get(op)
    if cached is None:
      graph = op.graph  # asked once per graph: the walks meet few graphs
      plain = self._plain_graphs.get(graph)
      if plain is None:
        plain = self._plain_graphs[graph] = (
            not self._redirect and not tf_compat.is_function_graph(graph))
      if plain:
        return self._plain_edges(op)
      ts = self.inputs(op)
      if tf_compat.is_function_graph(op.graph):  # only these resolve to
        ts = [t for t in ts if not tf_compat.is_eager_tensor(t)]  # eager
      cached = self._edges_cache[op] = (ts, [t.op for t in ts])
    return cached

  def _plain_edges(self, op):
    """`input_edges` of an op not read yet, in the common case: no capture
    to resolve, no eager input to drop, nothing redirected. The tuple TF
    caches on the op serves as the list of inputs too (callers only read
    it)."""
    ts = tf_compat.op_inputs(op)
    self._cache[op] = ts
    cached = self._edges_cache[op] = (ts, [t.op for t in ts])
    return cached

  def plain_from(self, ops):
    """True if every op met going up through inputs from `ops` is read
    the common way (`_plain_edges`): nothing is redirected and no op of
    `ops` is in a function graph. An op's inputs are tensors of its own
    graph, and only inside a function graph may one stand for a tensor of
    another graph, so a walk from `ops` never leaves their graphs."""
    return not self._redirect and not any(
        tf_compat.is_function_graph(op.graph) for op in ops)

  def edge_readers(self, plain=False):
    """(cached, read) for the walks' inner loops, which spell
    `cached(op) or read(op)` for `input_edges(op)` (one call per op
    instead of two): `cached` answers None for an op not read yet. With
    `plain` (`plain_from` of the walk's start ops is true), `read` skips
    asking for each op's graph."""
    return (self._edges_cache.get,
            self._plain_edges if plain else self.input_edges)

  def graph_inputs(self, op):
    """Inputs of `op` that are graph tensors (captured eager values
    dropped)."""
    return self.input_edges(op)[0]

  def input_ops(self, op):
    """The ops of `graph_inputs(op)`, one per input (repeats kept)."""
    return self.input_edges(op)[1]

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
  ancestors: set = None     # ops some y depends on, when the walk pruned


def reachable_from(from_ops, resolver, blocks=None, blocked=None,
                   within=None):
  """Ops reachable from `from_ops` through trainable tensors, not passing
  through ops for which `blocks(op)` is true (ops declared not
  differentiable: no gradient crosses them, so inputs that reach an x only
  through one need no gradient). The ops cut are added to `blocked`.
  With `within`, a set of ops, the walk stays inside it: ops outside it
  are neither reached nor cut."""
  walk = _Forward(from_ops, resolver, blocks,
                  set() if blocked is None else blocked)
  if within is not None:
    walk.restrict(within)
  walk.run()
  return walk.reached


class _Forward:
  """The walk of `reachable_from`, resumable: `run(budget)` goes on for at
  most `budget` ops and says whether it is done; `restrict` confines the
  rest of it to a set of ops, and may say which of them each op's
  trainable outputs feed (then the walk asks the graph nothing more)."""

  def __init__(self, from_ops, resolver, blocks, blocked):
    self.queue = collections.deque(from_ops)
    self.starts = set(from_ops)
    self.reached = set()
    self.blocked = blocked
    self._blocks = blocks
    self._next = self._consumers_of(resolver.consumers,
                                    resolver.is_trainable)

  @staticmethod
  def _consumers_of(consumers, is_trainable):
    def next_ops(op):
      found = []
      for out in op.outputs:
        if is_trainable(out):
          found.extend(consumers(out))
      return found
    return next_ops

  def restrict(self, within, feeds=None):
    """From now on, only ops in `within`; `feeds` maps each op to the ops
    of `within` its trainable outputs feed, if known."""
    self.queue = collections.deque(op for op in self.queue if op in within)
    if feeds is not None:  # a defaultdict: an op feeding none gives []
      self._next = feeds.__getitem__
    else:
      next_ops = self._next
      self._next = lambda op: [c for c in next_ops(op) if c in within]

  def run(self, budget=-1):
    queue, reached, blocked = self.queue, self.reached, self.blocked
    starts, blocks, next_ops = self.starts, self._blocks, self._next
    while queue and budget:
      op = queue.popleft()
      if op in reached or op in blocked:
        continue
      budget -= 1
      if blocks is not None and op not in starts and blocks(op):
        blocked.add(op)
        continue
      reached.add(op)
      queue.extend(next_ops(op))
    return not queue


class _Backward:
  """The ops some of `to_ops` depend on, themselves included (inputs
  followed through function-graph captures, as `graph_inputs` gives
  them), gathered by `run(budget)` as `_Forward.run` does. `feeds` maps
  each op met to the ops of the set its trainable outputs feed: once the
  set is complete, the forward walk inside it needs no graph queries."""

  def __init__(self, to_ops, resolver):
    self.seen = set(to_ops)
    self.stack = list(self.seen)
    self.feeds = collections.defaultdict(list)
    self._resolver = resolver
    self._plain = resolver.plain_from(self.stack)

  def run(self, budget=-1):
    seen, stack, feeds = self.seen, self.stack, self.feeds
    cached, read = self._resolver.edge_readers(self._plain)
    is_trainable = self._resolver.is_trainable
    pop, push, see = stack.pop, stack.append, seen.add
    while stack and budget:
      budget -= 1
      op = pop()
      ts, ins = cached(op) or read(op)
      for t, inp in zip(ts, ins):
        if is_trainable(t):
          feeds[inp].append(op)
        if inp not in seen:
          see(inp)
          push(inp)
    return not stack


# Ops the two walks of `_reach_and_ancestors` take per turn. The backward
# walk takes more: its work on ops between xs and ys is needed anyway (their
# inputs, for pending counts and rules), and its set, once complete, makes
# the rest of the forward walk cheap.
_FORWARD_STEPS = 16
_BACKWARD_STEPS = 64


def _reach_and_ancestors(to_ops, from_ops, resolver, blocks, blocked):
  """The forward reach from xs, as far as ops between xs and ys go, and
  the ys' ancestors if they were gathered (else None).

  Ops between xs and ys lie in both the forward reach from the xs and the
  ys' ancestors; either set bounds the search once known. The two walks
  take turns until one is complete: then the forward walk finishes inside
  the ancestors, or it finished first. So the cost is bounded by a few
  times the smaller set, not the larger: a graph where the xs feed much
  that no y reads (variable initializers, other losses, earlier gradients)
  costs little more than its ys' ancestors, and one where the ys read much
  that no x reaches (a long input pipeline) little more than the xs'
  forward reach."""
  forward = _Forward(from_ops, resolver, blocks, blocked)
  backward = _Backward(to_ops, resolver)
  while not forward.run(_FORWARD_STEPS):
    if backward.run(_BACKWARD_STEPS):
      forward.restrict(backward.seen, backward.feeds)
      forward.run()
      return forward.reached, backward.seen
  return forward.reached, None


def between(to_ops, from_ops, stop_gradient_ops, resolver, blocks=None,
            prune=True):
  """The ops between xs' ops and ys' ops, their pending counts and stops.

  With `prune`, the forward reach from the xs may stop at ops no y depends
  on (`_reach_and_ancestors`): the ops, members, pending counts and stops
  are those of the full walk (the ops it leaves out are ones the backward
  pass from ys never meets), but `blocked` may lack cut ops no y depends
  on. `prune=False` walks everything the xs reach, listing every op cut."""
  blocked = set()
  if prune:
    reached, ancestors = _reach_and_ancestors(to_ops, from_ops, resolver,
                                              blocks, blocked)
  else:
    reached, ancestors = reachable_from(from_ops, resolver, blocks,
                                        blocked), None
  reachable_to_ops = {op for op in to_ops if op in reached}
  # Members: what the backward pass from the ys meets inside `reached`. A
  # member's inputs in `reached` are members too, so each such input
  # counts one more pending contribution as it is queued.
  ops, members = [], set()
  pending = collections.defaultdict(int)
  queue = collections.deque(op for op in to_ops if op in reached)
  cached, read = resolver.edge_readers(resolver.plain_from(queue))
  pop, push, add, append = queue.popleft, queue.append, members.add, ops.append
  while queue:
    op = pop()
    if op not in members:
      add(op)
      append(op)
      for inp in (cached(op) or read(op))[1]:
        if inp in reached:
          pending[inp] += 1
          push(inp)
  stops = stop_ops(from_ops, stop_gradient_ops, pending, resolver)
  return Subgraph(ops, members, pending, reachable_to_ops, stops,
                  list(from_ops), set(stop_gradient_ops), blocked=blocked,
                  ancestors=ancestors)


def may_hold_v1_loops(graph):
  """True if `graph` or a graph enclosing it holds a v1 while loop (TF
  lists each outermost `WhileContext` in the graph's WHILE_CONTEXT
  collection, also when a meta graph is imported). Read through
  `get_collection`, which copies and never adds a collection."""
  key = tf.compat.v1.GraphKeys.WHILE_CONTEXT
  while graph is not None:
    if graph.get_collection(key):
      return True
    graph = getattr(graph, "outer_graph", None)
  return False


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
  if subgraph.full_reach is None:  # only `op`'s inputs are asked about:
    subgraph.full_reach = reachable_from(  # y depends on them, if pruned
        subgraph.from_ops, resolver, within=subgraph.ancestors)
  return not any(t.op in subgraph.full_reach
                 for t in resolver.graph_inputs(op))


def unneeded_inputs(op, members, resolver):
  """Indices of `op`'s inputs through which no x can be reached: their
  gradients would be dead ops. Read from the input ops the walk cached
  (`input_edges`) when they line up with the inputs (no captured eager
  value dropped)."""
  skip = ()
  ts, in_ops = resolver.input_edges(op)
  if len(ts) == len(resolver.inputs(op)):
    for i, in_op in enumerate(in_ops):
      if in_op not in members:
        skip += (i,)
    return skip
  for i, t in enumerate(resolver.inputs(op)):
    if tf_compat.is_eager_tensor(t) or t.op not in members:
      skip += (i,)
  return skip


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


def post_order(roots, deps, seen=None, order=None):
  """Appends to `order` the ops reachable from `roots` through `deps(op)`
  (the ops to place before `op`), each after its deps, skipping those in
  `seen`; returns `order`. Iterative, so a graph's depth is not bounded by
  Python's recursion limit. Deps are visited last to first, so a caller
  chooses the order among siblings by the order `deps` returns them in."""
  seen = set() if seen is None else seen
  order = [] if order is None else order
  for root in roots:
    stack = [(root, False)]
    while stack:
      op, done = stack.pop()
      if done:
        order.append(op)
        continue
      if op in seen:
        continue
      seen.add(op)
      stack.append((op, True))
      for dep in deps(op):
        if dep not in seen:
          stack.append((dep, False))
  return order
