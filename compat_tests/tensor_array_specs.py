"""Specs for ops/tensor_array_grad.py rules.

The arrays are built from raw V3 ops: in a TF2 graph, tf.TensorArray is
backed by TensorLists instead. Outputs whose leading dimension the ops leave
unknown are reshaped to their static shape.
"""

import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops

_FIRST_ORDER = ("a second derivative needs the gradient of a gradient "
                "TensorArray, which the TensorArrayGradV3 kernel refuses "
                "('Wrong input container'), in stock TF as well")


def _spec(*args, **kwargs):
  return Spec(*args, order=1, note=_FIRST_ORDER, **kwargs)


class _Array:
  """A TensorArrayV3 and its current flow."""

  def __init__(self, dtype, size, element_shape=None, dynamic=False):
    shape = tf.TensorShape(element_shape)
    self.dtype = dtype
    self.handle, self.flow = raw.TensorArrayV3(
        size=size, dtype=dtype, element_shape=shape, dynamic_size=dynamic,
        clear_after_read=False)

  def write(self, index, value):
    self.flow = raw.TensorArrayWriteV3(handle=self.handle, index=index,
                                       value=value, flow_in=self.flow)
    return self

  def scatter(self, indices, value):
    self.flow = raw.TensorArrayScatterV3(handle=self.handle, indices=indices,
                                         value=value, flow_in=self.flow)
    return self

  def split(self, value, lengths):
    self.flow = raw.TensorArraySplitV3(
        handle=self.handle, value=value,
        lengths=tf.constant(lengths, tf.int64), flow_in=self.flow)
    return self

  def read(self, index, shape):
    return tf.reshape(raw.TensorArrayReadV3(
        handle=self.handle, index=index, flow_in=self.flow,
        dtype=self.dtype), shape)

  def gather(self, indices, shape):
    return tf.reshape(raw.TensorArrayGatherV3(
        handle=self.handle, indices=indices, flow_in=self.flow,
        dtype=self.dtype), shape)

  def concat(self, shape):
    value, _ = raw.TensorArrayConcatV3(handle=self.handle, flow_in=self.flow,
                                       dtype=self.dtype)
    return tf.reshape(value, shape)


def _write_read(a, b):
  """Entry 0 read twice: its gradients add up in the gradient array."""
  ta = _Array(a.dtype, 2, a.shape).write(0, a).write(1, b)
  r0, r1 = ta.read(0, a.shape), ta.read(1, a.shape)
  return r0 * r1 + r0


def _write_read_one(a, b):
  """Entry 1 is never read: b gets zeros from the gradient array."""
  ta = _Array(a.dtype, 2, a.shape).write(0, a).write(1, b)
  return tf.sin(ta.read(0, a.shape))


def _dynamic_write_read(a):
  ta = _Array(a.dtype, 0, dynamic=True).write(0, a).write(2, 2.0 * a)
  return [ta.read(2, a.shape), ta.read(0, a.shape) ** 2]


def _unstack_stack(x):
  n = x.shape[0]
  ta = _Array(x.dtype, n, x.shape[1:]).scatter(tf.range(n), x)
  return ta.gather(tf.range(n), x.shape) * x


def _scatter_gather(x):
  ta = _Array(x.dtype, 3, x.shape[1:]).scatter([2, 0], x)
  return ta.gather([0, 2, 0], [3] + x.shape[1:].as_list())


def _scatter_read(x):
  ta = _Array(x.dtype, 4).scatter([3, 1], x)
  return [ta.read(1, x.shape[1:]), ta.read(3, x.shape[1:]) ** 2]


def _write_gather(a, b):
  ta = _Array(a.dtype, 2, a.shape).write(1, a).write(0, b)
  return ta.gather([1, 0], [2] + a.shape.as_list())


def _split_concat(x):
  ta = _Array(x.dtype, 2).split(x, [2, 3])
  return ta.concat(x.shape) * x


def _split_read(x):
  ta = _Array(x.dtype, 3).split(x, [1, 2, 1])
  return [ta.read(1, [2, 2]), ta.read(0, [1, 2])]


def _write_concat(a, b):
  ta = _Array(a.dtype, 2).write(0, a).write(1, b)
  return ta.concat([a.shape[0] + b.shape[0]] + a.shape[1:].as_list())


def _api_unstack_stack(x):
  """tf.TensorArray's own methods (V3 ops when control flow v1 is on)."""
  n = x.shape[0]
  ta = tf.TensorArray(x.dtype, size=n + 1, clear_after_read=False)
  ta = ta.unstack(x)
  ta = ta.write(n, ta.read(1) * ta.read(0))
  return tf.reshape(ta.stack(), [n + 1] + x.shape[1:].as_list())


def _api_split_concat(x):
  ta = tf.TensorArray(x.dtype, size=2, infer_shape=False).split(x, [3, 1])
  return tf.reshape(ta.concat(), x.shape) ** 2


SPECS = [
    _spec("TensorArrayReadV3", _write_read, [(2,), (2,)], "read_twice"),
    _spec("TensorArrayReadV3", _write_read_one, [(2, 2), (2, 2)],
         "unread_entry"),
    _spec("TensorArrayReadV3", _dynamic_write_read, [(3,)], "dynamic_size"),
    _spec("TensorArrayWriteV3", _write_gather, [(2,), (2,)], "gathered"),
    _spec("TensorArrayWriteV3", _write_concat, [(1, 2), (2, 2)], "concatenated"),
    _spec("TensorArrayScatterV3", _unstack_stack, [(3, 2)], "unstack_stack"),
    _spec("TensorArrayScatterV3", _scatter_read, [(2, 3)], "read"),
    _spec("TensorArrayGatherV3", _scatter_gather, [(2, 2)]),
    _spec("TensorArraySplitV3", _split_read, [(4, 2)], "read"),
    _spec("TensorArraySplitV3", _split_concat, [(5,)], "concat"),
    _spec("TensorArrayConcatV3", _write_concat, [(2, 3), (1, 3)]),
    _spec("TensorArrayScatterV3", _api_unstack_stack, [(3, 2)],
          "tf_tensor_array"),
    _spec("TensorArraySplitV3", _api_split_concat, [(4,)], "tf_tensor_array"),
]
