"""Helpers shared by the rule families: static shapes, un-broadcasting,
complex conjugation. Ops are built through `tfgrad.emit` (the cheap path)."""

import math

import numpy as np
import tensorflow as tf

from tfgrad import emit
from tfgrad import rule_context
from tfgrad.emit import raw


def needs_grad(op, index):
  """False when input `index` of `op` leads to no x, so its gradient would
  be a dead op (the engine says so for the rule call running now)."""
  return index not in rule_context.unneeded_inputs(op)


def after_grads(*grads):
  """For rules built with TF's API: `tf.control_dependencies` on the given
  gradients (None skipped), so factors computed from forward values alone
  wait for the gradient, as `emit.after` does for `raw` ops."""
  return tf.control_dependencies([g for g in grads if g is not None])


def static_shape(t):
  """`t`'s shape as a tuple of ints, or None unless fully known."""
  shape = t.shape
  if shape.rank is None or not shape.is_fully_defined():
    return None
  return tuple(shape.as_list())


# TensorProto field of the values of an integer Const, by dtype
_INT_VALUE_FIELDS = {tf.int32: "int_val", tf.int64: "int64_val"}


def static_value(t):
  """`tf.get_static_value(t)`. The value of an int32/int64 Const (axes,
  perms, shapes) is read from its TensorProto here, and `t` marked
  unfeedable as TF marks it: TF's generic decoding costs about as much as
  building an op. Anything else goes to TF."""
  field = _INT_VALUE_FIELDS.get(getattr(t, "dtype", None))
  op = getattr(t, "op", None) if field else None  # (eager: no op)
  if op is None or op.type != "Const" or not isinstance(t, tf.Tensor):
    return tf.get_static_value(t)
  value = _int_proto_value(op.get_attr("value"), t.dtype, field)
  if value is None:
    return tf.get_static_value(t)
  t.graph.prevent_feeding(t)
  return value


def _int_proto_value(proto, dtype, field):
  """The array an integer TensorProto holds (values listed once stand for
  the elements after them, as in TF's encoding); None when it is not a
  well-formed one of `dtype`."""
  shape = [d.size for d in proto.tensor_shape.dim]
  count = math.prod(shape)
  np_dtype = dtype.as_numpy_dtype
  if proto.dtype != dtype.as_datatype_enum:
    return None
  if proto.tensor_content:
    if len(proto.tensor_content) != count * np.dtype(np_dtype).itemsize:
      return None
    return np.frombuffer(proto.tensor_content, np_dtype).reshape(shape).copy()
  values = list(getattr(proto, field))
  if len(values) > count:
    return None
  if not values:
    return np.zeros(shape, np_dtype)
  values.extend([values[-1]] * (count - len(values)))
  return np.array(values, np_dtype).reshape(shape)


def shape_of(t):
  """`t`'s shape: a constant when static, else a Shape op (int32)."""
  static = static_shape(t)
  if static is not None:
    return emit.const(static, tf.int32)
  return raw.Shape(input=t)


def conj(t):
  """conj(t) for complex `t`; `t` itself (no op) otherwise."""
  return raw.Conj(input=t) if t.dtype.is_complex else t


def _static_reduction_axes(from_shape, to_shape):
  """Axes of `from_shape` to sum so the result broadcasts to `to_shape`."""
  lead = len(from_shape) - len(to_shape)
  axes = list(range(lead))
  for i, dim in enumerate(to_shape):
    if dim == 1 and from_shape[lead + i] != 1:
      axes.append(lead + i)
  return axes


def _partial_reduction_axes(g_shape, x_shape, other):
  """Axes of a gradient of static shape `g_shape` (the broadcast of x with
  `other`, when given) to sum for `x_shape`, from the known dims; None
  when an unknown dim of x leaves it open (it may be 1 where the
  gradient's is not)."""
  if g_shape.rank is None or x_shape.rank is None:
    return None
  lead = g_shape.rank - x_shape.rank
  if lead < 0:
    return None
  other_dims = None if other is None or other.rank is None \
      else other.as_list()
  axes = list(range(lead))
  for i, dim in enumerate(x_shape.as_list()):
    g_dim = g_shape[lead + i]
    if dim == 1 and g_dim != 1:
      axes.append(lead + i)
    elif dim is None and g_dim != 1:
      from_right = x_shape.rank - i
      if other_dims is None or (from_right <= len(other_dims)
                                and other_dims[-from_right] != 1):
        return None  # x's dim may be 1 under a larger one of `other`
  return axes


def _sum_axes(grad, axes, lead):
  """Sums `grad` over `axes`, dropping the first `lead` of them only."""
  if len(axes) == lead:
    return raw.Sum(input=grad, axis=emit.const(axes, tf.int32))
  summed = raw.Sum(input=grad, axis=emit.const(axes, tf.int32),
                   keep_dims=True)
  if lead:
    summed = raw.Squeeze(input=summed, axis=list(range(lead)))
  return summed


def unbroadcast(grad, x, other=None):
  """Sums `grad` (shaped like a broadcast result) down to `x`'s shape.
  `other` is the shape of the operand x was broadcast with, when there is
  one: it settles which of x's unknown dims were broadcast. Static dims
  decide the axes where they can; the result has x's static shape."""
  if grad is None:
    return None
  x_shape, g_shape = static_shape(x), static_shape(grad)
  if x_shape is not None and x_shape == g_shape:
    return grad
  if x_shape is not None and g_shape is not None:
    axes = _static_reduction_axes(g_shape, x_shape)
    summed = raw.Sum(input=grad, axis=emit.const(axes, tf.int32)) \
        if axes else grad
    if tuple(summed.shape.as_list()) == x_shape:
      return summed
    return raw.Reshape(tensor=summed, shape=emit.const(x_shape, tf.int32))
  axes = _partial_reduction_axes(grad.shape, x.shape, other)
  if axes == []:  # pylint: disable=g-explicit-bool-comparison
    if isinstance(grad, tf.Tensor):
      grad.set_shape(x.shape)  # as backprop would: it is x's gradient
    return grad
  if axes is None:
    x_dyn = raw.Shape(input=x)
    axes, _ = raw.BroadcastGradientArgs(s0=x_dyn, s1=raw.Shape(input=grad))
    summed = raw.Reshape(tensor=raw.Sum(input=grad, axis=axes), shape=x_dyn)
  else:
    summed = _sum_axes(grad, axes, grad.shape.rank - x.shape.rank)
  summed.set_shape(x.shape)
  return summed


def _broadcast_axes(shape, other):
  """Axes of the broadcast of `shape` with `other` along which `shape` was
  broadcast, and that broadcast's rank, from static dims alone; None when
  they depend on dims known only at run time. TF's rules decide the same
  way (`SmartBroadcastGradientArgs`), so the reduction, and whether there
  is one at all, is theirs."""
  if shape.rank is None or other.rank is None:
    return None
  rank = max(shape.rank, other.rank)
  dims = [1] * (rank - shape.rank) + shape.as_list()
  other_dims = [1] * (rank - other.rank) + other.as_list()
  axes = []
  for axis, (dim, other_dim) in enumerate(zip(dims, other_dims)):
    if dim == 1 and other_dim != 1:
      axes.append(axis)
    elif other_dim == 1 and dim != 1:
      continue
    elif dim is None or other_dim is None:
      return None
  return axes, rank


def unbroadcast_operand(grad, x, other):
  """The gradient of operand `x` of an elementwise op that broadcast it
  with `other`, from `grad` (shaped like the op's output): summed over the
  axes along which x was broadcast, as decided from x's and other's
  shapes. Where no axis was, `grad` passes as it is (a gradient whose
  shape is not x's then fails backprop's shape check, as under TF)."""
  if grad is None:
    return None
  found = _broadcast_axes(x.shape, other.shape)
  if found is None:
    x_dyn = raw.Shape(input=x)
    axes, _ = raw.BroadcastGradientArgs(s0=x_dyn, s1=raw.Shape(input=other))
    return raw.Reshape(tensor=raw.Sum(input=grad, axis=axes, keep_dims=True),
                       shape=x_dyn)
  axes, rank = found
  lead = rank - x.shape.rank
  if not axes and not lead:
    return grad
  axes = sorted(set(range(lead)).union(axes))
  if grad.shape.rank != rank:  # a malformed grad_ys entry: TF's steps
    summed = raw.Sum(input=grad, axis=emit.const(axes, tf.int32),
                     keep_dims=True)
    return raw.Reshape(tensor=summed, shape=shape_of(x))
  return _sum_axes(grad, axes, lead)


def unbroadcast_elementwise(gx, x, gy, y):
  """`unbroadcast_operand` for both operands of a broadcasting
  elementwise binary op."""
  return unbroadcast_operand(gx, x, y), unbroadcast_operand(gy, y, x)


def unbroadcast_pair(gx, x, gy, y):
  """`unbroadcast` for both operands of a broadcasting binary op."""
  return unbroadcast(gx, x, y.shape), unbroadcast(gy, y, x.shape)


def reduced_shape(input_shape, axes):
  """Static shape of a keepdims reduction of `input_shape` over `axes`."""
  rank = len(input_shape)
  axes = {int(a) % rank for a in np.ravel(axes)} if rank else set()
  return [1 if i in axes else d for i, d in enumerate(input_shape)]
