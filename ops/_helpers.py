"""Helpers shared by the rule families: static shapes, un-broadcasting,
complex conjugation. Ops are built through `tfgrad.emit` (the cheap path)."""

import numpy as np
import tensorflow as tf

from tfgrad import emit
from tfgrad.emit import raw


def needs_grad(op, index):
  """False when input `index` of `op` leads to no x, so its gradient would
  be a dead op. Backprop says so through `op.skip_input_indices` (TF's own
  convention, which TF's rules read too)."""
  skip = getattr(op, "skip_input_indices", None)
  return not skip or index not in skip


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


def unbroadcast(grad, x):
  """Sums `grad` (shaped like a broadcast result) down to `x`'s shape."""
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
  x_dyn = raw.Shape(input=x)
  axes, _ = raw.BroadcastGradientArgs(s0=x_dyn, s1=raw.Shape(input=grad))
  return raw.Reshape(tensor=raw.Sum(input=grad, axis=axes), shape=x_dyn)


def _surely_not_broadcast(x, other):
  """True when the static shapes alone show that `x` was not broadcast
  against `other`: ranks known, x's at least other's, and along each axis
  other's dim is 1 (x's not) or both dims are equal and known. Stock TF
  (`SmartBroadcastGradientArgs`) then passes the gradient on unreduced,
  keeping its static shape; a reshape to Shape(x) would lose it."""
  x_rank, o_rank = x.shape.rank, other.shape.rank
  if x_rank is None or o_rank is None or x_rank < o_rank:
    return False
  x_dims = x.shape.as_list()
  o_dims = [1] * (x_rank - o_rank) + other.shape.as_list()
  for xd, od in zip(x_dims, o_dims):
    if xd == 1 and od != 1:
      return False
    if od == 1 and xd != 1:
      continue
    if xd is None or od is None:
      return False
  return True


def unbroadcast_pair(gx, x, gy, y):
  """`unbroadcast` for both operands of a broadcasting binary op (a
  gradient passes unchanged where the static shapes show no broadcast)."""
  def one(g, t, other):
    if g is not None and static_shape(t) is None and _surely_not_broadcast(
        t, other):
      return g
    return unbroadcast(g, t)
  return one(gx, x, y), one(gy, y, x)


def reduced_shape(input_shape, axes):
  """Static shape of a keepdims reduction of `input_shape` over `axes`."""
  rank = len(input_shape)
  axes = {int(a) % rank for a in np.ravel(axes)} if rank else set()
  return [1 if i in axes else d for i, d in enumerate(input_shape)]
