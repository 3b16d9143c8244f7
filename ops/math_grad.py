"""Gradient rules for math ops (TF's math_grad.py family).

Elementwise rules follow TF's complex convention: the incoming gradient is
multiplied by the conjugate of the derivative. Broadcasting binary ops sum
each partial back to its operand's shape; reductions broadcast the gradient
back over the reduced axes. Shapes and axes are used statically whenever
they are known, so no Shape ops are emitted in that case.
"""

import numpy as np
import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_binary, def_linear
from tfgrad.ops.registrars import def_not_differentiable

_FLOATISH = (tf.float16, tf.float32, tf.float64, tf.bfloat16, tf.complex64,
             tf.complex128)
_ELLIPSIS = "..."


def _on_input(op_type, formula):
  """Registers `formula(conj(x), grad) -> dx` for a unary op."""

  def rule(op, grad):
    return formula(_helpers.conj(op.inputs[0]), grad)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of {op_type} from its input."
  RegisterGradient(op_type)(rule)


def _on_output(op_type, formula):
  """Registers `formula(conj(y), grad) -> dx` for a unary op, y its output."""

  def rule(op, grad):
    return formula(_helpers.conj(op.outputs[0]), grad)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of {op_type} from its output."
  RegisterGradient(op_type)(rule)


def _if_needed(op, index, grad):
  """`grad` when input `index` needs a gradient, else None."""
  return grad if _helpers.needs_grad(op, index) else None


def _const(value, dtype):
  return tf.constant(value, dtype=dtype)


def _nonzero_mask(x):
  """1 where x != 0 else 0, in x's dtype (no gradient flows through it)."""
  return tf.cast(tf.not_equal(x, tf.zeros([], x.dtype)), x.dtype)


def _kept_shape(x, axes):
  """x's shape with the `axes` set to 1: a list when static, else a Tensor."""
  shape, static_axes = _helpers.static_shape(x), tf.get_static_value(axes)
  if shape is not None and static_axes is not None:
    return _helpers.reduced_shape(shape, static_axes)
  x_shape = tf.shape(x)
  axes = tf.math.floormod(tf.cast(tf.reshape(axes, [-1]), tf.int32),
                          tf.size(x_shape))
  return tf.tensor_scatter_nd_update(x_shape, tf.reshape(axes, [-1, 1]),
                                     tf.ones_like(axes))


def _has_shape(t, shape):
  """Whether `t`'s static shape is fully known and equal to list `shape`."""
  return (isinstance(shape, list) and t.shape.is_fully_defined()
          and t.shape.as_list() == shape)


def _reshape(t, shape):
  """tf.reshape, skipped when t already has the static `shape`."""
  return t if _has_shape(t, shape) else tf.reshape(t, shape)


def _sum_grad_dense(op, grad):
  """grad of a reduction, broadcast back to the shape of its input."""
  x = op.inputs[0]
  grad = _reshape(tf.convert_to_tensor(grad), _kept_shape(x, op.inputs[1]))
  shape = _helpers.static_shape(x)
  if shape is not None and _has_shape(grad, list(shape)):
    return grad
  return tf.broadcast_to(grad, shape if shape is not None else tf.shape(x))


def _prod_layout(x, axes):
  """(perm, reduced count, kept count) putting the reduced axes of x first."""
  rank, static_axes = x.shape.rank, tf.get_static_value(axes)
  shape = _helpers.static_shape(x)
  if rank is not None and static_axes is not None:
    reduced = list(dict.fromkeys(int(a) % rank
                                 for a in np.ravel(static_axes)))
    other = [i for i in range(rank) if i not in reduced]
    if shape is not None:
      return (reduced + other, int(np.prod([shape[i] for i in reduced])),
              int(np.prod([shape[i] for i in other])))
    reduced = tf.constant(reduced, tf.int32, shape=[len(reduced)])
    other = tf.constant(other, tf.int32, shape=[len(other)])
  else:
    r = tf.rank(x)
    reduced = tf.math.floormod(tf.cast(tf.reshape(axes, [-1]), tf.int32), r)
    other, _ = raw.ListDiff(x=tf.range(r), y=reduced,
                                   out_idx=tf.int32)
  x_shape = tf.shape(x)
  return (tf.concat([reduced, other], 0),
          tf.reduce_prod(tf.gather(x_shape, reduced)),
          tf.reduce_prod(tf.gather(x_shape, other)))


def _transpose(t, perm):
  """tf.transpose, skipped for a static identity permutation."""
  if isinstance(perm, list) and perm == list(range(len(perm))):
    return t
  return tf.transpose(t, perm)


def _inverse_permutation(perm):
  if isinstance(perm, list):
    return [int(i) for i in np.argsort(perm)]
  return tf.math.invert_permutation(perm)


def _batch_unbroadcast(gx, x, gy, y):
  """Sums batch-matmul gradients over the batch axes that were broadcast."""
  sx, sy = x.shape, y.shape
  if sx.rank is not None and sy.rank is not None:
    if sx.rank <= 2 and sy.rank <= 2:
      return gx, gy
    if (sx[:-2].is_fully_defined() and sy[:-2].is_fully_defined()
        and sx[:-2] == sy[:-2]):
      return gx, gy
  return _helpers.unbroadcast_pair(gx, x, gy, y)


# ----- Broadcasting binary -----

def _add_grad(op, grad):
  """d (x + y) = dx + dy."""
  x, y = op.inputs
  return _helpers.unbroadcast_pair(_if_needed(op, 0, grad), x,
                                   _if_needed(op, 1, grad), y)


RegisterGradient("Add")(_add_grad)
RegisterGradient("AddV2")(_add_grad)


@RegisterGradient("Sub")
def _sub_grad(op, grad):
  """d (x - y) = dx - dy."""
  x, y = op.inputs
  gy = -grad if _helpers.needs_grad(op, 1) else None
  return _helpers.unbroadcast_pair(_if_needed(op, 0, grad), x, gy, y)


def_binary("Mul", dx=lambda x, y, g: g * y, dy=lambda x, y, g: x * g)
def_binary("MulNoNan", dx=lambda x, y, g: tf.math.multiply_no_nan(g, y),
           dy=lambda x, y, g: tf.math.multiply_no_nan(x, g))
def_binary("RealDiv", dx=lambda x, y, g: tf.math.truediv(g, y),
           dy=lambda x, y, g: g * tf.math.truediv(tf.math.truediv(-x, y), y))
def_binary("Div", dx=lambda x, y, g: tf.math.truediv(g, y),
           dy=lambda x, y, g: g * tf.math.truediv(tf.math.truediv(-x, y), y))
def_binary("DivNoNan", dx=lambda x, y, g: tf.math.divide_no_nan(g, y),
           dy=lambda x, y, g: g * tf.math.divide_no_nan(
               tf.math.divide_no_nan(-x, y), y))
def_binary("FloorMod", dx=lambda x, y, g: g,
           dy=lambda x, y, g: g * -tf.math.floordiv(x, y))
def_binary("Xlogy", dx=lambda x, y, g: tf.math.xlogy(_nonzero_mask(x), y) * g,
           dy=lambda x, y, g: tf.math.xdivy(x, y) * g)
def_binary("Xlog1py",
           dx=lambda x, y, g: tf.math.xlog1py(_nonzero_mask(x), y) * g,
           dy=lambda x, y, g: tf.math.xdivy(x, y + 1.0) * g)
def_binary("Xdivy", dx=lambda x, y, g: tf.math.xdivy(_nonzero_mask(x), y) * g,
           dy=lambda x, y, g: tf.math.xdivy(-x, y**2) * g)
def_binary("Complex", dx=lambda x, y, g: tf.math.real(g),
           dy=lambda x, y, g: tf.math.imag(g))


@RegisterGradient("SquaredDifference")
def _squared_difference_grad(op, grad):
  """d (x - y)^2 = 2 (x - y) (dx - dy)."""
  x, y = op.inputs
  gx = (2.0 * grad) * (x - y)
  return _helpers.unbroadcast_pair(gx, x, -gx, y)


@RegisterGradient("Atan2")
def _atan2_grad(op, grad):
  """d atan2(y, x) = (x dy - y dx) / (x^2 + y^2); the inputs are (y, x)."""
  y, x = op.inputs
  scaled = grad / (tf.square(y) + tf.square(x))
  return _helpers.unbroadcast_pair(x * scaled, y, -y * scaled, x)


@RegisterGradient("Pow")
def _pow_grad(op, grad):
  """d x^y = y x^(y-1) dx + x^y log(x) dy, with log(x) taken as 0 off-domain."""
  x, y = op.inputs
  cx, cy = _helpers.conj(x), _helpers.conj(y)
  gx = grad * cy * tf.pow(cx, cy - 1)
  mask = tf.not_equal(cx, 0) if x.dtype.is_complex else cx > 0
  safe_x = tf.where(mask, cx, tf.ones_like(x))
  log_x = tf.where(mask, tf.math.log(safe_x), tf.zeros_like(x))
  gy = grad * _helpers.conj(op.outputs[0]) * log_x
  return _helpers.unbroadcast_pair(gx, x, gy, y)


def _select_grad(op, grad, x_wins):
  """Routes grad to x where x_wins(x, y) holds, else to y."""
  x, y = op.inputs
  zeros = tf.zeros_like(grad)
  mask = x_wins(x, y)
  return _helpers.unbroadcast_pair(tf.where(mask, grad, zeros), x,
                                   tf.where(mask, zeros, grad), y)


@RegisterGradient("Maximum")
def _maximum_grad(op, grad):
  """grad goes to x where x >= y, else to y."""
  return _select_grad(op, grad, tf.greater_equal)


@RegisterGradient("Minimum")
def _minimum_grad(op, grad):
  """grad goes to x where x <= y, else to y."""
  return _select_grad(op, grad, tf.less_equal)


@RegisterGradient("AddN")
def _add_n_grad(op, grad):
  """Every summand receives grad."""
  return [grad] * len(op.inputs)


# ----- Elementwise unary -----

_on_input("Abs", lambda x, g: g * tf.sign(x))
_on_input("Square", lambda x, g: tf.multiply(g, x * _const(2.0, x.dtype)))
_on_output("Exp", lambda y, g: g * y)
_on_input("Expm1", lambda x, g: g * tf.exp(x))
_on_input("Log", lambda x, g: g * tf.math.reciprocal(x))
_on_input("Log1p", lambda x, g: g * tf.math.reciprocal(1 + x))
_on_input("Sin", lambda x, g: g * tf.cos(x))
_on_input("Cos", lambda x, g: -g * tf.sin(x))
_on_input("Tan", lambda x, g: tf.square(tf.math.reciprocal(tf.cos(x))) * g)
_on_input("Sinh", lambda x, g: g * tf.cosh(x))
_on_input("Cosh", lambda x, g: g * tf.sinh(x))
_on_output("Tanh", lambda y, g: raw.TanhGrad(y=y, dy=g))
_on_output("Sigmoid", lambda y, g: raw.SigmoidGrad(y=y, dy=g))
_on_output("Asinh", lambda y, g: g / tf.cosh(y))
_on_output("Acosh", lambda y, g: g / tf.sinh(y))
_on_input("Atanh", lambda x, g: g * tf.math.reciprocal(
    _const(1, g.dtype) - tf.square(x)))
_on_input("Asin", lambda x, g: g * tf.math.reciprocal(
    tf.sqrt(_const(1, g.dtype) - tf.square(x))))
_on_input("Acos", lambda x, g: -g * tf.math.reciprocal(
    tf.sqrt(_const(1, g.dtype) - tf.square(x))))
_on_input("Atan", lambda x, g: g * tf.math.reciprocal(
    _const(1, g.dtype) + tf.square(x)))
_on_input("Erf", lambda x, g: g * _const(2 / np.sqrt(np.pi), g.dtype)
          * tf.exp(-tf.square(x)))
_on_input("Erfc", lambda x, g: g * _const(-2 / np.sqrt(np.pi), g.dtype)
          * tf.exp(-tf.square(x)))
_on_input("Lgamma", lambda x, g: g * tf.math.digamma(x))
_on_input("Digamma", lambda x, g: g * tf.math.polygamma(
    _const(1, x.dtype), x))
_on_output("Erfinv", lambda y, g: g * _const(np.sqrt(np.pi) / 2, g.dtype)
           * tf.exp(tf.square(y)))
_on_output("Ndtri", lambda y, g: g * _const(np.sqrt(2 * np.pi), g.dtype)
           * tf.exp(tf.square(y) / 2.0))


@RegisterGradient("Neg")
def _neg_grad(op, grad):
  """d (-x) = -dx."""
  del op
  return -grad


@RegisterGradient("Sign")
def _sign_grad(op, grad):
  """sign is piecewise constant: a zero gradient."""
  del grad
  return tf.zeros_like(op.inputs[0])


@RegisterGradient("Sqrt")
def _sqrt_grad(op, grad):
  """d sqrt(x) = dx / (2 conj(y)); SqrtGrad conjugates y itself."""
  return raw.SqrtGrad(y=op.outputs[0], dy=grad)


@RegisterGradient("Rsqrt")
def _rsqrt_grad(op, grad):
  """d x^(-1/2) = -conj(y)^3 dx / 2; RsqrtGrad conjugates y itself."""
  return raw.RsqrtGrad(y=op.outputs[0], dy=grad)


@RegisterGradient("Reciprocal")
def _reciprocal_grad(op, grad):
  """d (1/x) = -conj(y)^2 dx; ReciprocalGrad conjugates y itself."""
  return raw.ReciprocalGrad(y=op.outputs[0], dy=grad)


@RegisterGradient("Inv")
def _inv_grad(op, grad):
  """Same as Reciprocal: -conj(y)^2 grad."""
  return raw.ReciprocalGrad(y=op.outputs[0], dy=grad)


@RegisterGradient("Polygamma")
def _polygamma_grad(op, grad):
  """d psi(n, x)/dx = psi(n + 1, x); no gradient for the order n."""
  n, x = op.inputs
  gx = grad * tf.math.polygamma(_helpers.conj(n) + 1, _helpers.conj(x))
  return None, _helpers.unbroadcast(gx, x)


# ----- Gradient ops (second order) -----

@RegisterGradient("SqrtGrad")
def _sqrt_grad_grad(op, grad):
  """out = b / (2 conj(a)): d/da = -conj(grad/a) out, d/db = grad / (2a)."""
  a, out = op.inputs[0], op.outputs[0]
  ga = grad / a
  return -tf.math.conj(ga) * out, 0.5 * ga


@RegisterGradient("RsqrtGrad")
def _rsqrt_grad_grad(op, grad):
  """out = -b conj(a)^3 / 2: d/da = -3/2 b a^2, d/db = -a^3 / 2."""
  a, b = op.inputs
  ca, cg = _helpers.conj(a), _helpers.conj(grad)
  return (-1.5 * cg * b * tf.square(ca),
          raw.RsqrtGrad(y=ca, dy=grad))


def _reciprocal_grad_grad(op, grad):
  """out = -b conj(a)^2: d/da = -2 b a, d/db = -a^2."""
  a, b = op.inputs
  ca, cg = _helpers.conj(a), _helpers.conj(grad)
  return cg * -2.0 * b * ca, raw.ReciprocalGrad(y=ca, dy=grad)


RegisterGradient("ReciprocalGrad")(_reciprocal_grad_grad)
RegisterGradient("InvGrad")(_reciprocal_grad_grad)


@RegisterGradient("TanhGrad")
def _tanh_grad_grad(op, grad):
  """out = b (1 - a^2): d/da = -2 a b, d/db = 1 - a^2."""
  a, b = (_helpers.conj(t) for t in op.inputs)
  return grad * -2.0 * b * a, raw.TanhGrad(y=a, dy=grad)


@RegisterGradient("SigmoidGrad")
def _sigmoid_grad_grad(op, grad):
  """out = b a (1 - a): d/da = b (1 - 2a), d/db = a (1 - a)."""
  a, b = (_helpers.conj(t) for t in op.inputs)
  gb = grad * b
  return gb - 2.0 * gb * a, raw.SigmoidGrad(y=a, dy=grad)


# ----- Complex parts -----

@RegisterGradient("Real")
def _real_grad(op, grad):
  """The real part's gradient is real: grad + 0i."""
  del op
  return tf.complex(grad, tf.zeros([], grad.dtype))


@RegisterGradient("Imag")
def _imag_grad(op, grad):
  """The imaginary part's gradient is imaginary: 0 + grad i."""
  del op
  return tf.complex(tf.zeros([], grad.dtype), grad)


@RegisterGradient("Conj")
def _conj_grad(op, grad):
  """conj is its own adjoint."""
  del op
  return tf.math.conj(grad)


@RegisterGradient("Angle")
def _angle_grad(op, grad):
  """d arg(z) gives -grad / (Im z + i Re z)."""
  x = op.inputs[0]
  z = tf.math.reciprocal(tf.complex(tf.math.imag(x), tf.math.real(x)))
  return -tf.complex(grad, tf.zeros([], grad.dtype)) * z


@RegisterGradient("ComplexAbs")
def _complex_abs_grad(op, grad):
  """d |z| gives grad z / |z| (0 where z = 0)."""
  y = op.outputs[0]
  return tf.math.divide_no_nan(
      tf.complex(grad, tf.zeros_like(grad)) * op.inputs[0],
      tf.complex(y, tf.zeros_like(y)))


@RegisterGradient("Cast")
def _cast_grad(op, grad):
  """Casts grad back to the source dtype; None unless both are floating."""
  src = op.inputs[0].dtype.base_dtype
  if src in _FLOATISH and grad.dtype.base_dtype in _FLOATISH:
    return tf.cast(grad, src)
  return None


# ----- Reductions and scans -----

@RegisterGradient("Sum")
def _sum_grad(op, grad):
  """Broadcasts grad back over the reduced axes."""
  return _sum_grad_dense(op, grad), None


@RegisterGradient("Mean")
def _mean_grad(op, grad):
  """The Sum gradient divided by the number of elements averaged."""
  sum_grad = _sum_grad_dense(op, grad)
  x_shape = _helpers.static_shape(op.inputs[0])
  y_shape = _helpers.static_shape(op.outputs[0])
  if x_shape is not None and y_shape is not None:
    factor = _const(np.prod(x_shape, dtype=np.int64)
                    // max(np.prod(y_shape, dtype=np.int64), 1),
                    sum_grad.dtype)
  else:
    factor = tf.cast(tf.size(op.inputs[0]) // tf.maximum(
        tf.size(op.outputs[0]), 1), sum_grad.dtype)
  return tf.math.truediv(sum_grad, factor), None


def _min_or_max_grad(op, grad):
  """grad is shared equally among the elements that attain the extremum."""
  x, axes = op.inputs
  kept = _kept_shape(x, axes)
  y, grad = _reshape(op.outputs[0], kept), _reshape(grad, kept)
  hits = tf.cast(tf.equal(y, x), grad.dtype)
  count = tf.reduce_sum(hits, axes, keepdims=True)
  return tf.math.truediv(hits, count) * grad, None


RegisterGradient("Max")(_min_or_max_grad)
RegisterGradient("Min")(_min_or_max_grad)


@RegisterGradient("Prod")
def _prod_grad(op, grad):
  """grad times the product of all the other reduced elements."""
  x, axes = op.inputs
  grad = tf.broadcast_to(_reshape(grad, _kept_shape(x, axes)),
                         _helpers.shape_of(x))
  perm, reduced_num, other_num = _prod_layout(x, axes)
  permuted = _transpose(x, perm)
  flat = tf.reshape(permuted, [reduced_num, other_num])
  left = tf.math.cumprod(flat, axis=0, exclusive=True)
  right = tf.math.cumprod(flat, axis=0, exclusive=True, reverse=True)
  others = tf.reshape(_helpers.conj(left) * _helpers.conj(right),
                      _helpers.shape_of(permuted))
  out = grad * _transpose(others, _inverse_permutation(perm))
  shape = _helpers.static_shape(x)
  return _reshape(out, list(shape) if shape is not None else tf.shape(x)), None


@RegisterGradient("EuclideanNorm")
def _euclidean_norm_grad(op, grad):
  """d ||x|| = x / ||x|| over the reduced axes."""
  x, axes = op.inputs
  y = op.outputs[0]
  if not op.get_attr("keep_dims"):
    kept = _kept_shape(x, axes)
    y, grad = tf.reshape(y, kept), tf.reshape(grad, kept)
  return tf.math.truediv(x, y / grad), None


@RegisterGradient("Cumsum")
def _cumsum_grad(op, grad):
  """The adjoint of a cumulative sum runs the other way."""
  return [tf.cumsum(grad, op.inputs[1], exclusive=op.get_attr("exclusive"),
                    reverse=not op.get_attr("reverse")), None]


@RegisterGradient("CumulativeLogsumexp")
def _cumulative_logsumexp_grad(op, grad):
  """Reverse scan of grad e^(x - y), split by the sign of grad (in logs)."""
  x, axis = op.inputs
  y = op.outputs[0]
  exclusive, reverse = op.get_attr("exclusive"), op.get_attr("reverse")
  floor = grad.dtype.min

  def scan(mask, magnitude):
    log_g = tf.where(mask, tf.math.log(magnitude), floor)
    return tf.exp(tf.math.cumulative_logsumexp(
        log_g - y, axis=axis, exclusive=exclusive, reverse=not reverse) + x)

  return [scan(grad > 0, grad) - scan(grad < 0, -grad), None]


@RegisterGradient("Cumprod")
def _cumprod_grad(op, grad):
  """Reverse cumsum of grad * y, divided by x (0 where x = 0)."""
  x, axis = op.inputs
  exclusive, reverse = op.get_attr("exclusive"), op.get_attr("reverse")
  out = tf.cumsum(op.outputs[0] * grad, axis, exclusive=exclusive,
                  reverse=not reverse)
  return [tf.math.divide_no_nan(out, x), None]


# ----- Matrix products -----

@RegisterGradient("MatMul")
def _matmul_grad(op, grad):
  """C = op(A) op(B): dA = grad B^H, dB = A^H grad (with transposes)."""
  t_a, t_b = op.get_attr("transpose_a"), op.get_attr("transpose_b")
  a, b = (_helpers.conj(t) for t in op.inputs)
  mm = raw.MatMul
  ga = gb = None
  if _helpers.needs_grad(op, 0):
    if not t_a:
      ga = mm(a=grad, b=b, transpose_b=not t_b, grad_a=True)
    else:
      ga = mm(a=b, b=grad, transpose_a=t_b, transpose_b=True, grad_a=True)
  if _helpers.needs_grad(op, 1):
    if not t_b:
      gb = mm(a=a, b=grad, transpose_a=not t_a, grad_b=True)
    else:
      gb = mm(a=grad, b=a, transpose_a=True, transpose_b=t_a, grad_b=True)
  return ga, gb


def _batch_matmul_grads(op, grad, hints=False):
  """dx, dy of z = adj?(x) adj?(y) for batched matrices (no unbroadcast)."""
  x, y = op.inputs
  adj_x, adj_y = op.get_attr("adj_x"), op.get_attr("adj_y")
  hx = {"grad_a": True} if hints else {}
  hy = {"grad_b": True} if hints else {}
  mm = tf.linalg.matmul
  gx = gy = None
  if _helpers.needs_grad(op, 0):
    if not adj_x:
      gx = mm(grad, y, adjoint_b=not adj_y, **hx)
    else:
      gx = mm(y, grad, adjoint_a=adj_y, adjoint_b=True, **hx)
  if _helpers.needs_grad(op, 1):
    if not adj_y:
      gy = mm(x, grad, adjoint_a=not adj_x, **hy)
    else:
      gy = mm(grad, x, adjoint_a=True, adjoint_b=adj_x, **hy)
  return gx, gy


@RegisterGradient("BatchMatMul")
def _batch_matmul_grad(op, grad):
  """Batched MatMul gradient; batch shapes are equal (no broadcasting)."""
  return _batch_matmul_grads(op, grad)


def _batch_matmul_v2_grad(op, grad):
  """Batched MatMul gradient summed over broadcast batch axes."""
  gx, gy = _batch_matmul_grads(op, grad, hints=True)
  return _batch_unbroadcast(gx, op.inputs[0], gy, op.inputs[1])


RegisterGradient("BatchMatMulV2")(_batch_matmul_v2_grad)
RegisterGradient("BatchMatMulV3")(_batch_matmul_v2_grad)


# ----- Einsum -----

def _label_axis(subs, label):
  """Axis of the leftmost `label` in `subs`; negative after an ellipsis."""
  head, _, tail = subs.partition(_ELLIPSIS)
  if label in head:
    return head.index(label)
  return tail.index(label) - len(tail)


def _dims(t):
  """t's dims, each an int when static, else a scalar Tensor."""
  if t.shape.rank is None:
    return tf.shape(t)
  return [d if d is not None else tf.shape(t)[i]
          for i, d in enumerate(t.shape.as_list())]


def _unreduce(grad, grad_subs, subs, x, reduced):
  """VJP of einsum(subs -> grad_subs) where the `reduced` labels are summed."""
  reduced = "".join(sorted(reduced))
  axes = [_label_axis(subs, s) for s in reduced]
  x_dims = _dims(x)
  plain = "".join(s for s in subs if s not in reduced) == grad_subs
  if plain and len(set(subs)) == len(subs) and x.shape.rank is not None:
    rank = x.shape.rank
    kept = [1 if i in axes or i - rank in axes else d
            for i, d in enumerate(x_dims)]
    return tf.broadcast_to(tf.reshape(grad, kept), x_dims)
  lead = [x_dims[a] for a in axes]
  g_dims = _dims(grad)
  if isinstance(g_dims, list):
    ones, full = [1] * len(reduced) + g_dims, lead + g_dims
  else:
    ones = tf.concat([tf.ones([len(reduced)], tf.int32), g_dims], 0)
    full = tf.concat([tf.stack(lead), g_dims], 0)
  spread = tf.broadcast_to(tf.reshape(grad, ones), full)
  return raw.Einsum(inputs=[spread],
                           equation=f"{reduced}{grad_subs}->{subs}")


def _einsum_operand_grad(grad, out_subs, other, other_subs, x, subs):
  """VJP of a binary einsum for the operand `x` (before unbroadcasting)."""
  reduced = set(subs) - set(out_subs + other_subs + ".")
  left = "".join(s for s in subs if s not in reduced)
  g = raw.Einsum(inputs=[grad, other],
                        equation=f"{out_subs},{other_subs}->{left}")
  return _unreduce(g, left, subs, x, reduced) if reduced else g


def _einsum_unbroadcast(g, x, subs):
  """Sums g over the ellipsis axes along which x was broadcast."""
  start = subs.index(_ELLIPSIS)
  tail = len(subs) - start - len(_ELLIPSIS)
  g_shape, x_shape = _helpers.static_shape(g), _helpers.static_shape(x)
  if g_shape is not None and x_shape is not None:
    if g_shape == x_shape:
      return g
    lead = len(g_shape) - len(x_shape)
    axes = list(range(start, start + lead)) + [
        start + lead + i for i in range(len(x_shape) - start - tail)
        if x_shape[start + i] == 1 and g_shape[start + lead + i] != 1]
    return tf.reshape(tf.reduce_sum(g, axes), x_shape)
  sx, sg = tf.shape(x), tf.shape(g)
  axes, _ = raw.BroadcastGradientArgs(
      s0=sx[start:tf.size(sx) - tail], s1=sg[start:tf.size(sg) - tail])
  return tf.reshape(tf.reduce_sum(g, start + axes), sx)


@RegisterGradient("Einsum")
def _einsum_grad(op, grad):
  """Each operand's VJP is an einsum of grad with the other operand."""
  equation = op.get_attr("equation")
  equation = equation.decode() if isinstance(equation, bytes) else equation
  in_subs, out_subs = equation.split("->")
  if len(op.inputs) == 1:
    x = op.inputs[0]
    reduced = set(in_subs) - set(out_subs + ".")
    if reduced:
      return _unreduce(grad, out_subs, in_subs, x, reduced)
    return raw.Einsum(inputs=[grad], equation=f"{out_subs}->{in_subs}")
  x_subs, y_subs = in_subs.split(",")
  if _ELLIPSIS in out_subs:
    x_subs += "" if _ELLIPSIS in x_subs else _ELLIPSIS
    y_subs += "" if _ELLIPSIS in y_subs else _ELLIPSIS
  x, y = op.inputs
  cx, cy = x, y
  if grad.dtype.is_complex:
    cx, cy = tf.math.conj(x), tf.math.conj(y)
  gx = _einsum_operand_grad(grad, out_subs, cy, y_subs, cx, x_subs)
  gy = _einsum_operand_grad(grad, out_subs, cx, x_subs, cy, y_subs)
  if _ELLIPSIS not in out_subs:
    return gx, gy
  return _einsum_unbroadcast(gx, x, x_subs), _einsum_unbroadcast(gy, y, y_subs)


# ----- Special functions -----

_sm = tf.math.special
_on_input("Expint", lambda x, g: g * tf.exp(x) / x)
_on_input("FresnelCos", lambda x, g: g * tf.cos((np.pi / 2.0) * tf.square(x)))
_on_input("FresnelSin", lambda x, g: g * tf.sin((np.pi / 2.0) * tf.square(x)))
_on_input("Spence", lambda x, g: g * tf.where(
    tf.equal(x, 1.0), -tf.ones_like(x), tf.math.log(x) / (1 - x)))
_on_input("BesselI0", lambda x, g: g * _sm.bessel_i1(x))
_on_input("BesselK0", lambda x, g: g * -_sm.bessel_k1(x))
_on_input("BesselJ0", lambda x, g: g * -_sm.bessel_j1(x))
_on_input("BesselY0", lambda x, g: g * -_sm.bessel_y1(x))


def _on_input_output(op_type, formula):
  """Registers `formula(x, y, grad) -> dx` for a real unary op."""

  def rule(op, grad):
    return formula(op.inputs[0], op.outputs[0], grad)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of {op_type} from its input and output."
  RegisterGradient(op_type)(rule)


def _at_zero(x, value, elsewhere):
  """`elsewhere`, with the limit `value` substituted where x == 0."""
  return tf.where(tf.equal(x, 0.0), tf.cast(value, x.dtype), elsewhere)


_on_input_output("Dawsn", lambda x, y, g: g * (1.0 - 2 * x * y))
_on_input_output("BesselI0e", lambda x, y, g: g * (
    _sm.bessel_i1e(x) - tf.sign(x) * y))
_on_input_output("BesselI1", lambda x, y, g: g * _at_zero(
    x, 1.0, _sm.bessel_i0(x) - y / x))
_on_input_output("BesselI1e", lambda x, y, g: g * _at_zero(
    x, 0.5, _sm.bessel_i0e(x) - y * (tf.sign(x) + tf.math.reciprocal(x))))
_on_input_output("BesselK0e", lambda x, y, g: g * (y - _sm.bessel_k1e(x)))
_on_input_output("BesselK1", lambda x, y, g: g * (-_sm.bessel_k0(x) - y / x))
_on_input_output("BesselK1e", lambda x, y, g: g * (
    y * (1.0 - tf.math.reciprocal(x)) - _sm.bessel_k0e(x)))
_on_input_output("BesselJ1", lambda x, y, g: g * _at_zero(
    x, 0.5, _sm.bessel_j0(x) - y / x))
_on_input_output("BesselY1", lambda x, y, g: g * (_sm.bessel_y0(x) - y / x))


def _igamma_partials(op, grad):
  """Partials of the lower regularized gamma P(a, x), unbroadcast."""
  a, x = op.inputs
  ga = raw.IgammaGradA(a=a, x=x) * grad
  gx = tf.exp(-x + (a - 1) * tf.math.log(x) - tf.math.lgamma(a)) * grad
  return _helpers.unbroadcast_pair(ga, a, gx, x)


@RegisterGradient("Igamma")
def _igamma_grad(op, grad):
  """dP/dx = x^(a-1) e^-x / Gamma(a); dP/da by IgammaGradA (no gradient)."""
  return _igamma_partials(op, grad)


@RegisterGradient("Igammac")
def _igammac_grad(op, grad):
  """Q = 1 - P: the negated Igamma partials."""
  ga, gx = _igamma_partials(op, grad)
  return -ga, -gx


@RegisterGradient("Betainc")
def _betainc_grad(op, grad):
  """d I_x(a, b)/dx = x^(a-1) (1-x)^(b-1) / B(a, b); no gradient for a, b."""
  a, b, x = op.inputs
  log_beta = tf.math.lgamma(a) + tf.math.lgamma(b) - tf.math.lgamma(a + b)
  gx = tf.exp(tf.math.xlog1py(b - 1, -x) + tf.math.xlogy(a - 1, x)
              - log_beta) * grad
  return None, None, _helpers.unbroadcast(gx, x)


@RegisterGradient("Zeta")
def _zeta_grad(op, grad):
  """d zeta(x, q)/dq = -x zeta(x + 1, q); no gradient for x."""
  x, q = op.inputs
  gq = -x * tf.math.zeta(x + 1, q) * grad
  return None, _helpers.unbroadcast(gq, q)


@RegisterGradient("NextAfter")
def _next_after_grad(op, grad):
  """nextafter(x1, x2) moves x1 by one ulp: (grad, 0)."""
  x1, x2 = op.inputs
  return _helpers.unbroadcast(grad, x1), tf.zeros_like(x2)


@RegisterGradient("Cross")
def _cross_grad(op, grad):
  """d (u x v) = du x v + u x dv: (v x grad, grad x u)."""
  u, v = op.inputs
  return tf.linalg.cross(v, grad), tf.linalg.cross(grad, u)


# ----- Segment reductions -----

def _segment_ones(ids, data, dtype):
  """Ones of shape ids.shape + [1] * (rank(data) - 1): one count per row."""
  ids_shape, rank = _helpers.static_shape(ids), data.shape.rank
  if ids_shape is not None and rank is not None:
    return tf.ones(list(ids_shape) + [1] * (rank - ids.shape.rank), dtype)
  tail = tf.ones([tf.rank(data) - tf.rank(ids)], tf.int32)
  return tf.ones(tf.concat([tf.shape(ids), tail], 0), dtype)


def _valid_rows(ids, like):
  """ids >= 0, shaped to broadcast against `like` (rows indexed by ids)."""
  valid = tf.greater_equal(ids, tf.zeros([], ids.dtype))
  ids_shape, rank = _helpers.static_shape(ids), like.shape.rank
  if ids_shape is not None and rank is not None:
    return tf.reshape(valid, list(ids_shape) + [1] * (rank - len(ids_shape)))
  tail = tf.ones([tf.rank(like) - tf.rank(ids)], tf.int32)
  return tf.reshape(valid, tf.concat([tf.shape(ids), tail], 0))


def _gather_valid(params, ids, valid=None):
  """params[ids] with zero rows where ids < 0 (dropped by unsorted ops)."""
  gathered = tf.gather(params, tf.maximum(ids, tf.zeros([], ids.dtype)))
  if valid is None:
    valid = _valid_rows(ids, gathered)
  return tf.where(valid, gathered, tf.zeros([], gathered.dtype))


def _extremum_share(data, hits, grad, ids, count_fn, gather_fn):
  """grad of a segment max/min, split evenly among the rows attaining it."""
  count = count_fn(tf.cast(hits, grad.dtype))
  shared = gather_fn(tf.math.truediv(grad, count))
  return tf.where(hits, shared, tf.zeros_like(data))


def _prod_partials(data, prod, ids, prod_fn, sum_fn, gather_fn):
  """d prod / d data per row: prod / x, or the product of the others at a
  single zero (segments with two or more zeros have zero partials)."""
  is_zero = tf.equal(data, tf.zeros([], data.dtype))
  zeros_in = sum_fn(tf.cast(is_zero, tf.int32))
  safe = tf.where(is_zero, tf.ones_like(data), data)
  others = gather_fn(prod_fn(safe))
  partial = tf.where(is_zero, others, tf.math.truediv(gather_fn(prod), safe))
  return partial, tf.greater(zeros_in, 1)


@RegisterGradient("SegmentSum")
def _segment_sum_grad(op, grad):
  """Each row receives its segment's grad."""
  return tf.gather(grad, op.inputs[1]), None


@RegisterGradient("SegmentMean")
def _segment_mean_grad(op, grad):
  """Each row receives its segment's grad over the segment's size."""
  data, ids = op.inputs
  count = tf.math.segment_sum(_segment_ones(ids, data, grad.dtype), ids)
  return tf.gather(tf.math.truediv(grad, count), ids), None


def _segment_min_or_max_grad(op, grad):
  """grad goes to the rows equal to their segment's extremum, shared evenly."""
  data, ids = op.inputs
  hits = tf.equal(data, tf.gather(op.outputs[0], ids))
  return _extremum_share(data, hits, grad, ids,
                         lambda c: tf.math.segment_sum(c, ids),
                         lambda t: tf.gather(t, ids)), None


RegisterGradient("SegmentMax")(_segment_min_or_max_grad)
RegisterGradient("SegmentMin")(_segment_min_or_max_grad)


@RegisterGradient("SegmentProd")
def _segment_prod_grad(op, grad):
  """grad times the product of the segment's other rows."""
  data, ids = op.inputs
  partial, dead = _prod_partials(
      data, op.outputs[0], ids, lambda t: tf.math.segment_prod(t, ids),
      lambda t: tf.math.segment_sum(t, ids), lambda t: tf.gather(t, ids))
  grad = tf.where(dead, tf.zeros_like(grad), grad)
  return tf.gather(grad, ids) * partial, None


@RegisterGradient("UnsortedSegmentSum")
def _unsorted_segment_sum_grad(op, grad):
  """Each row receives its segment's grad (zero for negative ids)."""
  return _gather_valid(grad, op.inputs[1]), None, None


def _unsorted_segment_min_or_max_grad(op, grad):
  """grad goes to the rows equal to their segment's extremum, shared evenly;
  rows with negative ids get zero."""
  data, ids, num = op.inputs
  gathered = tf.gather(op.outputs[0], tf.maximum(ids, tf.zeros([], ids.dtype)))
  valid = _valid_rows(ids, gathered)
  hits = tf.logical_and(tf.equal(data, gathered), valid)
  return _extremum_share(
      data, hits, grad, ids,
      lambda c: tf.math.unsorted_segment_sum(c, ids, num),
      lambda t: _gather_valid(t, ids, valid)), None, None


RegisterGradient("UnsortedSegmentMax")(_unsorted_segment_min_or_max_grad)
RegisterGradient("UnsortedSegmentMin")(_unsorted_segment_min_or_max_grad)


@RegisterGradient("UnsortedSegmentProd")
def _unsorted_segment_prod_grad(op, grad):
  """grad times the product of the segment's other rows (zero for negative
  ids)."""
  data, ids, num = op.inputs
  clipped = tf.maximum(ids, tf.zeros([], ids.dtype))
  partial, dead = _prod_partials(
      data, op.outputs[0], ids,
      lambda t: tf.math.unsorted_segment_prod(t, ids, num),
      lambda t: tf.math.unsorted_segment_sum(t, ids, num),
      lambda t: tf.gather(t, clipped))
  grad = tf.where(dead, tf.zeros_like(grad), grad)
  return _gather_valid(grad, ids) * partial, None, None


_SPARSE_SEGMENT_GRAD = {"Sum": "SparseSegmentSumGrad",
                        "Mean": "SparseSegmentMeanGrad",
                        "SqrtN": "SparseSegmentSqrtNGrad"}


def _def_sparse_segment_grad(kind):
  """Rules for SparseSegment<kind> and its WithNumSegments form: the rows of
  data picked by indices receive their segment's (scaled) grad, summed; as
  IndexedSlices over the distinct indices when sparse_gradient is set."""

  def rule(op, grad):
    data, indices, ids = op.inputs[:3]
    rest = [None] * (len(op.inputs) - 1)
    dim0 = data.shape[0] if data.shape.rank else None
    dim0 = tf.shape(data)[0] if dim0 is None else dim0
    if op.get_attr("sparse_gradient"):
      values, unique = getattr(raw, _SPARSE_SEGMENT_GRAD[kind] + "V2")(
          grad=grad, indices=indices, segment_ids=ids, dense_output_dim0=dim0)
      return [tf.IndexedSlices(values, unique, _helpers.shape_of(data))] + rest
    dx = getattr(raw, _SPARSE_SEGMENT_GRAD[kind])(
        grad=grad, indices=indices, segment_ids=ids, output_dim0=dim0)
    return [dx] + rest

  rule.__name__ = f"_sparse_segment_{kind.lower()}_grad"
  rule.__doc__ = f"SparseSegment{kind}: summed, scaled rows via its Grad op."
  RegisterGradient(f"SparseSegment{kind}")(rule)
  RegisterGradient(f"SparseSegment{kind}WithNumSegments")(rule)


for _kind in ("Sum", "Mean", "SqrtN"):
  _def_sparse_segment_grad(_kind)


# ----- Accumulation, clipping -----

def_linear("AccumulateNV2")


@RegisterGradient("ClipByValue")
def _clip_by_value_grad(op, grad):
  """grad goes to x inside [lo, hi], to lo below it and to hi above it."""
  x, lo, hi = op.inputs
  below, above = tf.less(x, lo), tf.greater(x, hi)
  zero = tf.zeros([], grad.dtype)
  inside = tf.where(tf.logical_or(below, above), zero, grad)
  return (inside, _helpers.unbroadcast(tf.where(below, grad, zero), lo),
          _helpers.unbroadcast(tf.where(above, grad, zero), hi))


# ----- Sparse-flagged matrix product -----

def _sparse_matmul(x, y, dtype, flags, transpose_a=False, transpose_b=False):
  """SparseMatMul of x and y (each with its sparsity hint), cast to dtype;
  y is transposed up front (the kernel's transpose_b is avoided)."""
  y = tf.transpose(y) if transpose_b else y
  out = raw.SparseMatMul(a=x, b=y, transpose_a=transpose_a,
                                a_is_sparse=flags[0], b_is_sparse=flags[1])
  return out if out.dtype == dtype else tf.cast(out, dtype)


@RegisterGradient("SparseMatMul")
def _sparse_matmul_grad(op, grad):
  """C = op(A) op(B): dA = grad op(B)^T, dB = op(A)^T grad, as SparseMatMuls
  keeping each operand's sparsity hint."""
  a, b = op.inputs
  t_a, t_b = op.get_attr("transpose_a"), op.get_attr("transpose_b")
  sa, sb = op.get_attr("a_is_sparse"), op.get_attr("b_is_sparse")
  g_sparse = grad.op.type == "ReluGrad"
  if not t_a:
    ga = _sparse_matmul(grad, b, a.dtype, (g_sparse, sb), transpose_b=not t_b)
  else:
    ga = _sparse_matmul(b, grad, a.dtype, (sb, g_sparse), transpose_a=t_b,
                        transpose_b=True)
  if not t_b:
    gb = _sparse_matmul(a, grad, b.dtype, (sa, g_sparse), transpose_a=not t_a)
  else:
    gb = _sparse_matmul(grad, a, b.dtype, (g_sparse, sa), transpose_a=True,
                        transpose_b=t_a)
  return ga, gb


# ----- Not differentiable -----

def_not_differentiable(
    "ApproximateEqual", "ArgMax", "ArgMin", "Ceil", "Equal", "Floor",
    "FloorDiv", "Greater", "GreaterEqual", "Less", "LessEqual", "LinSpace",
    "LogicalAnd", "LogicalNot", "LogicalOr", "NotEqual", "Range", "Rint",
    "Round", "TruncateDiv")
