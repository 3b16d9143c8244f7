"""Gradient rules for math ops (TF's math_grad.py family).

Elementwise rules follow TF's complex convention: the incoming gradient is
multiplied by the conjugate of the derivative. Broadcasting binary ops sum
each partial back to its operand's shape; reductions broadcast the gradient
back over the reduced axes. Shapes and axes are used statically whenever
they are known, so no Shape ops are emitted in that case. Ops are built
through `tfgrad.emit` (the cheap path).
"""

import math

import numpy as np
import tensorflow as tf

from tfgrad import emit
from tfgrad import tf_compat
from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient
from tfgrad.registry import takes_known_gradients

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_binary, def_linear
from tfgrad.ops.registrars import def_not_differentiable

_FLOATISH = (tf.float16, tf.float32, tf.float64, tf.bfloat16, tf.complex64,
             tf.complex128)
_ELLIPSIS = "..."


def _on_input(op_type, formula):
  """Registers `formula(conj(x), grad) -> dx` for a unary op."""

  def rule(op, grad):
    with emit.after(grad):
      return formula(_helpers.conj(op.inputs[0]), grad)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of {op_type} from its input."
  RegisterGradient(op_type)(rule)


def _on_output(op_type, formula):
  """Registers `formula(conj(y), grad) -> dx` for a unary op, y its output."""

  def rule(op, grad):
    with emit.after(grad):
      return formula(_helpers.conj(op.outputs[0]), grad)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of {op_type} from its output."
  RegisterGradient(op_type)(rule)


def _if_needed(op, index, grad):
  """`grad` when input `index` needs a gradient, else None."""
  return grad if _helpers.needs_grad(op, index) else None


def _mul(a, b):
  return raw.Mul(x=a, y=b)


def _add(a, b):
  return raw.AddV2(x=a, y=b)


def _sub(a, b):
  return raw.Sub(x=a, y=b)


def _div(a, b):
  """a / b (tf.math.truediv): RealDiv, through TF for integer dtypes."""
  if a.dtype.is_integer:
    return tf.math.truediv(a, b)
  return raw.RealDiv(x=a, y=b)


def _neg(t):
  """-t; an IndexedSlices stays one (its values negated)."""
  if isinstance(t, tf.IndexedSlices):
    return tf.IndexedSlices(raw.Neg(x=t.values), t.indices, t.dense_shape)
  return raw.Neg(x=t)


def _dense(t):
  """t as a Tensor (an IndexedSlices is densified, as TF's ops do)."""
  return tf.convert_to_tensor(t) if isinstance(t, tf.IndexedSlices) else t


def _cast(t, dtype):
  """tf.cast: `t` itself when it has `dtype`; IndexedSlices cast values."""
  if isinstance(t, tf.IndexedSlices):
    return tf.IndexedSlices(_cast(t.values, dtype), t.indices, t.dense_shape)
  return t if t.dtype.base_dtype == dtype else raw.Cast(x=t, DstT=dtype)


def _where(condition, t, e):
  return raw.SelectV2(condition=condition, t=t, e=e)


def _complex(real, imag):
  """real + imag i (tf.complex); 0 may stand for either part."""
  dtype = (imag if isinstance(real, int) else real).dtype
  out = tf.complex128 if dtype == tf.float64 else tf.complex64
  if isinstance(real, int):
    real = emit.const(real, dtype)
  if isinstance(imag, int):
    imag = emit.const(imag, dtype)
  return raw.Complex(real=real, imag=imag, Tout=out)


def _real(t):
  return raw.Real(input=t, Tout=t.dtype.real_dtype)


def _imag(t):
  return raw.Imag(input=t, Tout=t.dtype.real_dtype)


def _size(t):
  """tf.size(t): a constant when t's shape is static."""
  shape = _helpers.static_shape(t)
  if shape is not None:
    return emit.const(int(np.prod(shape, dtype=np.int64)), tf.int32)
  return raw.Size(input=t)


def _rank(t):
  """tf.rank(t): a constant when t's rank is static."""
  if t.shape.rank is not None:
    return emit.const(t.shape.rank, tf.int32)
  return raw.Rank(input=t)


def _item(vector, i):
  """vector[i] for a 1-D Tensor and a Python int i."""
  return raw.StridedSlice(input=vector, begin=[i], end=[i + 1], strides=[1],
                          shrink_axis_mask=1)


def _vector(items):
  """A 1-D int shape from a list of ints and scalar Tensors (packed when it
  holds a Tensor); a Tensor is returned as it is."""
  if isinstance(items, list) and any(isinstance(d, tf.Tensor) for d in items):
    return raw.Pack(values=items, axis=0)
  return items


def _fill(dims, value, dtype):
  """tf.fill(dims, value) in `dtype` (a constant when dims are known)."""
  return raw.Fill(dims=dims, value=emit.const(value, dtype))


def _nonzero_mask(x):
  """1 where x != 0 else 0, in x's dtype (no gradient flows through it)."""
  return raw.Cast(x=raw.NotEqual(x=x, y=0), DstT=x.dtype)


def _kept_shape(x, axes):
  """x's shape with the `axes` set to 1: a list when static, else a Tensor."""
  shape, static_axes = _helpers.static_shape(x), _helpers.static_value(axes)
  if shape is not None and static_axes is not None:
    return _helpers.reduced_shape(shape, static_axes)
  x_shape = _helpers.shape_of(x)
  axes = raw.FloorMod(x=_cast(raw.Reshape(tensor=axes, shape=[-1]), tf.int32),
                      y=_size(x_shape))
  return raw.TensorScatterUpdate(
      tensor=x_shape, indices=raw.Reshape(tensor=axes, shape=[-1, 1]),
      updates=raw.OnesLike(x=axes))


def _has_shape(t, shape):
  """Whether `t`'s static shape is fully known and equal to list `shape`."""
  return (isinstance(shape, list) and t.shape.is_fully_defined()
          and t.shape.as_list() == shape)


def _reshape(t, shape):
  """Reshape, skipped when t already has the static `shape`."""
  return t if _has_shape(t, shape) else raw.Reshape(tensor=t, shape=shape)


def _sum_grad_dense(op, grad):
  """grad of a reduction, broadcast back to the shape of its input (a
  scalar grad broadcasts as it is: no reshape to the kept shape)."""
  x = op.inputs[0]
  grad = tf.convert_to_tensor(grad)
  shape = _helpers.static_shape(x)
  if shape is not None and grad.shape.rank == 0:
    return raw.BroadcastTo(input=grad, shape=emit.const(shape, tf.int32)) \
        if shape else grad
  grad = _reshape(grad, _kept_shape(x, op.inputs[1]))
  if shape is not None and _has_shape(grad, list(shape)):
    return grad
  return raw.BroadcastTo(input=grad, shape=_helpers.shape_of(x))


def _prod_layout(x, axes):
  """(perm, reduced count, kept count) putting the reduced axes of x first."""
  rank, static_axes = x.shape.rank, _helpers.static_value(axes)
  shape = _helpers.static_shape(x)
  if rank is not None and static_axes is not None:
    reduced = list(dict.fromkeys(int(a) % rank
                                 for a in np.ravel(static_axes)))
    other = [i for i in range(rank) if i not in reduced]
    if shape is not None:
      return (reduced + other, int(np.prod([shape[i] for i in reduced])),
              int(np.prod([shape[i] for i in other])))
    reduced = emit.const(np.array(reduced, np.int32).reshape(len(reduced)))
    other = emit.const(np.array(other, np.int32).reshape(len(other)))
  else:
    r = _rank(x)
    reduced = raw.FloorMod(
        x=_cast(raw.Reshape(tensor=axes, shape=[-1]), tf.int32), y=r)
    other, _ = raw.ListDiff(x=raw.Range(start=0, limit=r, delta=1),
                            y=reduced, out_idx=tf.int32)
  x_shape = _helpers.shape_of(x)
  return (raw.ConcatV2(values=[reduced, other], axis=0),
          raw.Prod(input=raw.GatherV2(params=x_shape, indices=reduced, axis=0),
                   axis=[0]),
          raw.Prod(input=raw.GatherV2(params=x_shape, indices=other, axis=0),
                   axis=[0]))


def _transpose(t, perm):
  """Transpose, skipped for a static identity permutation."""
  if isinstance(perm, list) and perm == list(range(len(perm))):
    return t
  return raw.Transpose(x=t, perm=perm)


def _inverse_permutation(perm):
  if isinstance(perm, list):
    return [int(i) for i in np.argsort(perm)]
  return raw.InvertPermutation(x=perm)


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
  return _helpers.unbroadcast_elementwise(_if_needed(op, 0, grad), x,
                                   _if_needed(op, 1, grad), y)


RegisterGradient("Add")(_add_grad)
RegisterGradient("AddV2")(_add_grad)


@RegisterGradient("Sub")
def _sub_grad(op, grad):
  """d (x - y) = dx - dy."""
  x, y = op.inputs
  gy = _neg(grad) if _helpers.needs_grad(op, 1) else None
  return _helpers.unbroadcast_elementwise(_if_needed(op, 0, grad), x, gy, y)


def _div_dy(x, y, g):
  """g * ((-x / y) / y)."""
  return _mul(g, _div(_div(raw.Neg(x=x), y), y))


def_binary("Mul", dx=lambda x, y, g: _mul(g, y), dy=lambda x, y, g: _mul(x, g))
def_binary("MulNoNan", dx=lambda x, y, g: raw.MulNoNan(x=g, y=y),
           dy=lambda x, y, g: raw.MulNoNan(x=x, y=g))
def_binary("RealDiv", dx=lambda x, y, g: _div(g, y), dy=_div_dy)
def_binary("Div", dx=lambda x, y, g: _div(g, y), dy=_div_dy)
def_binary("DivNoNan", dx=lambda x, y, g: raw.DivNoNan(x=g, y=y),
           dy=lambda x, y, g: _mul(g, raw.DivNoNan(
               x=raw.DivNoNan(x=raw.Neg(x=x), y=y), y=y)))
def_binary("FloorMod", dx=lambda x, y, g: g,
           dy=lambda x, y, g: _mul(g, raw.Neg(x=raw.FloorDiv(x=x, y=y))))
def_binary("Xlogy",
           dx=lambda x, y, g: _mul(raw.Xlogy(x=_nonzero_mask(x), y=y), g),
           dy=lambda x, y, g: _mul(raw.Xdivy(x=x, y=y), g))
def_binary("Xlog1py",
           dx=lambda x, y, g: _mul(raw.Xlog1py(x=_nonzero_mask(x), y=y), g),
           dy=lambda x, y, g: _mul(raw.Xdivy(x=x, y=_add(y, 1.0)), g))
def_binary("Xdivy",
           dx=lambda x, y, g: _mul(raw.Xdivy(x=_nonzero_mask(x), y=y), g),
           dy=lambda x, y, g: _mul(raw.Xdivy(
               x=raw.Neg(x=x), y=raw.Pow(x=y, y=2)), g))
def_binary("Complex", dx=lambda x, y, g: _real(g),
           dy=lambda x, y, g: _imag(g))


@RegisterGradient("SquaredDifference")
def _squared_difference_grad(op, grad):
  """d (x - y)^2 = 2 (x - y) (dx - dy)."""
  x, y = op.inputs
  with emit.after(grad):
    gx = _mul(_mul(2.0, _dense(grad)), _sub(x, y))
    gy = raw.Neg(x=gx) if _helpers.needs_grad(op, 1) else None
    gx = gx if _helpers.needs_grad(op, 0) else None
    return _helpers.unbroadcast_elementwise(gx, x, gy, y)


@RegisterGradient("Atan2")
def _atan2_grad(op, grad):
  """d atan2(y, x) = (x dy - y dx) / (x^2 + y^2); the inputs are (y, x)."""
  y, x = op.inputs
  with emit.after(grad):
    scaled = _div(grad, _add(raw.Square(x=y), raw.Square(x=x)))
    return _helpers.unbroadcast_elementwise(_mul(x, scaled), y,
                                     _mul(raw.Neg(x=y), scaled), x)


@RegisterGradient("Pow")
def _pow_grad(op, grad):
  """d x^y = y x^(y-1) dx + x^y log(x) dy, with log(x) taken as 0 off-domain."""
  x, y = op.inputs
  gx = gy = None
  with emit.after(grad):
    cx, cy = _helpers.conj(x), _helpers.conj(y)
    if _helpers.needs_grad(op, 0):
      gx = _mul(_mul(grad, cy), raw.Pow(x=cx, y=_sub(cy, 1)))
    if _helpers.needs_grad(op, 1):
      gy = _mul(_mul(grad, _helpers.conj(op.outputs[0])), _safe_log(cx))
    return _helpers.unbroadcast_elementwise(gx, x, gy, y)


def _safe_log(x):
  """log(x) where x > 0 (x != 0 if complex), else 0."""
  mask = (raw.NotEqual(x=x, y=0) if x.dtype.is_complex
          else raw.Greater(x=x, y=0))
  safe_x = _where(mask, x, raw.OnesLike(x=x))
  return _where(mask, raw.Log(x=safe_x), raw.ZerosLike(x=x))


def _select_grad(op, grad, x_wins):
  """Routes grad to x where x_wins(x, y) holds, else to y."""
  x, y = op.inputs
  with emit.after(grad):
    zeros = raw.ZerosLike(x=grad)
    mask = x_wins(x=x, y=y)
    return _helpers.unbroadcast_elementwise(_where(mask, grad, zeros), x,
                                     _where(mask, zeros, grad), y)


@RegisterGradient("Maximum")
def _maximum_grad(op, grad):
  """grad goes to x where x >= y, else to y."""
  return _select_grad(op, grad, raw.GreaterEqual)


@RegisterGradient("Minimum")
def _minimum_grad(op, grad):
  """grad goes to x where x <= y, else to y."""
  return _select_grad(op, grad, raw.LessEqual)


@RegisterGradient("AddN")
def _add_n_grad(op, grad):
  """Every summand receives grad."""
  return [grad] * len(op.inputs)


# ----- Elementwise unary -----

def _one_minus_square(x, g):
  """1 - x^2, the 1 in g's dtype."""
  return _sub(emit.const(1, g.dtype), raw.Square(x=x))


_on_input("Abs", lambda x, g: _mul(g, raw.Sign(x=x)))
_on_input("Square", lambda x, g: _mul(g, _mul(x, emit.const(2.0, x.dtype))))
_on_output("Exp", lambda y, g: _mul(g, y))
_on_input("Expm1", lambda x, g: _mul(g, raw.Exp(x=x)))
_on_input("Log", lambda x, g: _mul(g, raw.Reciprocal(x=x)))
_on_input("Log1p", lambda x, g: _mul(g, raw.Reciprocal(x=_add(1, x))))
_on_input("Sin", lambda x, g: _mul(g, raw.Cos(x=x)))
_on_input("Cos", lambda x, g: _mul(raw.Neg(x=g), raw.Sin(x=x)))
_on_input("Tan", lambda x, g: _mul(
    raw.Square(x=raw.Reciprocal(x=raw.Cos(x=x))), g))
_on_input("Sinh", lambda x, g: _mul(g, raw.Cosh(x=x)))
_on_input("Cosh", lambda x, g: _mul(g, raw.Sinh(x=x)))
_on_output("Tanh", lambda y, g: raw.TanhGrad(y=y, dy=g))
_on_output("Sigmoid", lambda y, g: raw.SigmoidGrad(y=y, dy=g))
_on_output("Asinh", lambda y, g: _div(g, raw.Cosh(x=y)))
_on_output("Acosh", lambda y, g: _div(g, raw.Sinh(x=y)))
_on_input("Atanh", lambda x, g: _mul(g, raw.Reciprocal(
    x=_one_minus_square(x, g))))
_on_input("Asin", lambda x, g: _mul(g, raw.Reciprocal(
    x=raw.Sqrt(x=_one_minus_square(x, g)))))
_on_input("Acos", lambda x, g: _mul(raw.Neg(x=g), raw.Reciprocal(
    x=raw.Sqrt(x=_one_minus_square(x, g)))))
_on_input("Atan", lambda x, g: _mul(g, raw.Reciprocal(
    x=_add(emit.const(1, g.dtype), raw.Square(x=x)))))
_on_input("Erf", lambda x, g: _mul(
    _mul(g, emit.const(2 / np.sqrt(np.pi), g.dtype)),
    raw.Exp(x=raw.Neg(x=raw.Square(x=x)))))
_on_input("Erfc", lambda x, g: _mul(
    _mul(g, emit.const(-2 / np.sqrt(np.pi), g.dtype)),
    raw.Exp(x=raw.Neg(x=raw.Square(x=x)))))
_on_input("Lgamma", lambda x, g: _mul(g, raw.Digamma(x=x)))
_on_input("Digamma", lambda x, g: _mul(g, raw.Polygamma(
    a=emit.const(1, x.dtype), x=x)))
_on_output("Erfinv", lambda y, g: _mul(
    _mul(g, emit.const(np.sqrt(np.pi) / 2, g.dtype)),
    raw.Exp(x=raw.Square(x=y))))
_on_output("Ndtri", lambda y, g: _mul(
    _mul(g, emit.const(np.sqrt(2 * np.pi), g.dtype)),
    raw.Exp(x=_div(raw.Square(x=y), 2.0))))


@RegisterGradient("Neg")
def _neg_grad(op, grad):
  """d (-x) = -dx."""
  del op
  return _neg(grad)


@RegisterGradient("Sign")
def _sign_grad(op, grad):
  """sign is piecewise constant: a zero gradient."""
  del grad
  return raw.ZerosLike(x=op.inputs[0])


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
  with emit.after(grad):
    gx = _mul(grad, raw.Polygamma(a=_add(_helpers.conj(n), 1),
                                  x=_helpers.conj(x)))
    return None, _helpers.unbroadcast(gx, x)


# ----- Gradient ops (second order) -----

@RegisterGradient("SqrtGrad")
def _sqrt_grad_grad(op, grad):
  """out = b / (2 conj(a)): d/da = -conj(grad/a) out, d/db = grad / (2a)."""
  a, out = op.inputs[0], op.outputs[0]
  with emit.after(grad):
    ga = _div(grad, a)
    return _mul(raw.Neg(x=_helpers.conj(ga)), out), _mul(0.5, ga)


@RegisterGradient("RsqrtGrad")
def _rsqrt_grad_grad(op, grad):
  """out = -b conj(a)^3 / 2: d/da = -3/2 b a^2, d/db = -a^3 / 2."""
  a, b = op.inputs
  with emit.after(grad):
    ca, cg = _helpers.conj(a), _helpers.conj(_dense(grad))
    return (_mul(_mul(_mul(-1.5, cg), b), raw.Square(x=ca)),
            raw.RsqrtGrad(y=ca, dy=grad))


def _reciprocal_grad_grad(op, grad):
  """out = -b conj(a)^2: d/da = -2 b a, d/db = -a^2."""
  a, b = op.inputs
  with emit.after(grad):
    ca, cg = _helpers.conj(a), _helpers.conj(_dense(grad))
    return (_mul(_mul(_mul(cg, -2.0), b), ca),
            raw.ReciprocalGrad(y=ca, dy=grad))


RegisterGradient("ReciprocalGrad")(_reciprocal_grad_grad)
RegisterGradient("InvGrad")(_reciprocal_grad_grad)


@RegisterGradient("TanhGrad")
def _tanh_grad_grad(op, grad):
  """out = b (1 - a^2): d/da = -2 a b, d/db = 1 - a^2."""
  with emit.after(grad):
    a, b = (_helpers.conj(t) for t in op.inputs)
    return (_mul(_mul(_mul(_dense(grad), -2.0), b), a),
            raw.TanhGrad(y=a, dy=grad))


@RegisterGradient("SigmoidGrad")
def _sigmoid_grad_grad(op, grad):
  """out = b a (1 - a): d/da = b (1 - 2a), d/db = a (1 - a)."""
  with emit.after(grad):
    a, b = (_helpers.conj(t) for t in op.inputs)
    gb = _mul(grad, b)
    return _sub(gb, _mul(_mul(2.0, gb), a)), raw.SigmoidGrad(y=a, dy=grad)


# ----- Complex parts -----

@RegisterGradient("Real")
def _real_grad(op, grad):
  """The real part's gradient is real: grad + 0i."""
  del op
  return _complex(grad, 0)


@RegisterGradient("Imag")
def _imag_grad(op, grad):
  """The imaginary part's gradient is imaginary: 0 + grad i."""
  del op
  return _complex(0, grad)


@RegisterGradient("Conj")
def _conj_grad(op, grad):
  """conj is its own adjoint."""
  del op
  return raw.Conj(input=grad)


@RegisterGradient("Angle")
def _angle_grad(op, grad):
  """d arg(z) gives -grad / (Im z + i Re z)."""
  x = op.inputs[0]
  with emit.after(grad):
    z = raw.Reciprocal(x=_complex(_imag(x), _real(x)))
    return _mul(raw.Neg(x=_complex(grad, 0)), z)


@RegisterGradient("ComplexAbs")
def _complex_abs_grad(op, grad):
  """d |z| gives grad z / |z| (0 where z = 0)."""
  y = op.outputs[0]
  return raw.DivNoNan(
      x=_mul(_complex(grad, raw.ZerosLike(x=grad)), op.inputs[0]),
      y=_complex(y, raw.ZerosLike(x=y)))


@RegisterGradient("Cast")
def _cast_grad(op, grad):
  """Casts grad back to the source dtype; None unless both are floating."""
  src = op.inputs[0].dtype.base_dtype
  if src in _FLOATISH and grad.dtype.base_dtype in _FLOATISH:
    return _cast(grad, src)
  return None


# ----- Reductions and scans -----

def _known_sum_grad(op, grad, mean):
  """The Sum/Mean gradient of a gradient known at construction time, in
  numpy (float32/float64 only: broadcasting is exact and so is the one
  division, correctly rounded in numpy as in TF's kernel); None when the
  shapes or axes are not static or the result would not be small."""
  x_shape = _helpers.static_shape(op.inputs[0])
  y_shape = _helpers.static_shape(op.outputs[0])
  axes = _helpers.static_value(op.inputs[1])
  if (x_shape is None or y_shape is None or axes is None
      or grad.value.shape != y_shape
      or grad.dtype not in (tf.float32, tf.float64)
      or math.prod(x_shape) > emit.SMALL_CONSTANT_ELEMENTS):
    return None
  kept = _helpers.reduced_shape(x_shape, axes)
  value = np.broadcast_to(grad.value.reshape(kept), x_shape)
  if mean:
    count = math.prod(x_shape) // max(math.prod(y_shape), 1)
    value = value / grad.dtype.as_numpy_dtype(count)
  return emit.Known(value, grad.dtype)


@RegisterGradient("Sum")
@takes_known_gradients
def _sum_grad(op, grad):
  """Broadcasts grad back over the reduced axes."""
  if isinstance(grad, emit.Known):
    known = _known_sum_grad(op, grad, mean=False)
    if known is not None:
      return known, None
    grad = emit.materialize(grad)
  return _sum_grad_dense(op, grad), None


@RegisterGradient("Mean")
@takes_known_gradients
def _mean_grad(op, grad):
  """The Sum gradient divided by the number of elements averaged."""
  if isinstance(grad, emit.Known):
    known = _known_sum_grad(op, grad, mean=True)
    if known is not None:
      return known, None
    grad = emit.materialize(grad)
  sum_grad = _sum_grad_dense(op, grad)
  x_shape = _helpers.static_shape(op.inputs[0])
  y_shape = _helpers.static_shape(op.outputs[0])
  if x_shape is not None and y_shape is not None:
    factor = emit.const(np.prod(x_shape, dtype=np.int64)
                        // max(np.prod(y_shape, dtype=np.int64), 1),
                        sum_grad.dtype)
  else:
    factor = _cast(raw.FloorDiv(x=_size(op.inputs[0]), y=raw.Maximum(
        x=_size(op.outputs[0]), y=1)), sum_grad.dtype)
  return _div(sum_grad, factor), None


def _min_or_max_grad(op, grad):
  """grad is shared equally among the elements that attain the extremum."""
  x, axes = op.inputs
  kept = _kept_shape(x, axes)
  y, grad = _reshape(op.outputs[0], kept), _reshape(grad, kept)
  hits = _cast(raw.Equal(x=y, y=x), grad.dtype)
  count = raw.Sum(input=hits, axis=axes, keep_dims=True)
  return _mul(_div(hits, count), grad), None


RegisterGradient("Max")(_min_or_max_grad)
RegisterGradient("Min")(_min_or_max_grad)


@RegisterGradient("Prod")
def _prod_grad(op, grad):
  """grad times the product of all the other reduced elements."""
  x, axes = op.inputs
  grad = raw.BroadcastTo(input=_reshape(grad, _kept_shape(x, axes)),
                         shape=_helpers.shape_of(x))
  perm, reduced_num, other_num = _prod_layout(x, axes)
  permuted = _transpose(x, perm)
  flat = raw.Reshape(tensor=permuted, shape=_vector([reduced_num, other_num]))
  left = raw.Cumprod(x=flat, axis=0, exclusive=True)
  right = raw.Cumprod(x=flat, axis=0, exclusive=True, reverse=True)
  others = raw.Reshape(
      tensor=_mul(_helpers.conj(left), _helpers.conj(right)),
      shape=_helpers.shape_of(permuted))
  out = _mul(grad, _transpose(others, _inverse_permutation(perm)))
  shape = _helpers.static_shape(x)
  return _reshape(out, list(shape) if shape is not None
                  else _helpers.shape_of(x)), None


@RegisterGradient("EuclideanNorm")
def _euclidean_norm_grad(op, grad):
  """d ||x|| = x / ||x|| over the reduced axes."""
  x, axes = op.inputs
  y = op.outputs[0]
  if not op.get_attr("keep_dims"):
    kept = _kept_shape(x, axes)
    y = raw.Reshape(tensor=y, shape=kept)
    grad = raw.Reshape(tensor=grad, shape=kept)
  return _div(x, _div(y, grad)), None


@RegisterGradient("Cumsum")
def _cumsum_grad(op, grad):
  """The adjoint of a cumulative sum runs the other way."""
  return [raw.Cumsum(x=grad, axis=op.inputs[1],
                     exclusive=op.get_attr("exclusive"),
                     reverse=not op.get_attr("reverse")), None]


@RegisterGradient("CumulativeLogsumexp")
def _cumulative_logsumexp_grad(op, grad):
  """Reverse scan of grad e^(x - y), split by the sign of grad (in logs)."""
  x, axis = op.inputs
  y = op.outputs[0]
  grad = _dense(grad)
  exclusive, reverse = op.get_attr("exclusive"), op.get_attr("reverse")
  floor = grad.dtype.min

  def scan(mask, magnitude):
    log_g = _where(mask, raw.Log(x=magnitude), floor)
    return raw.Exp(x=_add(raw.CumulativeLogsumexp(
        x=_sub(log_g, y), axis=axis, exclusive=exclusive,
        reverse=not reverse), x))

  return [_sub(scan(raw.Greater(x=grad, y=0), grad),
               scan(raw.Less(x=grad, y=0), raw.Neg(x=grad))), None]


@RegisterGradient("Cumprod")
def _cumprod_grad(op, grad):
  """Reverse cumsum of grad * y, divided by x (0 where x = 0)."""
  x, axis = op.inputs
  exclusive, reverse = op.get_attr("exclusive"), op.get_attr("reverse")
  out = raw.Cumsum(x=_mul(op.outputs[0], grad), axis=axis,
                   exclusive=exclusive, reverse=not reverse)
  return [raw.DivNoNan(x=out, y=x), None]


# ----- Matrix products -----

@RegisterGradient("MatMul")
def _matmul_grad(op, grad):
  """C = op(A) op(B): dA = grad B^H, dB = A^H grad (with transposes)."""
  t_a, t_b = tf_compat.bool_attrs(op, "transpose_a", "transpose_b")
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


def _matmul(a, b, adjoint_a=False, adjoint_b=False, grad_a=False,
            grad_b=False):
  """tf.linalg.matmul with adjoint flags: BatchMatMulV2 when an operand may
  have batch axes, else MatMul of the conjugates (transposed)."""
  a, b = _dense(a), _dense(b)
  ra, rb = a.shape.rank, b.shape.rank
  if ra is None or ra > 2 or rb is None or rb > 2:
    return raw.BatchMatMulV2(x=a, y=b, adj_x=adjoint_a, adj_y=adjoint_b,
                             grad_x=grad_a, grad_y=grad_b)
  a = _helpers.conj(a) if adjoint_a else a
  b = _helpers.conj(b) if adjoint_b else b
  return raw.MatMul(a=a, b=b, transpose_a=adjoint_a, transpose_b=adjoint_b,
                    grad_a=grad_a, grad_b=grad_b)


def _batch_matmul_grads(op, grad, hints=False):
  """dx, dy of z = adj?(x) adj?(y) for batched matrices (no unbroadcast)."""
  x, y = op.inputs
  adj_x, adj_y = tf_compat.bool_attrs(op, "adj_x", "adj_y")
  hx = {"grad_a": True} if hints else {}
  hy = {"grad_b": True} if hints else {}
  gx = gy = None
  if _helpers.needs_grad(op, 0):
    if not adj_x:
      gx = _matmul(grad, y, adjoint_b=not adj_y, **hx)
    else:
      gx = _matmul(y, grad, adjoint_a=adj_y, adjoint_b=True, **hx)
  if _helpers.needs_grad(op, 1):
    if not adj_y:
      gy = _matmul(x, grad, adjoint_a=not adj_x, **hy)
    else:
      gy = _matmul(grad, x, adjoint_a=True, adjoint_b=adj_x, **hy)
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
    return raw.Shape(input=t)
  dims = t.shape.as_list()
  if None not in dims:
    return dims
  shape = raw.Shape(input=t)
  return [d if d is not None else _item(shape, i) for i, d in enumerate(dims)]


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
    return raw.BroadcastTo(input=raw.Reshape(tensor=grad, shape=_vector(kept)),
                           shape=_vector(x_dims))
  lead = [x_dims[a] if isinstance(x_dims, list) else _item(x_dims, a)
          for a in axes]
  g_dims = _dims(grad)
  if isinstance(g_dims, list):
    ones, full = [1] * len(reduced) + g_dims, lead + g_dims
  else:
    ones = raw.ConcatV2(values=[[1] * len(reduced), g_dims], axis=0)
    full = raw.ConcatV2(values=[_vector(lead), g_dims], axis=0)
  spread = raw.BroadcastTo(input=raw.Reshape(tensor=grad, shape=_vector(ones)),
                           shape=_vector(full))
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
    return raw.Reshape(tensor=raw.Sum(input=g, axis=axes), shape=x_shape)
  sx, sg = _helpers.shape_of(x), _helpers.shape_of(g)
  axes, _ = raw.BroadcastGradientArgs(
      s0=_middle(sx, start, tail), s1=_middle(sg, start, tail))
  return raw.Reshape(tensor=raw.Sum(input=g, axis=_add(start, axes)),
                     shape=sx)


def _middle(shape, start, tail):
  """shape[start:size(shape) - tail] for a 1-D shape Tensor."""
  end = raw.Pack(values=[_sub(_size(shape), tail)], axis=0)
  return raw.StridedSlice(input=shape, begin=[start], end=end, strides=[1])


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
    cx, cy = _helpers.conj(x), _helpers.conj(y)
  gx = _einsum_operand_grad(grad, out_subs, cy, y_subs, cx, x_subs)
  gy = _einsum_operand_grad(grad, out_subs, cx, x_subs, cy, y_subs)
  if _ELLIPSIS not in out_subs:
    return gx, gy
  return _einsum_unbroadcast(gx, x, x_subs), _einsum_unbroadcast(gy, y, y_subs)


# ----- Special functions -----

_on_input("Expint", lambda x, g: _div(_mul(g, raw.Exp(x=x)), x))
_on_input("FresnelCos", lambda x, g: _mul(g, raw.Cos(
    x=_mul(np.pi / 2.0, raw.Square(x=x)))))
_on_input("FresnelSin", lambda x, g: _mul(g, raw.Sin(
    x=_mul(np.pi / 2.0, raw.Square(x=x)))))
_on_input("Spence", lambda x, g: _mul(g, _where(
    raw.Equal(x=x, y=1.0), raw.Neg(x=raw.OnesLike(x=x)),
    _div(raw.Log(x=x), _sub(1, x)))))
_on_input("BesselI0", lambda x, g: _mul(g, raw.BesselI1(x=x)))
_on_input("BesselK0", lambda x, g: _mul(g, raw.Neg(x=raw.BesselK1(x=x))))
_on_input("BesselJ0", lambda x, g: _mul(g, raw.Neg(x=raw.BesselJ1(x=x))))
_on_input("BesselY0", lambda x, g: _mul(g, raw.Neg(x=raw.BesselY1(x=x))))


def _on_input_output(op_type, formula):
  """Registers `formula(x, y, grad) -> dx` for a real unary op."""

  def rule(op, grad):
    with emit.after(grad):
      return formula(op.inputs[0], op.outputs[0], grad)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"Gradient of {op_type} from its input and output."
  RegisterGradient(op_type)(rule)


def _at_zero(x, value, elsewhere):
  """`elsewhere`, with the limit `value` substituted where x == 0."""
  return _where(raw.Equal(x=x, y=0.0), emit.const(value, x.dtype), elsewhere)


def _minus_y_over_x(minuend, x, y):
  """minuend - y / x."""
  return _sub(minuend, _div(y, x))


_on_input_output("Dawsn", lambda x, y, g: _mul(
    g, _sub(1.0, _mul(_mul(2, x), y))))
_on_input_output("BesselI0e", lambda x, y, g: _mul(g, _sub(
    raw.BesselI1e(x=x), _mul(raw.Sign(x=x), y))))
_on_input_output("BesselI1", lambda x, y, g: _mul(g, _at_zero(
    x, 1.0, _minus_y_over_x(raw.BesselI0(x=x), x, y))))
_on_input_output("BesselI1e", lambda x, y, g: _mul(g, _at_zero(
    x, 0.5, _sub(raw.BesselI0e(x=x), _mul(y, _add(
        raw.Sign(x=x), raw.Reciprocal(x=x)))))))
_on_input_output("BesselK0e", lambda x, y, g: _mul(g, _sub(
    y, raw.BesselK1e(x=x))))
_on_input_output("BesselK1", lambda x, y, g: _mul(g, _minus_y_over_x(
    raw.Neg(x=raw.BesselK0(x=x)), x, y)))
_on_input_output("BesselK1e", lambda x, y, g: _mul(g, _sub(
    _mul(y, _sub(1.0, raw.Reciprocal(x=x))), raw.BesselK0e(x=x))))
_on_input_output("BesselJ1", lambda x, y, g: _mul(g, _at_zero(
    x, 0.5, _minus_y_over_x(raw.BesselJ0(x=x), x, y))))
_on_input_output("BesselY1", lambda x, y, g: _mul(g, _minus_y_over_x(
    raw.BesselY0(x=x), x, y)))


def _igamma_partials(op, grad):
  """Partials of the lower regularized gamma P(a, x), unbroadcast."""
  a, x = op.inputs
  with emit.after(grad):
    ga = _mul(raw.IgammaGradA(a=a, x=x), grad)
    gx = _mul(raw.Exp(x=_sub(_add(raw.Neg(x=x), _mul(
        _sub(a, 1), raw.Log(x=x))), raw.Lgamma(x=a))), grad)
    return _helpers.unbroadcast_elementwise(ga, a, gx, x)


@RegisterGradient("Igamma")
def _igamma_grad(op, grad):
  """dP/dx = x^(a-1) e^-x / Gamma(a); dP/da by IgammaGradA (no gradient)."""
  return _igamma_partials(op, grad)


@RegisterGradient("Igammac")
def _igammac_grad(op, grad):
  """Q = 1 - P: the negated Igamma partials."""
  ga, gx = _igamma_partials(op, grad)
  return _neg(ga), _neg(gx)


@RegisterGradient("Betainc")
def _betainc_grad(op, grad):
  """d I_x(a, b)/dx = x^(a-1) (1-x)^(b-1) / B(a, b); no gradient for a, b."""
  a, b, x = op.inputs
  with emit.after(grad):
    log_beta = _sub(_add(raw.Lgamma(x=a), raw.Lgamma(x=b)),
                    raw.Lgamma(x=_add(a, b)))
    gx = _mul(raw.Exp(x=_sub(_add(
        raw.Xlog1py(x=_sub(b, 1), y=raw.Neg(x=x)),
        raw.Xlogy(x=_sub(a, 1), y=x)), log_beta)), grad)
    return None, None, _helpers.unbroadcast(gx, x)


@RegisterGradient("Zeta")
def _zeta_grad(op, grad):
  """d zeta(x, q)/dq = -x zeta(x + 1, q); no gradient for x."""
  x, q = op.inputs
  with emit.after(grad):
    gq = _mul(_mul(raw.Neg(x=x), raw.Zeta(x=_add(x, 1), q=q)), grad)
    return None, _helpers.unbroadcast(gq, q)


@RegisterGradient("NextAfter")
def _next_after_grad(op, grad):
  """nextafter(x1, x2) moves x1 by one ulp: (grad, 0)."""
  x1, x2 = op.inputs
  return _helpers.unbroadcast(grad, x1), raw.ZerosLike(x=x2)


@RegisterGradient("Cross")
def _cross_grad(op, grad):
  """d (u x v) = du x v + u x dv: (v x grad, grad x u)."""
  u, v = op.inputs
  return raw.Cross(a=v, b=grad), raw.Cross(a=grad, b=u)


# ----- Segment reductions -----

def _row_shape(ids, like):
  """ids.shape + [1] * (rank(like) - rank(ids)): a list when static."""
  ids_shape, rank = _helpers.static_shape(ids), like.shape.rank
  if ids_shape is not None and rank is not None:
    return list(ids_shape) + [1] * (rank - len(ids_shape))
  tail = _fill(raw.Pack(values=[_sub(_rank(like), _rank(ids))], axis=0), 1,
               tf.int32)
  return raw.ConcatV2(values=[_helpers.shape_of(ids), tail], axis=0)


def _segment_ones(ids, data, dtype):
  """Ones of shape ids.shape + [1] * (rank(data) - 1): one count per row."""
  return _fill(_row_shape(ids, data), 1, dtype)


def _valid_rows(ids, like):
  """ids >= 0, shaped to broadcast against `like` (rows indexed by ids)."""
  valid = raw.GreaterEqual(x=ids, y=0)
  return raw.Reshape(tensor=valid, shape=_row_shape(ids, like))


def _gather(params, indices):
  return raw.GatherV2(params=params, indices=indices, axis=0)


def _gather_valid(params, ids, valid=None):
  """params[ids] with zero rows where ids < 0 (dropped by unsorted ops)."""
  gathered = _gather(params, raw.Maximum(x=ids, y=0))
  if valid is None:
    valid = _valid_rows(ids, gathered)
  return _where(valid, gathered, emit.const(0, gathered.dtype))


def _extremum_share(data, hits, grad, ids, count_fn, gather_fn):
  """grad of a segment max/min, split evenly among the rows attaining it."""
  count = count_fn(_cast(hits, grad.dtype))
  shared = gather_fn(_div(grad, count))
  return _where(hits, shared, raw.ZerosLike(x=data))


def _prod_partials(data, prod, ids, prod_fn, sum_fn, gather_fn):
  """d prod / d data per row: prod / x, or the product of the others at a
  single zero (segments with two or more zeros have zero partials)."""
  is_zero = raw.Equal(x=data, y=0)
  zeros_in = sum_fn(_cast(is_zero, tf.int32))
  safe = _where(is_zero, raw.OnesLike(x=data), data)
  others = gather_fn(prod_fn(safe))
  partial = _where(is_zero, others, _div(gather_fn(prod), safe))
  return partial, raw.Greater(x=zeros_in, y=1)


def _segment_sum(data, ids):
  return raw.SegmentSum(data=data, segment_ids=ids)


@RegisterGradient("SegmentSum")
def _segment_sum_grad(op, grad):
  """Each row receives its segment's grad."""
  return _gather(grad, op.inputs[1]), None


@RegisterGradient("SegmentMean")
def _segment_mean_grad(op, grad):
  """Each row receives its segment's grad over the segment's size."""
  data, ids = op.inputs
  count = _segment_sum(_segment_ones(ids, data, grad.dtype), ids)
  return _gather(_div(grad, count), ids), None


def _segment_min_or_max_grad(op, grad):
  """grad goes to the rows equal to their segment's extremum, shared evenly."""
  data, ids = op.inputs
  hits = raw.Equal(x=data, y=_gather(op.outputs[0], ids))
  return _extremum_share(data, hits, grad, ids,
                         lambda c: _segment_sum(c, ids),
                         lambda t: _gather(t, ids)), None


RegisterGradient("SegmentMax")(_segment_min_or_max_grad)
RegisterGradient("SegmentMin")(_segment_min_or_max_grad)


@RegisterGradient("SegmentProd")
def _segment_prod_grad(op, grad):
  """grad times the product of the segment's other rows."""
  data, ids = op.inputs
  partial, dead = _prod_partials(
      data, op.outputs[0], ids,
      lambda t: raw.SegmentProd(data=t, segment_ids=ids),
      lambda t: _segment_sum(t, ids), lambda t: _gather(t, ids))
  grad = _where(dead, raw.ZerosLike(x=grad), grad)
  return _mul(_gather(grad, ids), partial), None


@RegisterGradient("UnsortedSegmentSum")
def _unsorted_segment_sum_grad(op, grad):
  """Each row receives its segment's grad (zero for negative ids)."""
  return _gather_valid(grad, op.inputs[1]), None, None


def _unsorted_segment_sum(data, ids, num):
  return raw.UnsortedSegmentSum(data=data, segment_ids=ids, num_segments=num)


def _unsorted_segment_min_or_max_grad(op, grad):
  """grad goes to the rows equal to their segment's extremum, shared evenly;
  rows with negative ids get zero."""
  data, ids, num = op.inputs
  gathered = _gather(op.outputs[0], raw.Maximum(x=ids, y=0))
  valid = _valid_rows(ids, gathered)
  hits = raw.LogicalAnd(x=raw.Equal(x=data, y=gathered), y=valid)
  return _extremum_share(
      data, hits, grad, ids,
      lambda c: _unsorted_segment_sum(c, ids, num),
      lambda t: _gather_valid(t, ids, valid)), None, None


RegisterGradient("UnsortedSegmentMax")(_unsorted_segment_min_or_max_grad)
RegisterGradient("UnsortedSegmentMin")(_unsorted_segment_min_or_max_grad)


@RegisterGradient("UnsortedSegmentProd")
def _unsorted_segment_prod_grad(op, grad):
  """grad times the product of the segment's other rows (zero for negative
  ids)."""
  data, ids, num = op.inputs
  clipped = raw.Maximum(x=ids, y=0)
  partial, dead = _prod_partials(
      data, op.outputs[0], ids,
      lambda t: raw.UnsortedSegmentProd(data=t, segment_ids=ids,
                                        num_segments=num),
      lambda t: _unsorted_segment_sum(t, ids, num),
      lambda t: _gather(t, clipped))
  grad = _where(dead, raw.ZerosLike(x=grad), grad)
  return _mul(_gather_valid(grad, ids), partial), None, None


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
    dim0 = _item(raw.Shape(input=data), 0) if dim0 is None else dim0
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
  below, above = raw.Less(x=x, y=lo), raw.Greater(x=x, y=hi)
  zero = emit.const(0, grad.dtype)
  inside = _where(raw.LogicalOr(x=below, y=above), zero, grad)
  return (inside, _helpers.unbroadcast(_where(below, grad, zero), lo),
          _helpers.unbroadcast(_where(above, grad, zero), hi))


# ----- Sparse-flagged matrix product -----

def _sparse_matmul(x, y, dtype, flags, transpose_a=False, transpose_b=False):
  """SparseMatMul of x and y (each with its sparsity hint), cast to dtype;
  y is transposed up front (the kernel's transpose_b is avoided)."""
  y = raw.Transpose(x=y, perm=[1, 0]) if transpose_b else y
  out = raw.SparseMatMul(a=x, b=y, transpose_a=transpose_a,
                         a_is_sparse=flags[0], b_is_sparse=flags[1])
  return _cast(out, dtype)


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
