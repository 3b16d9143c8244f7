"""Random TF programs for the differential fuzzer (`tools/fuzz.py`), as data.

A `Program` is a list of `Node`s (inputs and ops, each op naming earlier
nodes by index) plus what to differentiate: ys, xs, grad_ys,
stop_gradients, aggregation method, unconnected mode and order. Keeping it
as data is what makes shrinking (drop a node, swap it for a constant) and
printing a repro simple. `to_source` turns a program into Python source that
defines `INPUTS`, `build(inputs)` and `OPTIONS`; the fuzzer runs exactly
that source, and repro scripts contain it verbatim.

The generator tracks each node's concrete shape, dtype and a rough bound on
its magnitude (`mag`) and positive lower bound (`low`), so that it only
builds programs whose values stay finite and whose domains hold (log,
sqrt, divisors, pow bases see positive operands).
"""

import copy
import dataclasses
import math
from typing import Optional

import numpy as np

FAMILIES = ("elementwise", "broadcast", "reduce", "linalg", "gather",
            "variables", "unknown_shapes", "complex", "stop")
AGGREGATIONS = ("None", "ADD_N", "DEFAULT", "EXPERIMENTAL_TREE",
                "EXPERIMENTAL_ACCUMULATE_N", "INVALID")
INVALID_AGGREGATION = 7   # no tf.AggregationMethod has this value
_MAX_MAG = 1e3            # refuse ops whose result could exceed this
_REAL = ("float32", "float64")
_COMPLEX = ("complex64", "complex128")
_REAL_OF = {"complex64": "float32", "complex128": "float64"}
_COMPLEX_OF = {"float32": "complex64", "float64": "complex128"}


@dataclasses.dataclass
class Node:
  """One value of a program: an input ("const", "variable", "placeholder")
  or an op (`op` names an `OpKind`, `args` index earlier nodes)."""
  op: str
  dtype: str
  shape: tuple
  args: tuple = ()
  attrs: dict = dataclasses.field(default_factory=dict)
  value: Optional[np.ndarray] = None    # inputs only
  static: Optional[list] = None         # placeholders: shape with None dims
  mag: float = 1.0
  low: float = 0.0                      # > 0: value >= low everywhere

  @property
  def is_input(self):
    return self.op in ("const", "variable", "placeholder")


@dataclasses.dataclass
class Program:
  nodes: list
  ys: list
  xs: list
  grad_ys: Optional[list] = None        # numpy arrays, one per y
  stop: list = dataclasses.field(default_factory=list)
  aggregation: str = "None"
  unconnected: str = "NONE"
  order: int = 1

  def op_kinds(self):
    return [n.op for n in self.nodes if not n.is_input]

  def copy(self):
    return copy.deepcopy(self)


# ----- Values -----


def sample(rng, dtype, shape, low=0.0):
  """Small values with two decimals (repro scripts stay readable): in
  [0.5, 2] when a positive operand is needed, else in [-2, 2] away from 0."""
  def real(size):
    if low > 0:
      return np.round(rng.uniform(0.5, 2.0, size), 2)
    v = rng.uniform(0.2, 2.0, size) * rng.choice([-1.0, 1.0], size)
    return np.round(v, 2)
  size = tuple(shape)
  value = real(size)
  if dtype in _COMPLEX:
    value = value + 1j * real(size)
  return np.asarray(value, dtype=dtype)


# ----- Op kinds -----


@dataclasses.dataclass
class OpKind:
  """`template` is Python source with {0}, {1}... for the operands and
  {name} for attributes (inserted with repr); `gen(ctx, kind)` returns a
  Node using this kind, or None when the current program offers no
  suitable operand."""
  name: str
  family: str
  template: str
  gen: object
  dtypes: tuple = _REAL


class _Ctx:
  """Generation state of one program: its rng, nodes and the input kinds
  and dtypes the case's families allow."""

  def __init__(self, rng, families, dtypes):
    self.rng = rng
    self.families = families
    self.dtypes = dtypes
    self.nodes = []

  def add(self, node):
    self.nodes.append(node)
    return len(self.nodes) - 1

  def pick(self, pred):
    """Index of a random existing node satisfying pred, or None."""
    found = [i for i, n in enumerate(self.nodes) if pred(n)]
    return int(self.rng.choice(found)) if found else None

  def new_input(self, dtype, shape, positive=False):
    """A fresh input node: a constant, or a variable or placeholder when the
    case's families allow them."""
    kinds = ["const"]
    if "variables" in self.families:
      kinds += ["variable", "variable"]
    if "unknown_shapes" in self.families:
      kinds += ["placeholder", "placeholder"]
    kind = str(self.rng.choice(kinds))
    value = sample(self.rng, dtype, shape, low=1.0 if positive else 0.0)
    node = Node(kind, dtype, tuple(shape), value=value,
                mag=float(np.max(np.abs(value), initial=0.0)),
                low=0.5 if positive else 0.0)
    if kind == "placeholder":
      node.static = self._unknown_dims(shape)
    return self.add(node)

  def _unknown_dims(self, shape):
    """Static shape of a placeholder: some dims (or the rank) unknown."""
    if self.rng.random() < 0.15:
      return None
    return [None if self.rng.random() < 0.5 else d for d in shape]

  def operand(self, dtypes, pred=lambda n: True, shape=None, positive=False):
    """An existing node of one of `dtypes` satisfying pred (60%), else a
    new input of a random small shape (or `shape`)."""
    def ok(n):
      return (n.dtype in dtypes and pred(n) and (not positive or n.low > 0)
              and (shape is None or n.shape == tuple(shape)))
    i = self.pick(ok) if self.rng.random() < 0.6 else None
    if i is not None:
      return i
    dtype = str(self.rng.choice([d for d in self.dtypes if d in dtypes]
                                or list(dtypes)))
    if shape is None:
      shape = tuple(int(d) for d in self.rng.integers(
          1, 4, size=self.rng.integers(0, 3)))
    return self.new_input(dtype, shape, positive)


def _finite(node):
  return node if node is not None and node.mag <= _MAX_MAG else None


def _unary(bound, positive=False, max_in=None):
  """gen for a shape-preserving unary op; bound(mag, low, dtype) gives the
  result's (mag, low)."""
  def gen(ctx, kind):
    i = ctx.operand(kind.dtypes, lambda n: max_in is None or n.mag <= max_in,
                    positive=positive)
    a = ctx.nodes[i]
    if positive and a.low <= 0 or max_in is not None and a.mag > max_in:
      return None
    mag, low = bound(a.mag, a.low, a.dtype)
    return _finite(Node(kind.name, a.dtype, a.shape, (i,), mag=mag, low=low))
  return gen


def _binary(bound, positive_y=False, broadcast=False):
  """gen for an elementwise binary op: same shapes, or (broadcast) a second
  operand of another rank or with dims of 1."""
  def gen(ctx, kind):
    i = ctx.operand(kind.dtypes)
    a = ctx.nodes[i]
    shape = _broadcast_partner(ctx.rng, a.shape) if broadcast else a.shape
    j = ctx.operand((a.dtype,), shape=shape, positive=positive_y)
    b = ctx.nodes[j]
    if positive_y and b.low <= 0:
      return None
    if ctx.rng.random() < 0.5 and not positive_y:
      i, j, a, b = j, i, b, a
    out = tuple(np.broadcast_shapes(a.shape, b.shape))
    mag, low = bound(a, b)
    return _finite(Node(kind.name, a.dtype, out, (i, j), mag=mag, low=low))
  return gen


def _broadcast_partner(rng, shape):
  """A shape that broadcasts against `shape` without equalling it: a
  suffix of it, or it with some dims set to 1, or one more leading dim."""
  choice = rng.integers(3)
  if choice == 0 and shape:
    return tuple(shape[rng.integers(1, len(shape) + 1):])
  if choice == 1 and shape:
    return tuple(1 if rng.random() < 0.5 else d for d in shape)
  return (int(rng.integers(2, 4)),) + tuple(shape)


def _reduce(kind_of_bound):
  """gen for reduce_sum/mean/max/prod with a random axis and keepdims."""
  def gen(ctx, kind):
    i = ctx.operand(kind.dtypes)
    a = ctx.nodes[i]
    rank = len(a.shape)
    axis = None
    if rank and ctx.rng.random() < 0.7:
      axes = sorted(set(int(d) for d in ctx.rng.integers(
          -rank, rank, size=ctx.rng.integers(1, rank + 1))) )
      axes = sorted(set(d % rank for d in axes))
      axis = axes[0] if len(axes) == 1 and ctx.rng.random() < 0.5 else axes
    keepdims = bool(ctx.rng.random() < 0.3)
    reduced = set(range(rank)) if axis is None else set(
        [axis] if isinstance(axis, int) else axis)
    shape = tuple((1 if d in reduced else s) for d, s in enumerate(a.shape)
                  if keepdims or d not in reduced)
    count = int(np.prod([a.shape[d] for d in reduced])) if reduced else 1
    mag, low = kind_of_bound(a, count)
    return _finite(Node(kind.name, a.dtype, shape, (i,),
                        {"axis": axis, "keepdims": keepdims}, mag=mag,
                        low=low))
  return gen


def _rank_pred(rank):
  return lambda n: len(n.shape) == rank


def _matmul(ctx, kind):
  """MatMul of rank-2 operands, or BatchMatMulV2 of rank 3 (the second
  operand sometimes of rank 2, broadcast over the batch)."""
  rank = 2 if kind.name == "matmul" else 3
  i = ctx.operand(kind.dtypes, _rank_pred(rank),
                  shape=None if ctx.rng.random() < 0.5 else
                  tuple(int(d) for d in ctx.rng.integers(1, 4, size=rank)))
  a = ctx.nodes[i]
  if len(a.shape) != rank:
    return None
  ta, tb = bool(ctx.rng.random() < 0.3), bool(ctx.rng.random() < 0.3)
  m, k = (a.shape[-1], a.shape[-2]) if ta else (a.shape[-2], a.shape[-1])
  n = int(ctx.rng.integers(1, 4))
  b_shape = (n, k) if tb else (k, n)
  if rank == 3 and ctx.rng.random() < 0.7:
    b_shape = (a.shape[0],) + b_shape
  j = ctx.operand((a.dtype,), shape=b_shape)
  b = ctx.nodes[j]
  out = a.shape[:-2] + (m, n)
  return _finite(Node(kind.name, a.dtype, out, (i, j),
                      {"transpose_a": ta, "transpose_b": tb},
                      mag=a.mag * b.mag * k))


def _conv2d(ctx, kind):
  """Conv2D of an NHWC input with a fresh filter; strides 1 or 2."""
  shape = (int(ctx.rng.integers(1, 3)), int(ctx.rng.integers(2, 5)),
           int(ctx.rng.integers(2, 5)), int(ctx.rng.integers(1, 3)))
  i = ctx.operand(kind.dtypes, _rank_pred(4), shape=shape)
  a = ctx.nodes[i]
  n, h, w, c = a.shape
  fh, fw = int(ctx.rng.integers(1, min(h, 3) + 1)), int(
      ctx.rng.integers(1, min(w, 3) + 1))
  j = ctx.operand((a.dtype,), shape=(fh, fw, c, int(ctx.rng.integers(1, 3))))
  f = ctx.nodes[j]
  stride = int(ctx.rng.choice([1, 2]))
  padding = str(ctx.rng.choice(["SAME", "VALID"]))
  if padding == "SAME":
    oh, ow = -(-h // stride), -(-w // stride)
  else:
    oh, ow = (h - fh) // stride + 1, (w - fw) // stride + 1
  return _finite(Node(kind.name, a.dtype, (n, oh, ow, f.shape[3]), (i, j),
                      {"strides": stride, "padding": padding},
                      mag=a.mag * f.mag * fh * fw * c))


def _gather(ctx, kind):
  """tf.gather along a random axis, or embedding_lookup (axis 0, rank-2
  params); indices repeat sometimes, so slices need summing."""
  embedding = kind.name == "embedding_lookup"
  pred = _rank_pred(2) if embedding else (lambda n: len(n.shape) >= 1)
  i = ctx.operand(kind.dtypes, pred, shape=(int(ctx.rng.integers(2, 5)),
                                            int(ctx.rng.integers(1, 4))))
  a = ctx.nodes[i]
  if not pred(a):
    return None
  axis = 0 if embedding or ctx.rng.random() < 0.6 else int(
      ctx.rng.integers(len(a.shape)))
  count = int(ctx.rng.integers(1, 5))
  indices = [int(k) for k in ctx.rng.integers(0, a.shape[axis], size=count)]
  attrs = {"indices": indices} if embedding else {"indices": indices,
                                                   "axis": axis}
  out = a.shape[:axis] + (count,) + a.shape[axis + 1:]
  return Node(kind.name, a.dtype, out, (i,), attrs, mag=a.mag, low=a.low)


def _to_complex(ctx, kind):
  """tf.complex of two real operands of one shape."""
  i = ctx.operand(_REAL)
  a = ctx.nodes[i]
  j = ctx.operand((a.dtype,), shape=a.shape)
  return Node(kind.name, _COMPLEX_OF[a.dtype], a.shape, (i, j),
              mag=a.mag + ctx.nodes[j].mag)


def _to_real(ctx, kind):
  """real/imag/abs of a complex operand."""
  i = ctx.operand(_COMPLEX)
  a = ctx.nodes[i]
  if a.dtype not in _COMPLEX:
    return None
  return Node(kind.name, _REAL_OF[a.dtype], a.shape, (i,), mag=a.mag)


def _same(m, low, dtype):
  del dtype
  return m, low


def _sin_bound(m, low, dtype):
  del low
  return (1.0 if dtype in _REAL else math.cosh(m) + 1), 0.0


def _exp_bound(m, low, dtype):
  del low
  return math.exp(m), (math.exp(-m) if dtype in _REAL else 0.0)


def _sigmoid_bound(m, low, dtype):
  del low, dtype
  return 1.0, 1.0 / (1.0 + math.exp(m))


def _log_bound(m, low, dtype):
  del dtype
  return max(abs(math.log(low)), abs(math.log(m)), 1.0), 0.0


def _sqrt_bound(m, low, dtype):
  del dtype
  return math.sqrt(m), math.sqrt(low)


def _rsqrt_bound(m, low, dtype):
  del dtype
  return 1 / math.sqrt(low), 1 / math.sqrt(m)


def _reciprocal_bound(m, low, dtype):
  del dtype
  return 1 / low, 1 / m


def _softplus_bound(m, low, dtype):
  del low, dtype
  return m + 1.0, math.log1p(math.exp(-m))


def _add_bound(a, b):
  return a.mag + b.mag, (a.low + b.low if a.low > 0 and b.low > 0 else 0.0)


def _mul_bound(a, b):
  return a.mag * b.mag, a.low * b.low


def _div_bound(a, b):
  return a.mag / b.low, (a.low / b.mag if a.low > 0 else 0.0)


def _max_bound(a, b):
  return max(a.mag, b.mag), max(a.low, b.low)


def _pow_bound(a, b):
  """pow(b, a): the positive operand b is the base."""
  base = max(b.mag, 1.0 / b.low)
  return base ** a.mag, 0.0


def _sq_diff_bound(a, b):
  return (a.mag + b.mag) ** 2, 0.0


def _xlogy_bound(a, b):
  return a.mag * max(abs(math.log(b.low)), abs(math.log(b.mag)), 1.0), 0.0


def _atan2_bound(a, b):
  del a, b
  return math.pi, 0.0


def _sum_bound(a, count):
  return a.mag * count, a.low * count


def _mean_bound(a, count):
  del count
  return a.mag, a.low


def _prod_bound(a, count):
  return a.mag ** count, (a.low ** count if a.low > 0 else 0.0)


_RC = _REAL + _COMPLEX
_EW, _BC = "elementwise", "broadcast"
OP_KINDS = {k.name: k for k in [
    OpKind("sin", _EW, "tf.math.sin({0})", _unary(_sin_bound), _RC),
    OpKind("cos", _EW, "tf.math.cos({0})", _unary(_sin_bound), _RC),
    OpKind("tanh", _EW, "tf.math.tanh({0})", _unary(_sigmoid_bound)),
    OpKind("sigmoid", _EW, "tf.math.sigmoid({0})", _unary(_sigmoid_bound)),
    OpKind("exp", _EW, "tf.math.exp({0})", _unary(_exp_bound, max_in=3.0),
           _RC),
    OpKind("square", _EW, "tf.math.square({0})",
           _unary(lambda m, low, d: (m * m, low * low)), _RC),
    OpKind("neg", _EW, "tf.math.negative({0})",
           _unary(lambda m, low, d: (m, 0.0)), _RC),
    OpKind("identity", _EW, "tf.identity({0})", _unary(_same), _RC),
    OpKind("log", _EW, "tf.math.log({0})", _unary(_log_bound, True)),
    OpKind("sqrt", _EW, "tf.math.sqrt({0})", _unary(_sqrt_bound, True)),
    OpKind("rsqrt", _EW, "tf.math.rsqrt({0})", _unary(_rsqrt_bound, True)),
    OpKind("reciprocal", _EW, "tf.math.reciprocal({0})",
           _unary(_reciprocal_bound, True)),
    OpKind("softplus", _EW, "tf.math.softplus({0})",
           _unary(_softplus_bound)),
    OpKind("abs", _EW, "tf.math.abs({0})", _unary(_same)),
    OpKind("add", _EW, "tf.math.add({0}, {1})", _binary(_add_bound), _RC),
    OpKind("sub", _EW, "tf.math.subtract({0}, {1})",
           _binary(lambda a, b: (a.mag + b.mag, 0.0)), _RC),
    OpKind("mul", _EW, "tf.math.multiply({0}, {1})", _binary(_mul_bound),
           _RC),
    OpKind("div", _EW, "tf.math.divide({0}, {1})",
           _binary(_div_bound, positive_y=True)),
    OpKind("maximum", _EW, "tf.math.maximum({0}, {1})",
           _binary(_max_bound)),
    OpKind("minimum", _EW, "tf.math.minimum({0}, {1})",
           _binary(lambda a, b: (max(a.mag, b.mag), min(a.low, b.low)))),
    OpKind("pow", _EW, "tf.math.pow({1}, {0})",
           _binary(_pow_bound, positive_y=True)),
    OpKind("squared_difference", _EW, "tf.math.squared_difference({0}, {1})",
           _binary(_sq_diff_bound)),
    OpKind("xlogy", _EW, "tf.math.xlogy({0}, {1})",
           _binary(_xlogy_bound, positive_y=True), _RC),
    OpKind("xdivy", _EW, "tf.math.xdivy({0}, {1})",
           _binary(_div_bound, positive_y=True), _RC),
    OpKind("atan2", _EW, "tf.math.atan2({0}, {1})", _binary(_atan2_bound)),
    OpKind("add_bc", _BC, "tf.math.add({0}, {1})",
           _binary(_add_bound, broadcast=True), _RC),
    OpKind("mul_bc", _BC, "tf.math.multiply({0}, {1})",
           _binary(_mul_bound, broadcast=True), _RC),
    OpKind("sub_bc", _BC, "tf.math.subtract({0}, {1})",
           _binary(lambda a, b: (a.mag + b.mag, 0.0), broadcast=True)),
    OpKind("div_bc", _BC, "tf.math.divide({0}, {1})",
           _binary(_div_bound, positive_y=True, broadcast=True)),
    OpKind("maximum_bc", _BC, "tf.math.maximum({0}, {1})",
           _binary(_max_bound, broadcast=True)),
    OpKind("squared_difference_bc", _BC,
           "tf.math.squared_difference({0}, {1})",
           _binary(_sq_diff_bound, broadcast=True)),
    OpKind("reduce_sum", "reduce",
           "tf.reduce_sum({0}, axis={axis}, keepdims={keepdims})",
           _reduce(_sum_bound), _RC),
    OpKind("reduce_mean", "reduce",
           "tf.reduce_mean({0}, axis={axis}, keepdims={keepdims})",
           _reduce(_mean_bound), _RC),
    OpKind("reduce_max", "reduce",
           "tf.reduce_max({0}, axis={axis}, keepdims={keepdims})",
           _reduce(_mean_bound)),
    OpKind("reduce_prod", "reduce",
           "tf.reduce_prod({0}, axis={axis}, keepdims={keepdims})",
           _reduce(_prod_bound)),
    OpKind("matmul", "linalg", "tf.linalg.matmul({0}, {1}, transpose_a="
           "{transpose_a}, transpose_b={transpose_b})", _matmul, _RC),
    OpKind("batch_matmul", "linalg", "tf.linalg.matmul({0}, {1}, "
           "transpose_a={transpose_a}, transpose_b={transpose_b})", _matmul),
    OpKind("conv2d", "linalg", "tf.nn.conv2d({0}, {1}, strides={strides}, "
           "padding={padding})", _conv2d),
    OpKind("gather", "gather", "tf.gather({0}, {indices}, axis={axis})",
           _gather, _RC),
    OpKind("embedding_lookup", "gather",
           "tf.nn.embedding_lookup({0}, {indices})", _gather),
    OpKind("stop_gradient", "stop", "tf.stop_gradient({0})", _unary(_same),
           _RC),
    OpKind("complex", "complex", "tf.complex({0}, {1})", _to_complex),
    OpKind("real", "complex", "tf.math.real({0})", _to_real, _COMPLEX),
    OpKind("imag", "complex", "tf.math.imag({0})", _to_real, _COMPLEX),
    OpKind("complex_abs", "complex", "tf.math.abs({0})", _to_real, _COMPLEX),
    OpKind("conj", "complex", "tf.math.conj({0})", _unary(_same, False),
           _COMPLEX),
    # Never drawn: what an explained mismatch is checked against (the same
    # values as xlogy/xdivy for x != 0, through Mul/Log/RealDiv's rules).
    OpKind("xlogy_as_mul_log", "counterfactual",
           "tf.math.multiply({0}, tf.math.log({1}))", None, _RC),
    OpKind("xdivy_as_div", "counterfactual", "tf.math.divide({0}, {1})",
           None, _RC),
]}


def add_user_ops(specs):
  """Adds op kinds from a rules module's FUZZ_OPS (see tools/fuzz.py):
  shape-preserving elementwise ops in the family "rules_module"."""
  for spec in specs:
    arity = spec.get("arity", 1)
    dtypes = tuple(spec.get("dtypes", _REAL))
    positive = spec.get("positive", False)
    gen = (_unary(lambda m, low, d: (m * m + 1.0, 0.0), positive)
           if arity == 1 else
           _binary(lambda a, b: ((a.mag + 1) * (b.mag + 1), 0.0), positive))
    OP_KINDS[spec["name"]] = OpKind(spec["name"], "rules_module",
                                    spec["template"], gen, dtypes)


# ----- Whole programs -----


def _case_families(rng, families):
  """The families one case draws from: several of the enabled ones."""
  families = list(families)
  count = int(rng.integers(1, min(len(families), 4) + 1))
  chosen = set(str(f) for f in rng.choice(families, size=count,
                                          replace=False))
  op_families = {k.family for k in OP_KINDS.values()}
  if not chosen & op_families:
    chosen.add(str(rng.choice(sorted(op_families & set(families))
                              or ["elementwise"])))
  return chosen


def generate(seed, families=FAMILIES, orders=(1, 2), max_ops=5):
  """A random program from `seed` (the same seed gives the same program)."""
  rng = np.random.default_rng(seed)
  chosen = _case_families(rng, families)
  dtypes = list(_REAL)
  if "complex" in chosen:
    dtypes = list(_COMPLEX) + ["float32"]
  ctx = _Ctx(rng, chosen, [str(rng.choice(dtypes))])
  kinds = [k for k in OP_KINDS.values() if k.family in chosen]
  if not kinds:
    kinds = [k for k in OP_KINDS.values() if k.family == "elementwise"]
  for _ in range(int(rng.integers(1, max_ops + 1))):
    for _attempt in range(10):
      kind = kinds[int(rng.integers(len(kinds)))]
      node = kind.gen(ctx, kind)
      if node is not None:
        ctx.add(node)
        break
  return _finish(ctx, rng, chosen, orders)


def _finish(ctx, rng, chosen, orders):
  """Picks ys, xs, grad_ys, stop_gradients and call options."""
  nodes = ctx.nodes
  differentiable = [i for i, n in enumerate(nodes) if not n.is_input]
  if not differentiable:
    differentiable = [len(nodes) - 1]
  used = {a for n in nodes for a in n.args}
  sinks = [i for i in differentiable if i not in used] or differentiable
  ys = sorted(set(int(i) for i in rng.choice(
      sinks, size=min(len(sinks), int(rng.integers(1, 3))), replace=False)))
  candidates = [i for i, n in enumerate(nodes) if n.is_input]
  if rng.random() < 0.3:
    candidates += differentiable
  xs = [int(i) for i in rng.choice(
      candidates, size=min(len(candidates), int(rng.integers(1, 4))),
      replace=False)]
  if rng.random() < 0.25:   # an x no y depends on
    xs.append(ctx.new_input(str(rng.choice(ctx.dtypes)), (2,)))
  program = Program(nodes, ys, xs)
  if rng.random() < 0.3 or any(nodes[y].dtype in _COMPLEX for y in ys):
    program.grad_ys = [sample(rng, nodes[y].dtype, nodes[y].shape)
                       for y in ys]
  if "stop" in chosen and rng.random() < 0.6:
    inner = [i for i in differentiable if i not in ys]
    if inner:
      program.stop = [int(rng.choice(inner))]
  weights = np.array([4, 2, 2, 2, 2, 0.3])
  program.aggregation = str(rng.choice(AGGREGATIONS, p=weights /
                                       weights.sum()))
  program.unconnected = str(rng.choice(["NONE", "ZERO"]))
  program.order = int(rng.choice(list(orders)))
  return program


# ----- Source -----


def _literal(value):
  """numpy source for an input value (values have two decimals: rounding
  in float64 prints them short and converts back to the same value)."""
  wide = value.astype(np.complex128 if value.dtype.kind == "c" else
                      np.float64)
  return f"np.array({np.round(wide, 4).tolist()!r}, np.{value.dtype.name})"


def op_source(node):
  """Python source of one op node (its template filled in)."""
  kind = OP_KINDS[node.op]
  attrs = {k: repr(v) for k, v in node.attrs.items()}
  return kind.template.format(*(f"v{a}" for a in node.args), **attrs)


def _aggregation_source(name):
  if name == "None":
    return "None"
  if name == "INVALID":
    return str(INVALID_AGGREGATION)
  return f"tf.AggregationMethod.{name}"


def to_source(program):
  """Python source defining INPUTS, build(inputs) and OPTIONS."""
  lines = ["# Inputs fed by the runner: name -> (kind, value, static shape).",
           "INPUTS = {"]
  for i, n in enumerate(program.nodes):
    if n.op in ("variable", "placeholder"):
      lines.append(f"    'v{i}': ({n.op!r}, {_literal(n.value)}, "
                   f"{n.static!r}),")
  lines += ["}", "", "", "def build(inputs):"]
  for i, n in enumerate(program.nodes):
    if n.op == "const":
      lines.append(f"  v{i} = tf.constant({_literal(n.value)})")
    elif n.is_input:
      lines.append(f"  v{i} = inputs['v{i}']")
    else:
      lines.append(f"  v{i} = {op_source(n)}")
  grad_ys = ("None" if program.grad_ys is None else "[" + ", ".join(
      f"tf.constant({_literal(v)})" for v in program.grad_ys) + "]")
  names = lambda idx: "[" + ", ".join(f"v{i}" for i in idx) + "]"
  lines += [f"  return dict(ys={names(program.ys)}, xs={names(program.xs)},",
            f"              grad_ys={grad_ys},",
            f"              stop_gradients={names(program.stop)})",
            "", "",
            "OPTIONS = dict(",
            f"    aggregation_method="
            f"{_aggregation_source(program.aggregation)},",
            f"    unconnected_gradients=tf.UnconnectedGradients."
            f"{program.unconnected},",
            f"    order={program.order})"]
  return "\n".join(lines) + "\n"
