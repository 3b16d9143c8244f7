"""Forward-mode (jvp) rules for the common families: `rule(op, *tangents)`
returns one tangent per output (None where none), from the tangents of
op.inputs (None for inputs no x reaches). `tfgrad.jvp` uses them when every
op between the xs and the ys has one, the double-reverse construction
otherwise."""

import numpy as np
import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.forward import Basis
from tfgrad.forward import RegisterBasisForward
from tfgrad.forward import RegisterBatchedForward
from tfgrad.forward import RegisterForward


# ----- helpers -----

def _fit(t, out):
  """t broadcast to out's shape (an operand smaller than the output); a
  batched tangent (rank above out's, aligned by `_align`) to [b] + out's
  shape."""
  rank, out_rank = t.shape.rank, out.shape.rank
  if rank is not None and out_rank is not None and rank > out_rank:
    if t.shape[1:].is_fully_defined() and t.shape[1:] == out.shape:
      return t
    return tf.broadcast_to(t, tf.concat([tf.shape(t)[:1], tf.shape(out)], 0))
  if t.shape.is_fully_defined() and t.shape == out.shape:
    return t
  return tf.broadcast_to(t, tf.shape(out))


def _add(a, b):
  if a is None:
    return b
  if b is None:
    return a
  return a + b


def _sum_fit(out, *terms):
  """The sum of the non-None terms, broadcast to out's shape."""
  total = None
  for t in terms:
    total = _add(total, t)
  return None if total is None else _fit(total, out)


def def_unary(op_type, derivative):
  """t_y = t_x * derivative(x, y) for an elementwise y = f(x)."""
  @RegisterForward(op_type)
  def _rule(op, t):
    return [t * derivative(op.inputs[0], op.outputs[0])]
  RegisterBatchedForward(op_type)(_rule)   # the product broadcasts
  return _rule


def def_linear(op_type):
  """Ops linear in their first input, the rest attributes or indices:
  the tangent goes through the op itself."""
  @RegisterForward(op_type)
  def _rule(op, t, *rest):
    del rest  # shapes, axes, indices: integers, no tangents
    return [None if t is None else _replay(op, [t] + list(op.inputs[1:]))]
  return _rule


def _replay(op, inputs):
  """op applied to other inputs: same type, same attributes."""
  attrs = {k: v for k, v in op.node_def.attr.items()
           if not k.startswith("_")}
  new = tf.compat.v1.get_default_graph().create_op(
      op.type, inputs, [t.dtype for t in op.outputs], attrs=attrs)
  return new.outputs[0]


# ----- elementwise -----

def def_fused(op_type, derivative, fused):
  """As def_unary, with TF's fused gradient kernel `fused(x, y, t)` (one op)
  for real dtypes (the kernels conjugate for complex ones)."""
  @RegisterForward(op_type)
  def _rule(op, t):
    x, y = op.inputs[0], op.outputs[0]
    if x.dtype.is_complex:
      return [t * derivative(x, y)]
    return [fused(x, y, t)]

  @RegisterBatchedForward(op_type)
  def _batched(op, t):
    return [t * derivative(op.inputs[0], op.outputs[0])]
  return _rule


def_fused("Tanh", lambda x, y: 1.0 - y * y,
          lambda x, y, t: raw.TanhGrad(y=y, dy=t))
def_fused("Sigmoid", lambda x, y: y * (1.0 - y),
          lambda x, y, t: raw.SigmoidGrad(y=y, dy=t))
def_fused("Sqrt", lambda x, y: 0.5 / y,
          lambda x, y, t: raw.SqrtGrad(y=y, dy=t))
def_fused("Rsqrt", lambda x, y: -0.5 * y / x,
          lambda x, y, t: raw.RsqrtGrad(y=y, dy=t))
def_fused("Reciprocal", lambda x, y: -y * y,
          lambda x, y, t: raw.ReciprocalGrad(y=y, dy=t))
def_unary("Exp", lambda x, y: y)
def_unary("Log", lambda x, y: tf.math.reciprocal(x))
def_unary("Sin", lambda x, y: tf.cos(x))
def_unary("Cos", lambda x, y: -tf.sin(x))
def_unary("Square", lambda x, y: 2.0 * x)


@RegisterForward("Relu")
def _relu(op, t):
  """t where x > 0."""
  return [raw.ReluGrad(gradients=t, features=op.inputs[0])]


@RegisterForward("Softplus")
def _softplus(op, t):
  """t * sigmoid(x)."""
  return [raw.SoftplusGrad(gradients=t, features=op.inputs[0])]


@RegisterForward("Neg")
def _neg(op, t):
  del op
  return [-t]


@RegisterForward("Identity")
def _identity(op, t):
  del op
  return [t]


@RegisterForward("ReadVariableOp")
def _read(op, t):
  del op
  return [t]


@RegisterForward("Cast")
def _cast(op, t):
  """Linear: the tangent cast alike (an integer input is a constant)."""
  dtype = op.inputs[0].dtype
  if not (dtype.is_floating or dtype.is_complex):
    return [None]
  return [tf.cast(t, op.outputs[0].dtype)]


@RegisterForward("AddV2")
def _add_v2(op, ta, tb):
  return [_sum_fit(op.outputs[0], ta, tb)]


RegisterForward("Add")(_add_v2)


@RegisterForward("Sub")
def _sub(op, ta, tb):
  return [_sum_fit(op.outputs[0], ta, None if tb is None else -tb)]


@RegisterForward("Mul")
def _mul(op, ta, tb):
  a, b = op.inputs
  return [_sum_fit(op.outputs[0], None if ta is None else ta * b,
                   None if tb is None else a * tb)]


@RegisterForward("RealDiv")
def _div(op, ta, tb):
  a, b = op.inputs
  y = op.outputs[0]
  return [_sum_fit(y, None if ta is None else ta / b,
                   None if tb is None else -tb * y / b)]


@RegisterForward("AddN")
def _add_n(op, *ts):
  return [_sum_fit(op.outputs[0], *ts)]


# ----- matmul, conv, bias -----

@RegisterForward("MatMul")
def _matmul(op, ta, tb):
  a, b = op.inputs
  kw = dict(transpose_a=op.get_attr("transpose_a"),
            transpose_b=op.get_attr("transpose_b"))
  return [_add(None if ta is None else tf.linalg.matmul(ta, b, **kw),
               None if tb is None else tf.linalg.matmul(a, tb, **kw))]


@RegisterForward("BatchMatMulV2")
def _batch_matmul(op, ta, tb):
  a, b = op.inputs
  kw = dict(adjoint_a=op.get_attr("adj_x"), adjoint_b=op.get_attr("adj_y"))
  return [_sum_fit(op.outputs[0],
                   None if ta is None else tf.linalg.matmul(ta, b, **kw),
                   None if tb is None else tf.linalg.matmul(a, tb, **kw))]


@RegisterForward("Conv2D")
def _conv2d(op, tx, tf_):
  x, f = op.inputs
  return [_add(None if tx is None else _replay(op, [tx, f]),
               None if tf_ is None else _replay(op, [x, tf_]))]


@RegisterForward("BiasAdd")
def _bias_add(op, tx, tb):
  if tb is None:
    return [tx]
  base = tf.zeros_like(op.outputs[0]) if tx is None else tx
  return [raw.BiasAdd(value=base, bias=tb,
                      data_format=op.get_attr("data_format"))]


@RegisterForward("MaxPool")
def _max_pool(op, t):
  """The tangent at each window's maximum (MaxPoolGradGrad picks it)."""
  return [raw.MaxPoolGradGrad(
      orig_input=op.inputs[0], orig_output=op.outputs[0], grad=t,
      ksize=op.get_attr("ksize"), strides=op.get_attr("strides"),
      padding=op.get_attr("padding"),
      data_format=op.get_attr("data_format"))]


# ----- reductions and shapes -----

for _type in ("Sum", "Mean", "Reshape", "Transpose", "ExpandDims", "Squeeze",
              "StridedSlice", "Slice", "Tile", "Pad", "Reverse", "ReverseV2",
              "AvgPool", "BroadcastTo", "Cumsum"):
  def_linear(_type)


@RegisterForward("GatherV2")
def _gather(op, tp, ti, ta):
  del ti, ta
  return [None if tp is None else _replay(op, [tp] + list(op.inputs[1:]))]


@RegisterForward("ConcatV2")
def _concat(op, *ts):
  values = op.inputs[:-1]
  if all(t is None for t in ts[:-1]):
    return [None]
  parts = [tf.zeros_like(v) if t is None else t
           for v, t in zip(values, ts[:-1])]
  return [tf.concat(parts, op.inputs[-1])]


# ----- softmax -----

@RegisterForward("Softmax")
def _softmax(op, t):
  """s * (t - <s, t>) along the last axis."""
  s = op.outputs[0]
  return [s * (t - tf.reduce_sum(s * t, -1, keepdims=True))]


@RegisterForward("LogSoftmax")
def _log_softmax(op, t):
  """t - <softmax, t> along the last axis."""
  s = tf.exp(op.outputs[0])
  return [t - tf.reduce_sum(s * t, -1, keepdims=True)]


# ----- binary, less common -----

@RegisterForward("SquaredDifference")
def _squared_difference(op, ta, tb):
  """2 (a - b) (ta - tb)."""
  a, b = op.inputs
  diff = _sum_fit(op.outputs[0], ta, None if tb is None else -tb)
  return [2.0 * (a - b) * diff]


def _select_tangent(op, ta, tb, a_wins):
  """ta where a wins (ties to a, as the gradient rules), else tb."""
  y = op.outputs[0]
  zeros = tf.zeros_like(y)
  ta = zeros if ta is None else _fit(ta, y)
  tb = zeros if tb is None else _fit(tb, y)
  return [tf.where(_fit(a_wins(*op.inputs), y), ta, tb)]


@RegisterForward("Maximum")
def _maximum(op, ta, tb):
  return _select_tangent(op, ta, tb, tf.greater_equal)


@RegisterForward("Minimum")
def _minimum(op, ta, tb):
  return _select_tangent(op, ta, tb, tf.less_equal)


# ----- gradient ops (forward over reverse: Hessians) -----

@RegisterForward("Pow")
def _pow(op, ta, tb):
  """b a^(b-1) ta + a^b log(a) tb, log(a) taken as 0 where a <= 0 (real
  a), as the gradient rule takes it."""
  a, b = op.inputs
  y = op.outputs[0]
  da = None if ta is None else ta * b * tf.pow(a, b - 1)
  db = None
  if tb is not None:
    log_a = tf.math.log(a)
    if not a.dtype.is_complex:
      log_a = tf.where(a > 0, log_a, tf.zeros_like(a))
    db = tb * y * log_a
  return [_sum_fit(y, da, db)]


def _grad_op_rule(op_type, fused, derivative):
  """Rules for g = fused(y, dy) = dy * conj(d(y)), TF's fused gradient
  kernels: tg = fused(y, tdy) + dy * conj(d'(y) ty)."""
  @RegisterForward(op_type)
  def _rule(op, ty, tdy):
    y, dy = op.inputs
    return [_add(None if tdy is None else fused(y, tdy),
                 None if ty is None else dy * tf.math.conj(derivative(y, ty)))]

  @RegisterBatchedForward(op_type)
  def _batched(op, ty, tdy):
    y, dy = op.inputs
    return [_add(None if tdy is None else fused(y, tf.ones_like(y)) * tdy,
                 None if ty is None else dy * tf.math.conj(derivative(y, ty)))]
  return _rule


_grad_op_rule("TanhGrad", lambda y, dy: raw.TanhGrad(y=y, dy=dy),
              lambda y, t: -2.0 * y * t)
_grad_op_rule("SigmoidGrad", lambda y, dy: raw.SigmoidGrad(y=y, dy=dy),
              lambda y, t: (1.0 - 2.0 * y) * t)


@RegisterForward("ReluGrad")
def _relu_grad(op, tg, tf_):
  """tg where features > 0 (the features' tangent is 0 almost everywhere)."""
  del tf_
  return [None if tg is None else
          raw.ReluGrad(gradients=tg, features=op.inputs[1])]


@RegisterForward("StridedSliceGrad")
def _strided_slice_grad(op, *ts):
  """Linear in dy, its last input."""
  t = ts[-1]
  return [None if t is None else _replay(op, list(op.inputs[:-1]) + [t])]


@RegisterForward("BiasAddGrad")
def _bias_add_grad(op, t):
  """Linear: the same sum over all axes but the channel axis."""
  return [raw.BiasAddGrad(out_backprop=t,
                          data_format=op.get_attr("data_format"))]


# ----- batched rules: every tangent has a leading batch axis -----

def _align(t, rank):
  """A batched tangent [b] + s as [b] + [1] * (rank - len(s)) + s: the
  batch axis stays in front when it broadcasts against an output of
  `rank` dimensions."""
  for _ in range(rank + 1 - t.shape.rank):
    t = tf.expand_dims(t, 1)
  return t


def _aligned(rule):
  """The batched form of an elementwise (broadcasting) plain rule."""
  def batched(op, *ts):
    rank = op.outputs[0].shape.rank
    if rank is None or any(t is not None and t.shape.rank is None
                           for t in ts):
      return NotImplemented
    return rule(op, *[None if t is None else _align(t, rank) for t in ts])
  return batched


for _type, _rule in [("AddV2", _add_v2), ("Add", _add_v2), ("Sub", _sub),
                     ("Mul", _mul), ("RealDiv", _div), ("AddN", _add_n),
                     ("SquaredDifference", _squared_difference),
                     ("Maximum", _maximum), ("Minimum", _minimum),
                     ("Pow", _pow), ("BatchMatMulV2", _batch_matmul)]:
  RegisterBatchedForward(_type)(_aligned(_rule))

# Plain rules that are batched as they stand: the tangent is multiplied
# elementwise, reduced along the last axis, or matmul'd with broadcasting.
for _type, _rule in [("Neg", _neg), ("Identity", _identity),
                     ("ReadVariableOp", _read), ("Cast", _cast),
                     ("MatMul", _matmul),
                     ("Softmax", _softmax), ("LogSoftmax", _log_softmax)]:
  RegisterBatchedForward(_type)(_rule)


def _positive(t, features):
  return t * tf.cast(features > 0, t.dtype)


@RegisterBatchedForward("Relu")
def _relu_batched(op, t):
  return [_positive(t, op.inputs[0])]


@RegisterBatchedForward("ReluGrad")
def _relu_grad_batched(op, tg, tf_):
  del tf_
  return [None if tg is None else _positive(tg, op.inputs[1])]


@RegisterBatchedForward("Softplus")
def _softplus_batched(op, t):
  return [t * tf.sigmoid(op.inputs[0])]


@RegisterBatchedForward("BiasAdd")
def _bias_add_batched(op, tx, tb):
  """tx + tb along the channel axis: the last (NHWC) or the second (NCHW)."""
  out = op.outputs[0]
  rank = out.shape.rank
  if rank is None:
    return NotImplemented
  if tb is not None:
    if op.get_attr("data_format") == b"NCHW":
      tb = tf.reshape(tb, tf.concat([tf.shape(tb)[:1], [1, -1],
                                     [1] * (rank - 2)], 0))
    else:
      tb = _align(tb, rank)
  return [_sum_fit(out, tx, tb)]


def _static_or(t, fn_static, fn_dynamic):
  value = tf.get_static_value(t)
  if value is not None:
    return tf.constant(fn_static(np.asarray(value)), t.dtype)
  return fn_dynamic(t)


def _shift_axes(axes):
  """Axes counted with the batch axis in front (negative ones unchanged)."""
  return _static_or(axes, lambda a: np.where(a >= 0, a + 1, a),
                    lambda a: tf.where(a >= 0, a + 1, a))


def _prepend(vec, value):
  """[value] + vec, for an index vector (or paddings: a row)."""
  return _static_or(
      vec, lambda v: np.concatenate([np.full((1,) + v.shape[1:], value,
                                             v.dtype), v]),
      lambda v: tf.concat([tf.fill(tf.concat([[1], tf.shape(v)[1:]], 0),
                                   tf.cast(value, v.dtype)), v], 0))


def _with_batch(t, shape):
  """[b] + shape, b being t's leading dimension, in shape's dtype."""
  b = t.shape[0]
  if b is not None:
    return _prepend(shape, b)
  return tf.concat([tf.shape(t, out_type=shape.dtype)[:1], shape], 0)


def _shifted_masks(op):
  """StridedSlice masks for a batch axis in front, taken whole."""
  get = op.get_attr
  return dict(begin_mask=(get("begin_mask") << 1) | 1,
              end_mask=(get("end_mask") << 1) | 1,
              ellipsis_mask=get("ellipsis_mask") << 1,
              new_axis_mask=get("new_axis_mask") << 1,
              shrink_axis_mask=get("shrink_axis_mask") << 1)


def _slice_spec(op, first):
  begin, end, strides = op.inputs[first:first + 3]
  return dict(begin=_prepend(begin, 0), end=_prepend(end, 0),
              strides=_prepend(strides, 1), **_shifted_masks(op))


@RegisterBatchedForward("StridedSlice")
def _strided_slice_batched(op, t, *rest):
  del rest
  return [raw.StridedSlice(input=t, **_slice_spec(op, 1))]


@RegisterBatchedForward("StridedSliceGrad")
def _strided_slice_grad_batched(op, *ts):
  t = ts[-1]
  if t is None:
    return [None]
  return [raw.StridedSliceGrad(shape=_with_batch(t, op.inputs[0]), dy=t,
                               **_slice_spec(op, 1))]


def _reduce(raw_op):
  def batched(op, t, ta):
    del ta
    return [raw_op(input=t, axis=_shift_axes(op.inputs[1]),
                   keep_dims=op.get_attr("keep_dims"))]
  return batched


RegisterBatchedForward("Sum")(_reduce(raw.Sum))
RegisterBatchedForward("Mean")(_reduce(raw.Mean))


@RegisterBatchedForward("Reshape")
def _reshape_batched(op, t, ts):
  del ts
  return [raw.Reshape(tensor=t, shape=_with_batch(t, op.inputs[1]))]


@RegisterBatchedForward("Transpose")
def _transpose_batched(op, t, tp):
  del tp
  perm = _static_or(op.inputs[1], lambda p: np.concatenate([[0], p + 1]),
                    lambda p: tf.concat([[0], p + 1], 0))
  return [raw.Transpose(x=t, perm=perm)]


@RegisterBatchedForward("ExpandDims")
def _expand_dims_batched(op, t, ta):
  del ta
  return [raw.ExpandDims(input=t, axis=_shift_axes(op.inputs[1]))]


@RegisterBatchedForward("Squeeze")
def _squeeze_batched(op, t):
  dims = list(op.get_attr("squeeze_dims"))
  shape = op.inputs[0].shape
  if not dims:
    if shape.rank is None or any(d is None for d in shape.as_list()):
      return NotImplemented
    dims = [i for i, d in enumerate(shape.as_list()) if d == 1]
  return [raw.Squeeze(input=t, axis=[d + 1 if d >= 0 else d for d in dims])]


@RegisterBatchedForward("Slice")
def _slice_batched(op, t, tb, ts):
  del tb, ts
  return [raw.Slice(input=t, begin=_prepend(op.inputs[1], 0),
                    size=_prepend(op.inputs[2], -1))]


@RegisterBatchedForward("Tile")
def _tile_batched(op, t, tm):
  del tm
  return [raw.Tile(input=t, multiples=_prepend(op.inputs[1], 1))]


@RegisterBatchedForward("Pad")
def _pad_batched(op, t, tp):
  del tp
  return [raw.Pad(input=t, paddings=_prepend(op.inputs[1], 0))]


@RegisterBatchedForward("ReverseV2")
def _reverse_batched(op, t, ta):
  del ta
  return [raw.ReverseV2(tensor=t, axis=_shift_axes(op.inputs[1]))]


@RegisterBatchedForward("Cumsum")
def _cumsum_batched(op, t, ta):
  del ta
  return [raw.Cumsum(x=t, axis=_shift_axes(op.inputs[1]),
                     exclusive=op.get_attr("exclusive"),
                     reverse=op.get_attr("reverse"))]


@RegisterBatchedForward("BroadcastTo")
def _broadcast_to_batched(op, t, ts):
  del ts
  rank = op.outputs[0].shape.rank
  if rank is None:
    return NotImplemented
  return [tf.broadcast_to(_align(t, rank), _with_batch(t, op.inputs[1]))]


@RegisterBatchedForward("GatherV2")
def _gather_batched(op, tp, ti, ta):
  del ti, ta
  if tp is None:
    return [None]
  if op.get_attr("batch_dims") != 0:
    return NotImplemented
  return [raw.GatherV2(params=tp, indices=op.inputs[1],
                       axis=_shift_axes(op.inputs[2]), batch_dims=0)]


@RegisterBatchedForward("ConcatV2")
def _concat_batched(op, *ts):
  values, ts = op.inputs[:-1], ts[:-1]
  live = [t for t in ts if t is not None]
  if not live:
    return [None]
  parts = [tf.zeros(_with_batch(live[0], tf.shape(v)), v.dtype)
           if t is None else t for v, t in zip(values, ts)]
  return [tf.concat(parts, _shift_axes(op.inputs[-1]))]


@RegisterBatchedForward("BiasAddGrad")
def _bias_add_grad_batched(op, t):
  """The sum over every axis but the batch and channel axes."""
  rank = op.inputs[0].shape.rank
  if rank is None:
    return NotImplemented
  channel = 2 if op.get_attr("data_format") == b"NCHW" else rank
  return [tf.reduce_sum(t, [a for a in range(1, rank + 1) if a != channel])]


# ----- basis rules: an identity basis as the tangent, not built -----

def _rearranged(op, t, *rest):
  """Ops that only rearrange entries keep a (whole-x) basis, reshaped."""
  del rest
  out = op.outputs[0]
  if (not isinstance(t, Basis) or t.rows
      or not out.shape.is_fully_defined()):
    return NotImplemented
  return [t.reshaped(out.shape)]


for _type in ("Reshape", "ExpandDims", "Squeeze", "Identity",
              "ReadVariableOp"):
  RegisterBasisForward(_type)(_rearranged)


@RegisterBasisForward("MatMul")
def _matmul_basis(op, ta, tb):
  """I @ b' and a' @ I without the product: b' (or a') rearranged, next to
  an identity over the other axis; for a basis over rows of a, b'
  broadcast over the rows."""
  a, b = op.inputs
  ta_t, tb_t = op.get_attr("transpose_a"), op.get_attr("transpose_b")
  if isinstance(ta, Basis) and tb is None and not ta_t:
    b2 = tf.transpose(b) if tb_t else b                 # [k, p]
    (m, k), p = a.shape.as_list(), b2.shape[1]
    if ta.rows and None not in (k, p):
      return [tf.broadcast_to(b2[:, None, :],
                              tf.concat([[k], tf.shape(a)[:1], [p]], 0))]
    if None in (m, k, p):
      return NotImplemented
    if m == 1:
      return [tf.reshape(b2, [k, 1, p])]
    out = tf.einsum("ij,lc->iljc", tf.eye(m, dtype=a.dtype), b2)
    return [tf.reshape(out, [m * k, m, p])]
  if isinstance(tb, Basis) and ta is None and not tb_t and not tb.rows:
    a2 = tf.transpose(a) if ta_t else a                 # [m, k]
    m, (k, p) = a2.shape[0], b.shape.as_list()
    if None in (m, k, p):
      return NotImplemented
    if p == 1:
      return [tf.reshape(tf.transpose(a2), [k, m, 1])]
    out = tf.einsum("il,cd->lcid", a2, tf.eye(p, dtype=b.dtype))
    return [tf.reshape(out, [k * p, m, p])]
  return NotImplemented
