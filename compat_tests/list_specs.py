"""Specs for ops/list_grad.py rules: lists built from the inputs, read back
into tensors (reshaped to a static shape where the list op leaves the
leading dimension unknown)."""

import tensorflow as tf
from tensorflow.python.ops import list_ops

from compat_tests.spec import Spec

raw = tf.raw_ops

_WITH_COMPLEX = ("float64", "float32", "complex128")


def _list(x):
  return list_ops.tensor_list_from_tensor(x, element_shape=x.shape[1:])


def _stack(handle, like, rows):
  """The list's items stacked, shaped (rows,) + like's item shape."""
  items = list_ops.tensor_list_stack(handle, like.dtype,
                                     element_shape=like.shape[1:])
  return tf.reshape(items, [rows] + like.shape[1:].as_list())


def _from_tensor_stack(x):
  return _stack(_list(x), x, x.shape[0])


def _get_item(x):
  handle = _list(x)
  return [list_ops.tensor_list_get_item(handle, i, x.dtype,
                                        element_shape=x.shape[1:])
          for i in (2, 0)]


def _set_item(x, v):
  return _stack(list_ops.tensor_list_set_item(_list(x), 1, v), x, 3)


def _set_item_resized(x, v):
  handle = list_ops.tensor_list_set_item(_list(x), 4, v,
                                         resize_if_index_out_of_bounds=True)
  return _stack(handle, x, 5)


def _push_back(x, v):
  return _stack(raw.TensorListPushBack(input_handle=_list(x), tensor=v), x, 4)


def _push_back_empty(v):
  handle = list_ops.empty_tensor_list(v.shape, v.dtype)
  handle = raw.TensorListPushBack(input_handle=handle, tensor=v)
  handle = raw.TensorListPushBack(input_handle=handle, tensor=2.0 * v)
  return _stack(handle, v[tf.newaxis], 2)


def _pop_back(x):
  rest, item = list_ops.tensor_list_pop_back(_list(x), x.dtype)
  return [_stack(rest, x, 2), tf.reshape(item, x.shape[1:])]


def _pop_back_item_only(x):
  _, item = list_ops.tensor_list_pop_back(_list(x), x.dtype)
  return tf.reshape(item, x.shape[1:])


def _gather(x):
  """Distinct indices: with a repeat, the gradient list keeps one of the
  repeated rows' gradients, not their sum (as stock TF does)."""
  return list_ops.tensor_list_gather(_list(x), [2, 0], x.dtype,
                                     element_shape=x.shape[1:])


def _scatter_v2(x):
  return _stack(list_ops.tensor_list_scatter(x, [3, 1, 0]), x, 4)


def _scatter_v1(x):
  handle = raw.TensorListScatter(tensor=x, indices=[1, 0, 2],
                                 element_shape=x.shape[1:].as_list())
  return _stack(handle, x, 3)


def _scatter_into(x, v):
  handle = list_ops.tensor_list_scatter(v, [2, 0], input_handle=_list(x))
  return _stack(handle, x, 3)


def _concat_v2(x):
  """Items of shape (2, 2) concatenated into a (6, 2) tensor."""
  items = tf.reshape(x, [3, 2, 2])
  return tf.reshape(list_ops.tensor_list_concat(_list(items), x.dtype,
                                                element_shape=[2, 2]), [6, 2])


def _concat_v1(x):
  items = tf.reshape(x, [3, 2, 2])
  out, _ = raw.TensorListConcat(input_handle=_list(items),
                                element_dtype=x.dtype, element_shape=[2, 2])
  return tf.reshape(out, [6, 2])


def _split(x):
  """Pieces of 1 and 3 rows, read back one by one."""
  handle = list_ops.tensor_list_split(x, element_shape=[-1, 2],
                                      lengths=[1, 3])
  return [tf.reshape(list_ops.tensor_list_get_item(handle, i, x.dtype),
                     [n, 2]) for i, n in ((0, 1), (1, 3))]


def _split_concat(x):
  handle = list_ops.tensor_list_split(x, element_shape=[-1, 2],
                                      lengths=[3, 1])
  return tf.reshape(list_ops.tensor_list_concat(handle, x.dtype), [4, 2]) * x


def _resize(size):
  def build(x):
    handle = raw.TensorListResize(input_handle=_list(x), size=size)
    return _stack(handle, x, size)
  return build


SPECS = [
    Spec("TensorListFromTensor", _from_tensor_stack, [(3, 2)], "matrix",
         dtypes=_WITH_COMPLEX),
    Spec("TensorListFromTensor", lambda x: _from_tensor_stack(x) ** 2,
         [(4,)], "vector"),
    Spec("TensorListStack", lambda x: _from_tensor_stack(x * x), [(2, 2, 2)]),
    Spec("TensorListGetItem", _get_item, [(3, 2)], dtypes=_WITH_COMPLEX),
    Spec("TensorListSetItem", _set_item, [(3, 2), (2,)]),
    Spec("TensorListSetItem", _set_item_resized, [(3, 2), (2,)], "resize"),
    Spec("TensorListPushBack", _push_back, [(3, 2), (2,)]),
    Spec("TensorListPushBack", _push_back_empty, [(3,)], "empty_list"),
    Spec("TensorListPopBack", _pop_back, [(3, 2)]),
    Spec("TensorListPopBack", _pop_back_item_only, [(3, 2)], "item_only"),
    Spec("TensorListGather", _gather, [(3, 2)]),
    Spec("TensorListScatterV2", _scatter_v2, [(3, 2)]),
    Spec("TensorListScatter", _scatter_v1, [(3, 2)]),
    Spec("TensorListScatterIntoExistingList", _scatter_into,
         [(3, 2), (2, 2)]),
    Spec("TensorListConcatV2", _concat_v2, [(6, 2)]),
    Spec("TensorListConcat", _concat_v1, [(6, 2)]),
    Spec("TensorListSplit", _split, [(4, 2)]),
    Spec("TensorListSplit", _split_concat, [(4, 2)], "concat_back"),
    Spec("TensorListResize", _resize(2), [(3, 2)], "shrink"),
    Spec("TensorListResize", _resize(4), [(3, 2)], "grow"),
]
