"""Gradient rules for TensorList ops.

A list's gradient is itself a TensorList holding one gradient per element,
so each rule runs the list op that moves values the opposite way: a stack's
gradient is built with FromTensor, a push's with a pop, a gather's with a
scatter, and so on.
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_not_differentiable

from tfgrad.emit import raw


def _shape_arg(shape):
  """A list-op element_shape argument for a TensorShape: -1 for unknown
  rank, -1 for each unknown dimension."""
  if shape.rank is None:
    return tf.constant(-1, tf.int32)
  return tf.constant([-1 if d is None else d for d in shape.as_list()],
                     tf.int32)


def _element_shape_of(t):
  """Shape of one row of `t` (t's shape without its leading dimension)."""
  static = _helpers.static_shape(t)
  if static is not None:
    return tf.constant(static[1:], tf.int32)
  return tf.shape(t)[1:]


def _leading_dim(t):
  """`t`'s static number of rows, or -1 when unknown."""
  rows = t.shape[0] if t.shape.rank else None
  return -1 if rows is None else rows


def _zero_grad_list(handle, dtype):
  """A list of `handle`'s length and element shape, every item unset."""
  return raw.TensorListReserve(
      element_shape=raw.TensorListElementShape(input_handle=handle,
                                               shape_type=tf.int32),
      num_elements=raw.TensorListLength(input_handle=handle),
      element_dtype=dtype)


def _gather_rows(dlist, indices, like):
  """Items `indices` of `dlist`, stacked; shaped like the rows of `like`."""
  return raw.TensorListGather(input_handle=dlist, indices=indices,
                              element_shape=_element_shape_of(like),
                              element_dtype=like.dtype)


# ----- Not differentiable -----

def_not_differentiable("TensorListConcatLists", "TensorListElementShape",
                       "TensorListLength", "TensorListPushBackBatch")


# ----- Whole-list conversions -----


@RegisterGradient("TensorListFromTensor")
def _from_tensor_grad(op, dlist):
  """d tensor = the gradient list stacked back into one tensor."""
  t = op.inputs[0]
  if dlist is None:
    dlist = raw.EmptyTensorList(
        element_shape=raw.TensorListElementShape(input_handle=op.outputs[0],
                                                 shape_type=tf.int32),
        max_num_elements=-1, element_dtype=t.dtype)
  return raw.TensorListStack(input_handle=dlist,
                             element_shape=_element_shape_of(t),
                             element_dtype=t.dtype,
                             num_elements=_leading_dim(t)), None


@RegisterGradient("TensorListStack")
def _stack_grad(op, dtensor):
  """d list = a list of dtensor's rows."""
  del op
  return raw.TensorListFromTensor(tensor=dtensor,
                                  element_shape=_shape_arg(dtensor.shape[1:])
                                  ), None


@RegisterGradient("TensorListConcat")
@RegisterGradient("TensorListConcatV2")
def _concat_grad(op, dtensor, unused_dlengths):
  """d list = dtensor split back into pieces of the concatenated lengths."""
  dlist = raw.TensorListSplit(
      tensor=dtensor,
      element_shape=raw.TensorListElementShape(input_handle=op.inputs[0],
                                               shape_type=tf.int32),
      lengths=op.outputs[1])
  return [dlist] + [None] * (len(op.inputs) - 1)


@RegisterGradient("TensorListSplit")
def _split_grad(op, dlist):
  """d tensor = the gradient list's items concatenated."""
  tensor, _, lengths = op.inputs
  element_shape = tf.concat([[-1], _element_shape_of(tensor)], 0)
  dtensor = raw.TensorListConcatV2(input_handle=dlist,
                                   element_shape=element_shape,
                                   leading_dims=lengths,
                                   element_dtype=tensor.dtype)[0]
  return dtensor, None, None


# ----- Single items -----


@RegisterGradient("TensorListGetItem")
def _get_item_grad(op, ditem):
  """d list = an empty gradient list holding ditem at the index."""
  handle, index, _ = op.inputs
  dlist = raw.TensorListSetItem(
      input_handle=_zero_grad_list(handle, ditem.dtype), index=index,
      item=ditem)
  return dlist, None, None


@RegisterGradient("TensorListSetItem")
def _set_item_grad(op, dlist):
  """d item = dlist's item at the index; d list = dlist with it zeroed."""
  handle, index, item = op.inputs
  ditem = raw.TensorListGetItem(input_handle=dlist, index=index,
                                element_shape=_helpers.shape_of(item),
                                element_dtype=item.dtype)
  rest = raw.TensorListSetItem(input_handle=dlist, index=index,
                               item=tf.zeros_like(item))
  if op.get_attr("resize_if_index_out_of_bounds"):
    rest = raw.TensorListResize(
        input_handle=rest, size=raw.TensorListLength(input_handle=handle))
  return rest, None, ditem


@RegisterGradient("TensorListPushBack")
def _push_back_grad(op, dlist):
  """Pops the pushed item's gradient off dlist: (d list, d tensor)."""
  item = op.inputs[1]
  popped = raw.TensorListPopBack(input_handle=dlist,
                                 element_shape=_helpers.shape_of(item),
                                 element_dtype=item.dtype)
  return popped[0], popped[1]


@RegisterGradient("TensorListPopBack")
def _pop_back_grad(op, dlist, ditem):
  """d list = dlist with the popped item's gradient pushed back on."""
  if dlist is None:
    dlist = raw.EmptyTensorList(
        element_shape=raw.TensorListElementShape(input_handle=op.outputs[0],
                                                 shape_type=tf.int32),
        max_num_elements=-1, element_dtype=ditem.dtype)
  if ditem is None:
    ditem = tf.zeros_like(op.outputs[1])
  return raw.TensorListPushBack(input_handle=dlist, tensor=ditem), None


@RegisterGradient("TensorListResize")
def _resize_grad(op, dlist):
  """d list = dlist resized back to the input list's length."""
  size = raw.TensorListLength(input_handle=op.inputs[0])
  return raw.TensorListResize(input_handle=dlist, size=size), None


# ----- Gather and scatter -----


@RegisterGradient("TensorListGather")
def _gather_grad(op, dtensor):
  """d list = dtensor's rows scattered into an empty gradient list."""
  handle, indices, _ = op.inputs
  dlist = raw.TensorListScatterIntoExistingList(
      input_handle=_zero_grad_list(handle, dtensor.dtype), tensor=dtensor,
      indices=indices)
  return dlist, None, None


@RegisterGradient("TensorListScatter")
@RegisterGradient("TensorListScatterV2")
def _scatter_grad(op, dlist):
  """d tensor = the scattered items of dlist, stacked."""
  tensor, indices = op.inputs[:2]
  dtensor = _gather_rows(dlist, indices, tensor)
  return [dtensor] + [None] * (len(op.inputs) - 1)


@RegisterGradient("TensorListScatterIntoExistingList")
def _scatter_into_existing_grad(op, dlist):
  """d tensor = dlist's items at the indices; d list = dlist with them
  zeroed."""
  _, tensor, indices = op.inputs
  dtensor = _gather_rows(dlist, indices, tensor)
  rest = raw.TensorListScatterIntoExistingList(
      input_handle=dlist, tensor=tf.zeros_like(tensor), indices=indices)
  return rest, dtensor, None
