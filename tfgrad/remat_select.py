"""Which forward tensors a rematerializing gradient keeps: the forward
graph's analysis, the cost model and the checkpoint policies.

The forward graph is the set of ops between the xs and the ys (what
`graph_walk.between` visits). Its ops are ordered by a depth-first
post-order from the ys (each op as late as its first consumer allows) and
sorted into three kinds:

    param     every input is an x, another param tensor, or a small
              integer constant (<= 64 elements: shapes, axes): variable reads, weight reshapes.
              Never recomputed, never counted as activations.
    pinned    outputs that must not be recomputed: stateful ops (random
              number generators, stateful calls), control flow and calls
              of graph functions (kept as a whole), and their inputs.
    data      everything else: activations, recomputable.

Cost model (documented in README.md, "Memory-saving gradients"):
bytes of a tensor = dtype size x number of elements of its static shape
(unknown dimensions count as 1); FLOPs of an op = 2*m*n*k for MatMul and
batch matmuls, 2 x output elements x kernel elements / output channels
for convolutions, 2 x sqrt(elements of inputs and output multiplied) for
Einsum, and its output elements for anything else. A tensor is saved
when some gradient reads it (by op type: `_READS_*`; the others are
freed during the forward pass). The estimated peak for a kept set K
follows the backward pass segment by segment, top first:

    weights + 3 x largest tensor (in flight)
    + max over segments of (kept tensors before the segment
                            + max over its positions p of (saved bytes
                              of the segment up to p + weight gradients
                              complete at p)
                            + 3 x its largest tensor if recomputed)
    + loop accumulators (see loop_bytes)

(the top segment, from the last kept tensor to the ys, is never
recomputed and holds every kept tensor; weight gradients, fetched, live
from where backprop passes their weight's first reader to the end).
Keeping everything is one segment: the plain estimate. Recompute FLOPs
count only the copies that run: up to the last saved tensor of each
segment (the Session prunes copies whose outputs nothing running reads).
Calibrated against the BFC allocator's peak (README). Policies never
look at op names.
"""

import collections
import dataclasses
import math

import tensorflow as tf

from tfgrad import graph_walk
from tfgrad import tf_compat

_SMALL_CONSTANT = 64

# Op types whose outputs "speed" keeps: the expensive ones.
EXPENSIVE_TYPES = frozenset([
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput",
    "Conv", "_FusedConv2D", "_FusedMatMul"])


class MemoryBudget:
  """`checkpoints=tfgrad.MemoryBudget(bytes)`: keep what makes the
  estimated peak of the gradient computation fit in `bytes`, with the
  least recomputation (see the module's cost model)."""

  def __init__(self, bytes):  # pylint: disable=redefined-builtin
    if not isinstance(bytes, (int, float)) or isinstance(bytes, bool) \
        or not bytes > 0:
      raise ValueError(f"MemoryBudget needs a positive number of bytes, got "
                       f"{bytes!r}")
    self.bytes = int(bytes)

  def __repr__(self):
    return f"MemoryBudget({self.bytes})"


CHOICES = ('None', '"memory"', '"speed"', "tfgrad.MemoryBudget(bytes)",
           "a list of tensors")


def nbytes(t):
  """dtype size x elements of the static shape (unknown dims as 1)."""
  shape = t.shape
  if shape.rank is None:
    elements = 1
  else:
    elements = 1
    for d in shape.as_list():
      elements *= d if d is not None else 1
  size = 8 if t.dtype in (tf.resource, tf.variant, tf.string) else t.dtype.size
  return elements * size


def _elements(t):
  return nbytes(t) // max(1, t.dtype.size) if t.dtype.size else 1


def flops(op):
  """The FLOPs of `op` by the module's cost model."""
  if not op.outputs:
    return 0
  out = _elements(op.outputs[0])
  if op.type == "MatMul" or op.type.startswith("BatchMatMul"):
    a = op.inputs[0].shape
    if a.rank:
      k = a[-2] if (op.get_attr("transpose_a") if op.type == "MatMul"
                    else op.get_attr("adj_x")) else a[-1]
      return 2 * out * (k or 1)
  if op.type in ("Conv2D", "Conv3D", "DepthwiseConv2dNative"):
    w = op.inputs[1].shape
    if w.is_fully_defined():
      cout = w[-1] if op.type != "DepthwiseConv2dNative" else w[-1] * w[-2]
      return 2 * out * w.num_elements() // max(1, cout)
  if op.type == "Einsum":
    prod = out
    for t in op.inputs:
      prod *= _elements(t)
    return 2 * int(math.sqrt(prod))
  return out


def _calls_functions(op):
  """Control flow and calls of graph functions (an attribute naming a
  function): kept as a whole, differentiated on the original op (TF's
  rules for them rewrite the op they differentiate)."""
  return bool(tf_compat.function_names(op.node_def.attr))


@dataclasses.dataclass
class Forward:
  """The analysed forward graph of one call."""
  order: list          # data and pinned ops, topological (inputs first)
  pos: dict            # op -> index in order
  kind: dict           # op -> "param" | "pinned" | "data"
  tensors: list        # data tensors in order: consumed in F or a y
  members: set         # all ops of F
  x_ids: set           # id() of the xs
  param_bytes: int
  top_bytes: int
  prefix: tuple = None  # see _prefix
  sizes: dict = dataclasses.field(default_factory=dict)  # id(t) -> bytes
  loop_plain: int = 0         # bytes of loop accumulators, plain gradient
  loop_checkpointed: int = 0  # the same with loop checkpointing
  op_flops: dict = dataclasses.field(default_factory=dict)  # op -> FLOPs
  # (weight tensor, position of its first data reader): see
  # _weight_gradients_from
  param_first_use: list = dataclasses.field(default_factory=list)
  # While op of `order` -> why loop checkpointing keeps it whole, or None
  # (`loop_remat.why_kept_whole`, asked once per call)
  loop_reasons: dict = dataclasses.field(default_factory=dict)

  def bytes_of(self, t):
    """`nbytes(t)`, read once per tensor (static shapes cost a C call)."""
    b = self.sizes.get(id(t))
    if b is None:
      b = self.sizes[id(t)] = nbytes(t)
    return b

  def unrun_flops_of(self, t):
    """FLOPs a segment ending at kept tensor `t` does not run: those
    after the last tensor some gradient reads (see _recomputed_flops)."""
    p = self.pos[t.op]
    last = _prefix(self)[4][p]
    op_flops = _prefix(self)[1]
    return op_flops[p + 1] - op_flops[last + 1]

  def flops_of(self, op):
    f = self.op_flops.get(op)
    if f is None:
      f = self.op_flops[op] = flops(op)
    return f


# Op types whose outputs are variables or reads of one: an x made by one
# is a parameter; any other x (a placeholder of inputs, a computed tensor)
# is data, whose downstream activations are recomputed like any others.
_VARIABLE_TYPES = frozenset(["VarHandleOp", "_VarHandlesOp", "ReadVariableOp",
                             "VariableV2", "Variable"])


def is_parameter(x):
  """Whether x is a parameter (a variable, its handle or a read of it):
  what only parameters compute (`w * 2`, a transposed weight) lives
  through the whole step anyway and is never a checkpoint; what a data
  x feeds (an input batch whose gradient is asked for too) is, as what
  non-x data feeds."""
  return (x.dtype == tf.resource or x.dtype._is_ref_dtype  # pylint: disable=protected-access
          or x.op.type in _VARIABLE_TYPES)


def analyse(ys, xs, members, inputs):
  """`members`: the ops between xs and ys; `inputs(op)` its graph inputs."""
  x_ids = {id(x) for x in xs}
  x_ops = {x.op for x in xs}
  post = graph_walk.post_order(
      [y.op for y in ys if y.op in members],
      lambda op: [t.op for t in reversed(inputs(op)) if t.op in members])
  kind = {}
  param_ids = {id(x) for x in xs if is_parameter(x)}
  for op in post:
    if op in x_ops:
      kind[op] = "x"
      continue
    if all(id(t) in param_ids or (t.op not in members and t.dtype.is_integer
                                  and _elements(t) <= _SMALL_CONSTANT
                                  and t.op.type == "Const")
           for t in inputs(op)):
      kind[op] = "param"
      param_ids.update(id(o) for o in op.outputs)
    elif op.op_def.is_stateful or _calls_functions(op):
      kind[op] = "pinned"
    else:
      kind[op] = "data"
  order = [op for op in post if kind[op] in ("data", "pinned")]
  pos = {op: i for i, op in enumerate(order)}
  y_ids = {id(y) for y in ys}
  tensors = []
  for op in order:
    for out in op.outputs:
      if id(out) in y_ids or any(c in members for c in out.consumers()):
        tensors.append(out)
  fwd = Forward(order, pos, kind, tensors, members, x_ids, 0, 0)
  fwd.param_bytes = sum(fwd.bytes_of(o) for op in post if kind[op] == "param"
                        for o in op.outputs if tf_compat.is_trainable(o))
  fwd.param_first_use = _first_uses(fwd, post)
  fwd.top_bytes = max([fwd.bytes_of(t) for t in tensors] or [0])
  from tfgrad import loop_remat  # pylint: disable=g-import-not-at-top
  for op in order:
    if op.type not in loop_remat.LOOP_TYPES:
      continue
    reason = fwd.loop_reasons[op] = loop_remat.why_kept_whole(op)
    plain, checkpointed = loop_bytes(op, reason)
    fwd.loop_plain += plain
    fwd.loop_checkpointed += checkpointed
  return fwd


def _first_uses(fwd, post):
  """(param tensor, position of the first data op reading it, directly or
  through other param ops) for the trainable param tensors; a tensor no
  data op reads counts as read last."""
  n = len(fwd.order)
  first = {}
  result = []
  for op in reversed(post):  # readers before what they read
    if fwd.kind[op] != "param":
      continue
    for o in op.outputs:
      at = n
      for c in o.consumers():
        if c in fwd.pos:
          at = min(at, fwd.pos[c])
        elif fwd.kind.get(c) == "param":
          at = min(at, first.get(c, n))
      first[op] = min(first.get(op, n), at)
      if tf_compat.is_trainable(o):
        result.append((o, at))
  return result


# ----- loops: what their gradients keep per iteration -----

def _guess(t):
  """A scalar's static value, or a placeholder's default; else None."""
  value = tf.get_static_value(t)
  if value is None and t.op.type == "PlaceholderWithDefault":
    value = tf.get_static_value(t.op.inputs[0])
  if value is None or getattr(value, "ndim", 0) != 0:
    return None
  return int(value)


def trip_count_guess(op):
  """The trip count of While `op` if its inputs tell: the least bound of
  `counter < bound` / `counter <= bound` comparisons in its condition
  (and of maximum_iterations) whose start and bound are constants or
  placeholder defaults; None when none does."""
  cond = tf_compat.while_cond_graph(op)
  outer = {id(p): x for p, x in zip(cond.inputs, op.inputs)}

  def value(t):
    if id(t) in outer:
      return _guess(outer[id(t)])
    return _guess(t) if t.op.type == "Const" else None

  counts = []
  for o in cond.get_operations():
    if o.type in ("Less", "LessEqual") and id(o.inputs[0]) in outer:
      start, bound = value(o.inputs[0]), value(o.inputs[1])
      if start is not None and bound is not None:
        counts.append(max(0, bound - start + (o.type == "LessEqual")))
  return min(counts) if counts else None


_ASK = object()  # loop_bytes: ask why_kept_whole


def loop_bytes(op, reason=_ASK):
  """(plain, checkpointed): estimated bytes of the accumulators of the
  gradient of While `op`: per iteration, the body tensors some gradient
  reads (a loop variable's new value once: it is the next iteration's
  input; a variable read not at all: it aliases the variable), times the trip count for the plain gradient; with loop
  checkpointing k = ceil(sqrt(T)) iterations' worth plus T / k saved
  states. (0, 0) for other ops or an unknown trip count. `reason`: what
  `loop_remat.why_kept_whole(op)` says, when the caller has asked it."""
  from tfgrad import loop_remat  # pylint: disable=g-import-not-at-top
  if op.type not in loop_remat.LOOP_TYPES:
    return 0, 0
  trips = trip_count_guess(op)
  if not trips:
    return 0, 0
  body = tf_compat.while_body_graph(op)
  scope = _Members(set(body.get_operations()))
  inputs = {id(x) for x in body.inputs}
  saved = {id(t): t for o in body.get_operations()
           if o.type not in ("Const", "ReadVariableOp")
           for t in o.outputs if id(t) not in inputs
           and tf_compat.is_trainable(t) and _read_by_a_gradient(scope, t)}
  state = 0
  for x, y in zip(body.inputs, body.outputs):
    if y is x or not tf_compat.is_trainable(x):
      continue
    state += nbytes(x)
    if id(y) not in saved and any(
        c.type not in _READS_NOTHING and c.type not in _READS_OUTPUTS
        for c in x.consumers()):
      saved[id(x)] = x
  per_iteration = sum(nbytes(t) for t in saved.values())
  if reason is _ASK:
    reason = loop_remat.why_kept_whole(op)
  if reason is not None:
    return trips * per_iteration, trips * per_iteration
  k = math.ceil(math.sqrt(trips))
  return (trips * per_iteration,
          k * per_iteration + (math.ceil(trips / k) + 1) * state)


@dataclasses.dataclass
class _Members:
  members: set


def pinned_tensors(fwd, inputs):
  """Outputs of pinned ops, and their data inputs: never recomputed."""
  kept = []
  for op in fwd.order:
    if fwd.kind[op] == "pinned":
      kept.extend(o for o in op.outputs if tf_compat.is_trainable(o))
      kept.extend(t for t in inputs(op)
                  if t.op in fwd.pos and fwd.kind[t.op] == "data")
  return kept


def separators(fwd, inputs):
  """Data tensors whose removal cuts the forward graph: sweeping ops in
  topological order, the cuts across which only that tensor is live."""
  last_use = {}
  for op in fwd.order:
    p = fwd.pos[op]
    for t in inputs(op):
      if t.op in fwd.pos:
        last_use[id(t)] = p
  live, result = {}, []
  for op in fwd.order:
    p = fwd.pos[op]
    for t in inputs(op):
      if last_use.get(id(t)) == p:
        live.pop(id(t), None)
    for out in op.outputs:
      if last_use.get(id(out), -1) > p:
        live[id(out)] = out
    if len(live) == 1:
      (t,) = live.values()
      if t.op is op and fwd.kind[op] == "data":
        result.append(t)
  return result


@dataclasses.dataclass
class Plan:
  kept: list             # data tensors kept, topological; None: all
  estimate: int          # estimated peak, bytes
  plain_estimate: int    # the same estimate keeping everything
  recompute_flops: int


# What an op type's gradient reads (static shapes aside), for the estimate:
# a forward tensor no gradient reads is freed during the forward pass.
# Unlisted types count as reading their inputs and outputs.
_READS_NOTHING = frozenset([
    "Add", "AddV2", "Sub", "AddN", "BiasAdd", "Neg", "Identity", "Reshape",
    "Transpose", "Squeeze", "ExpandDims", "Cast", "Pad", "ConcatV2", "Slice",
    "StridedSlice", "Pack", "Unpack", "Split", "SplitV", "Sum", "Mean",
    "Tile", "BroadcastTo"])
_READS_OUTPUTS = frozenset([
    "Relu", "Elu", "Selu", "Tanh", "Sigmoid", "Exp", "Softmax", "LogSoftmax",
    "Sqrt", "Rsqrt", "Reciprocal"])
_READS_INPUTS = frozenset([
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum",
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Mul", "Square", "Sin",
    "Cos", "Log", "Abs", "Relu6", "LeakyRelu", "Maximum", "Minimum",
    "GatherV2", "RealDiv", "Div", "DivNoNan", "Erf", "SquaredDifference"])


def _read_by_a_gradient(fwd, t):
  """Whether some gradient reads `t`: its op's (unless that reads only
  inputs, or nothing) or a consumer's between the xs and the ys."""
  if t.op.type not in _READS_NOTHING and t.op.type not in _READS_INPUTS:
    return True
  return any(c in fwd.members and c.type not in _READS_NOTHING
             and c.type not in _READS_OUTPUTS for c in t.consumers())


def _prefix(fwd):
  """Prefix sums over topological positions of data bytes, FLOPs and
  bytes some gradient reads (`saved`), computed once per analysis."""
  if fwd.prefix is None:
    fwd.prefix = _prefix_sums(fwd)
  return fwd.prefix


def _prefix_sums(fwd):
  data_bytes = [0] * (len(fwd.order) + 1)
  op_flops = [0] * (len(fwd.order) + 1)
  saved = [0] * (len(fwd.order) + 1)
  for i, op in enumerate(fwd.order):
    outs = [o for o in op.outputs if tf_compat.is_trainable(o)]
    data_bytes[i + 1] = data_bytes[i] + sum(fwd.bytes_of(o) for o in outs)
    saved[i + 1] = saved[i] + sum(fwd.bytes_of(o) for o in outs
                                  if _read_by_a_gradient(fwd, o))
    op_flops[i + 1] = op_flops[i] + fwd.flops_of(op)
  largest = [max((fwd.bytes_of(o) for o in op.outputs
                  if tf_compat.is_trainable(o)), default=0)
             for op in fwd.order]
  last_saved, last = [], -1
  for i in range(len(fwd.order)):
    if saved[i + 1] > saved[i]:
      last = i
    last_saved.append(last)
  return (data_bytes, op_flops, saved, _weight_gradients_from(fwd),
          last_saved, largest)


def _recomputed_flops(fwd, start, end):
  """FLOPs a segment of positions start+1..end costs when recomputed. A
  copy runs only if some gradient reads its output or a copy that runs
  does (the Session prunes the others): ops after the segment's last
  saved tensor are not run, e.g. the convolution before a kept residual
  sum. (Ops before it that no saved tensor needs are counted: an upper
  bound.)"""
  op_flops, last_saved = _prefix(fwd)[1], _prefix(fwd)[4]
  last = last_saved[end]
  return op_flops[last + 1] - op_flops[start + 1] if last > start else 0


def _weight_gradients_from(fwd):
  """grads[p]: bytes of the weight gradients complete (and, fetched, live
  to the end) once backprop has come down to position p: those of the
  param tensors whose first reader among the data ops is at p or later."""
  n = len(fwd.order)
  grads = [0] * (n + 2)
  for t, first in fwd.param_first_use:
    grads[min(first, n)] += fwd.bytes_of(t)
  for p in range(n, -1, -1):
    grads[p] += grads[p + 1]
  return grads[:n + 1]


def _backprop_peak(fwd, cuts, kept_before):
  """The largest live set of the backward pass, segment by segment from
  the top: a segment's turn holds the weight gradients complete so far,
  the kept tensors before it (later ones were freed once their segment's
  gradient was done), and the saved tensors of the segment from its
  start up to where backprop has come down to. A recomputed segment's
  turn comes in the middle of the backward pass and holds more in
  flight than the top's: the incoming gradient through its
  recomputation, the kept tensor the next segment's weight gradients
  still read, the unsaved output of the op being recomputed
  (`_RECOMPUTE_HELD` times its largest tensor). Segments ending at a
  pinned op are not recomputed."""
  _, _, saved, grads, _, largest_out = _prefix(fwd)
  n = len(fwd.order)
  worst, start = 0, -1
  for end in list(cuts) + [n - 1]:
    base, inside, largest = saved[start + 1], 0, 0
    for p in range(start + 1, end + 1):
      inside = max(inside, saved[p + 1] - base + grads[p])
      largest = max(largest, largest_out[p])
    recomputed = end != n - 1 and fwd.kind[fwd.order[end]] == "data"
    held = _RECOMPUTE_HELD * largest if recomputed else 0
    worst = max(worst, kept_before(end) + inside + held)
    start = end
  return worst


# Tensors of the largest size in flight at any time (see _fixed), and
# those a recomputed segment's turn holds beyond the top's (see
# _backprop_peak); calibrated against the BFC allocator (README).
_IN_FLIGHT = 3
_RECOMPUTE_HELD = 3


def _fixed(fwd):
  """The weights, and `_IN_FLIGHT` tensors of the largest size: the
  gradient being passed on, the one being computed, and a tensor whose
  last reader has not run yet (the executor frees a buffer after its
  last reader, which may run late)."""
  return fwd.param_bytes + _IN_FLIGHT * fwd.top_bytes


def estimate(fwd, kept):
  """Estimated peak (bytes) and recompute FLOPs of keeping `kept`: the
  forward order is cut at each kept tensor into segments, every one but
  the top recomputed once its gradient is there."""
  cuts = sorted({fwd.pos[t.op] for t in kept})
  by_pos = collections.Counter()
  for t in {id(t): t for t in kept}.values():
    by_pos[fwd.pos[t.op]] += fwd.bytes_of(t)
  before, total = {}, 0
  for c in cuts:
    before[c] = total  # kept bytes strictly before c
    total += by_pos[c]
  top = len(fwd.order) - 1
  # The top segment's turn holds every kept tensor.
  kept_before = lambda end: total if end == top else before[end]  # noqa: E731
  recompute, start = 0, -1
  for c in cuts:
    recompute += _recomputed_flops(fwd, start, c)
    start = c
  peak = _backprop_peak(fwd, [c for c in cuts if c != top], kept_before)
  return _fixed(fwd) + peak + fwd.loop_checkpointed, recompute


def plain_estimate(fwd):
  """Keeping everything: one segment, every saved tensor live from the
  forward pass while weight gradients appear."""
  return (_fixed(fwd) + _backprop_peak(fwd, [], lambda end: 0)
          + fwd.loop_plain)


def _chain(fwd, cands, limit):
  """`_chains` with the top segment held to `limit` too: the kept set, or
  None when no chain fits."""
  return _chains(fwd, cands, limit, [limit])[0]


def _chains(fwd, cands, limit, top_limits):
  """Dynamic program over the separators in topological order: the kept
  set with no recomputed segment over `limit` bytes and the fewest kept
  bytes, ties broken toward segments whose last ops need not run (a kept
  residual sum rather than the Relu after it: the convolution before the
  sum is not recomputed), one per top limit (the top segment, never recomputed, may
  be longer: a longer top is less recompute). The predecessors a
  separator may follow form a window that only moves forward, so the
  best of them is kept in a monotonic queue (linear time per limit; the
  earliest of equal ones wins)."""
  data_bytes = _prefix(fwd)[0]
  n = len(cands)
  pos = [fwd.pos[t.op] for t in cands]
  inf = (float("inf"), 0)
  best = [inf] * n
  prev = [-1] * n
  lo = 0
  window = collections.deque()  # indices, best[] increasing, front first
  costs = [(fwd.bytes_of(t), -fwd.unrun_flops_of(t)) for t in cands]
  seg_start = lambda i: 0 if i < 0 else pos[i] + 1  # noqa: E731
  for j in range(n):
    cost_j = costs[j]
    if data_bytes[pos[j]] - data_bytes[0] <= limit:
      best[j], prev[j] = cost_j, -1
    if j > 0 and best[j - 1][0] != float("inf"):
      b = best[j - 1]
      while window and best[window[-1]] > b:
        window.pop()
      window.append(j - 1)
    while lo < j and data_bytes[pos[j]] - data_bytes[seg_start(lo)] > limit:
      lo += 1
    while window and window[0] < lo:
      window.popleft()
    if window:
      i = window[0]
      c = (best[i][0] + cost_j[0], best[i][1] + cost_j[1])
      if c < best[j]:
        best[j], prev[j] = c, i
  total = data_bytes[-1]
  return [_chain_to(cands, best, prev, [
      j for j in range(n) if best[j][0] < float("inf")
      and total - data_bytes[pos[j] + 1] <= top], total <= top)
          for top in top_limits]


def _chain_to(cands, best, prev, ends, everything_fits):
  """The best chain ending at one of `ends` ([] when everything fits in
  the top segment, None when no end does)."""
  if everything_fits:
    return []
  if not ends:
    return None
  j = min(ends, key=lambda j: best[j])
  chosen = []
  while j >= 0:
    chosen.append(cands[j])
    j = prev[j]
  return list(reversed(chosen))


def _limits(fwd):
  data_bytes = _prefix(fwd)[0]
  total = max(1, data_bytes[-1])
  # No segment is smaller than one op's outputs: smaller limits are
  # infeasible, and not tried.
  largest = max((b - a for a, b in zip(data_bytes, data_bytes[1:])),
                default=1)
  return sorted({int(total / 1.4 ** k) for k in range(40)
                 if total / 1.4 ** k >= max(1, largest)}) or [total]


# Tops tried per segment size, as multiples of it (see _chains).
_TOP_FACTORS = (1, 1.4, 2, 2.8, 4)
# "memory": the least recompute within this fraction of the smallest
# estimated peak (a longer top segment is recomputed less).
_MEMORY_SLACK = 0.15


def _candidates(fwd, seps):
  # Each separator once, by position.
  return sorted({id(t): t for t in seps}.values(), key=lambda t: fwd.pos[t.op])


def _schedules(fwd, seps, forced):
  """(estimated peak, recompute FLOPs, kept separators) of the chains of
  every segment size tried, each with tops of 1x to 4x that size."""
  cands = _candidates(fwd, seps)
  seen, result = set(), []
  for limit in _limits(fwd):
    for chosen in _chains(fwd, cands, limit,
                          [limit * f for f in _TOP_FACTORS]):
      if chosen is None or tuple(map(id, chosen)) in seen:
        continue
      seen.add(tuple(map(id, chosen)))
      est, flops_ = estimate(fwd, chosen + forced)
      result.append((est, flops_, chosen))
  return result


def choose_memory(fwd, seps, forced):
  """The kept separators with the least recompute among the schedules
  whose estimated peak is within `_MEMORY_SLACK` of the smallest. Asked
  for, checkpointing happens: at least one separator is kept when there
  is one and nothing is kept anyway (pinned tensors, loops), even where
  the estimate says keeping everything is as small (weight gradients
  dominate, or a recomputed segment would hold as much in flight as it
  frees); a budget, not "memory", falls back to the plain pass."""
  schedules = _schedules(fwd, seps, forced)
  if not forced:
    schedules = [s for s in schedules if s[2]] or schedules
  if not schedules:
    return []
  smallest = min(est for est, _, _ in schedules)
  near = [s for s in schedules if s[0] <= smallest * (1 + _MEMORY_SLACK)]
  return min(near, key=lambda s: (s[1], s[0]))[2]


def choose_budget(fwd, seps, forced, budget):
  """The kept separators with the least recompute whose estimated peak
  fits `budget`; ValueError giving the smallest feasible estimate."""
  if plain_estimate(fwd) <= budget:
    return None  # everything fits: keep everything, recompute nothing
  schedules = _schedules(fwd, seps, forced)
  feasible = [s for s in schedules if s[0] <= budget]
  if not feasible:
    smallest = min((est for est, _, _ in schedules), default=None)
    raise ValueError(
        f"MemoryBudget({budget}) is below the smallest feasible schedule: "
        f"its estimated peak is {smallest if smallest is not None else 'unknown'}"
        f" bytes (everything kept: {plain_estimate(fwd)} bytes)")
  return min(feasible, key=lambda s: (s[1], s[0]))[2]


def choose_speed(fwd):
  """Outputs of expensive op types (matmuls, convolutions, einsum), and
  data tensors read by several ops (residual streams), without which
  segments would overlap and recompute chains of cheap ops many times."""
  return [o for op in fwd.order if fwd.kind[op] == "data"
          for o in op.outputs if tf_compat.is_trainable(o) and (
              op.type in EXPENSIVE_TYPES
              or sum(c in fwd.pos for c in o.consumers()) > 1)]


def choose_listed(fwd, listed):
  """Exactly the listed tensors; ValueError naming one not between the
  xs and the ys (or an x, or a tensor computed from parameters alone)."""
  result = []
  for i, t in enumerate(listed):
    op = getattr(t, "op", None)
    if op is None or op not in fwd.members or fwd.kind.get(op) not in (
        "data", "pinned"):
      name = getattr(t, "name", repr(t))
      raise ValueError(
          f"checkpoints[{i}] ({name}) is not a tensor between the xs and "
          "the ys that could be recomputed: checkpoints must be computed "
          "from an x and lead to a y")
    result.append(t)
  return result


def check_choice(checkpoints):
  """ValueError naming the choices for an unknown `checkpoints` value."""
  if checkpoints in ("memory", "speed") or isinstance(checkpoints,
                                                      MemoryBudget):
    return
  if isinstance(checkpoints, (list, tuple)):
    return
  raise ValueError(f"Unknown value for checkpoints: {checkpoints!r}; "
                   f"expected one of {', '.join(CHOICES)}")


def choose(fwd, checkpoints, inputs):
  """The kept data tensors for `checkpoints` (pinned ones included)."""
  forced = pinned_tensors(fwd, inputs)
  if isinstance(checkpoints, (list, tuple)):
    chosen = choose_listed(fwd, checkpoints)
  elif checkpoints == "speed":
    chosen = choose_speed(fwd)
  elif checkpoints == "memory":
    chosen = choose_memory(fwd, separators(fwd, inputs), forced)
  else:
    chosen = choose_budget(fwd, separators(fwd, inputs), forced,
                           checkpoints.bytes)
    if chosen is None:
      return Plan(None, plain_estimate(fwd), plain_estimate(fwd), 0)
  kept = {id(t): t for t in chosen + forced}
  kept = sorted(kept.values(), key=lambda t: fwd.pos[t.op])
  est, recompute = estimate(fwd, kept)
  return Plan(kept, est, plain_estimate(fwd), recompute)
