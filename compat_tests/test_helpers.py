"""The rules' shared helpers (ops/_helpers.py) against the TF functions
they stand in for."""

import numpy as np
import pytest
import tensorflow as tf

from tfgrad.ops import _helpers
from tensorflow.core.framework import tensor_pb2


def _const_from_proto(proto):
  """A Const whose `value` is exactly `proto` (TF's own encoders choose
  between `tensor_content` and a repeated-last-value list by size)."""
  return tf.raw_ops.Const(value=proto, dtype=tf.as_dtype(proto.dtype))


_CASES = {
    "scalar int32": lambda: tf.constant(3),
    "axes": lambda: tf.constant([0, 2, -1]),
    "int64 matrix": lambda: tf.constant([[1, 2], [3, 4]], tf.int64),
    "empty": lambda: tf.constant([], tf.int32),
    "repeated value": lambda: tf.constant(7, tf.int32, shape=[3, 4]),
    "large (tensor_content)": lambda: tf.constant(np.arange(300, dtype=np.int32)),
    "float (to TF)": lambda: tf.constant([1.5, 2.5]),
    "bool (to TF)": lambda: tf.constant([True, False]),
    "computed (to TF)": lambda: tf.shape(tf.zeros([2, 3])),
    "placeholder (to TF)": lambda: tf.compat.v1.placeholder(tf.int32, [2]),
    "last value repeated in the proto": lambda: _const_from_proto(
        tensor_pb2.TensorProto(
            dtype=tf.int32.as_datatype_enum, int_val=[1, 2],
            tensor_shape=tf.TensorShape([5]).as_proto())),
    "zeros by omission in the proto": lambda: _const_from_proto(
        tensor_pb2.TensorProto(
            dtype=tf.int64.as_datatype_enum,
            tensor_shape=tf.TensorShape([2, 2]).as_proto())),
}


@pytest.mark.parametrize("case", sorted(_CASES))
def test_static_value_is_tf_get_static_value(case):
  ours_graph, tf_graph = tf.Graph(), tf.Graph()
  with ours_graph.as_default():
    ours_t = _CASES[case]()
    ours = _helpers.static_value(ours_t)
  with tf_graph.as_default():
    tf_t = _CASES[case]()
    expected = tf.get_static_value(tf_t)
  if expected is None:
    assert ours is None
  else:
    assert isinstance(ours, np.ndarray)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)
    assert ours.flags.writeable == expected.flags.writeable
  # TF marks a tensor whose value it read as not feedable; so do we
  assert ours_graph.is_feedable(ours_t) == tf_graph.is_feedable(tf_t)
