"""Gradient rules for array ops (TF's array_grad.py family).

Most array ops only move, copy or drop elements, so each gradient is the
adjoint data movement: slicing undoes padding, concatenation undoes
splitting, a scatter-add undoes a gather. Shapes are taken statically
whenever they are fully known, so no Shape ops are emitted in that case.
"""

import numpy as np
import tensorflow as tf

from tfgrad import emit
from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient
from tfgrad.registry import takes_known_gradients

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_linear, def_not_differentiable


def _dense(grad):
  """`grad` as a dense Tensor (IndexedSlices rows are summed into place)."""
  if not isinstance(grad, tf.IndexedSlices):
    return grad
  return raw.UnsortedSegmentSum(data=grad.values, segment_ids=grad.indices,
                                num_segments=_dim(grad.dense_shape, 0))


def _shape(t, dtype=tf.int32):
  """`t`'s shape: a Python list when static, else a Shape op of `dtype`."""
  static = _helpers.static_shape(t)
  return list(static) if static is not None else raw.Shape(input=t,
                                                           out_type=dtype)


def _shape_tensor(t, dtype=tf.int32):
  """`t`'s shape as a Tensor of `dtype`: a constant when static, else a
  Shape op."""
  static = _helpers.static_shape(t)
  if static is not None:
    return emit.const(static, dtype)
  return raw.Shape(input=t, out_type=dtype)


def _dim(shape, i):
  """`shape[i]` of a shape from `_shape` (or any 1-D Tensor): an int when
  known, else a StridedSlice op."""
  if not isinstance(shape, tf.Tensor):
    return shape[i]
  known = emit.known_value(shape)
  if known is not None:
    return int(known[i])
  return raw.StridedSlice(input=shape, begin=[i], end=[i + 1], strides=[1],
                          shrink_axis_mask=1)


def _piece(t, start=None, stop=None):
  """`t[start:stop]` along the first axis: a slice of a list or array, a
  StridedSlice op of a Tensor."""
  if not isinstance(t, tf.Tensor):
    return t[start:stop]
  return raw.StridedSlice(input=t, begin=[start or 0], end=[stop or 0],
                          strides=[1], begin_mask=int(start is None),
                          end_mask=int(stop is None))


def _cast(x, dtype):
  """`x` (a Tensor or a Python/numpy value) as a Tensor of `dtype`; a Cast
  op only for a Tensor of another dtype."""
  if not isinstance(x, tf.Tensor):
    return emit.const(x, dtype)
  return x if x.dtype.base_dtype == dtype else raw.Cast(x=x, DstT=dtype)


def _times(a, b):
  """a * b for shape entries (ints or scalar Tensors)."""
  if not isinstance(a, tf.Tensor) and not isinstance(b, tf.Tensor):
    return a * b
  return raw.Mul(x=a, y=b)


def _const_or(t):
  """The constant value of `t` when known at graph time, else `t`."""
  value = _helpers.static_value(t)
  return t if value is None else value


def _is_static(part):
  """True for a shape piece held in Python (no Tensors inside)."""
  return isinstance(part, (list, tuple, np.ndarray)) and not any(
      isinstance(d, tf.Tensor) for d in part)


def _as_vector(part, dtype=tf.int32):
  """A shape piece (a Tensor, or a list of ints and scalar Tensors) as a
  1-D Tensor of `dtype`."""
  if isinstance(part, tf.Tensor):
    return _cast(part, dtype)
  if _is_static(part):
    return emit.const([int(d) for d in part], dtype)
  return _cast(raw.Pack(values=list(part), axis=0), dtype)


def _concat_shapes(*parts, dtype=tf.int32):
  """Joins shape pieces: a list when all are static, else a Tensor of
  `dtype`."""
  if all(_is_static(p) for p in parts):
    return [int(d) for p in parts for d in p]
  vectors = [_as_vector(p, dtype) for p in parts]
  if len(vectors) == 1:
    return vectors[0]
  return raw.ConcatV2(values=vectors, axis=0)


def _prod(part, dtype=tf.int32):
  """Product of a shape piece: an int when static, else a Prod op."""
  if _is_static(part):
    return int(np.prod(part, dtype=np.int64))
  return raw.Prod(input=_as_vector(part, dtype), axis=[0])


def _num_elements(t):
  """Number of elements of `t`: an int when static, else a Size op."""
  static = _helpers.static_shape(t)
  return int(np.prod(static, dtype=np.int64)) if static is not None \
      else raw.Size(input=t)


def _reshape_like(grad, x):
  """Reshapes `grad` (densified) to `x`'s shape; a single unknown dimension
  becomes -1 so no Shape op is needed."""
  shape = x.shape
  if shape.rank is not None and not shape.is_fully_defined():
    dims = [-1 if d is None else d for d in shape.as_list()]
    if dims.count(-1) == 1 and 0 not in dims:
      return raw.Reshape(tensor=_dense(grad), shape=dims)
  return raw.Reshape(tensor=_dense(grad), shape=_helpers.shape_of(x))


def _inverse_perm(perm):
  """The permutation undoing `perm` (static when possible)."""
  static = _helpers.static_value(perm)
  if static is not None:
    return np.argsort(static).astype(perm.dtype.as_numpy_dtype)
  return raw.InvertPermutation(x=perm)


def _zeros_like(t, dtype=None):
  """Zeros of `t`'s shape and of `dtype` (default `t`'s): a Fill of a
  constant shape when static (itself a constant when small), else
  ZerosLike (or a Fill of the Shape for another dtype)."""
  dtype = tf.as_dtype(dtype or t.dtype).base_dtype
  static = _helpers.static_shape(t)
  if static is not None and dtype != tf.variant:
    return raw.Fill(dims=emit.const(static, tf.int32),
                    value=emit.const(0, dtype))
  if dtype == t.dtype.base_dtype:
    return raw.ZerosLike(x=t)
  return raw.Fill(dims=raw.Shape(input=t), value=emit.const(0, dtype))


def _sum_all(t):
  """The sum of all elements of `t` (densified), a scalar."""
  t = _dense(t)
  rank = t.shape.rank
  if rank is not None:
    return raw.Sum(input=t, axis=emit.const(list(range(rank)), tf.int32))
  total = raw.Sum(input=t, axis=raw.Range(start=0, limit=raw.Rank(input=t),
                                          delta=1))
  total.set_shape([])
  return total


# ----- Not differentiable -----

def_not_differentiable(
    "BroadcastGradientArgs", "ConcatOffset", "Const", "EditDistance",
    "FakeQuantWithMinMaxArgsGradient", "FakeQuantWithMinMaxVarsGradient",
    "FakeQuantWithMinMaxVarsPerChannelGradient", "InvertPermutation",
    "OneHot", "OnesLike", "Rank", "Shape", "ShapeN", "Size", "StopGradient",
    "ZerosLike")


# ----- Identities -----

def_linear("Identity")
def_linear("IdentityN")
def_linear("PlaceholderWithDefault")
def_linear("EnsureShape")


@RegisterGradient("CheckNumerics")
def _check_numerics_grad(op, grad):
  """dx = grad, itself checked for NaN/Inf."""
  message = op.get_attr("message").decode()
  return raw.CheckNumerics(
      tensor=_dense(grad), message="Not a number (NaN) or infinity (Inf) "
      f"values detected in gradient. {message}")


@RegisterGradient("CheckNumericsV2")
def _check_numerics_v2_grad(op, grad):
  """dx = grad, itself checked for NaN/Inf (V2 also flags -Inf/+Inf)."""
  message = op.get_attr("message").decode()
  return raw.CheckNumericsV2(
      tensor=grad, message="Not a number (NaN) or infinity (Inf) values "
      f"detected in gradient. {message}")


@RegisterGradient("PreventGradient")
def _prevent_gradient_grad(op, grad):
  """Refuses: the graph's author disabled this gradient (LookupError)."""
  del grad
  raise LookupError("Gradient explicitly disabled. Reason: "
                    f"{op.get_attr('message').decode()} (operation "
                    f"'{op.name}', op type: {op.type})")


# ----- Reshaping -----


def _known_reshaped(grad, x):
  """A gradient known at construction time reshaped to `x`'s static shape
  (the same values, in numpy), else the gradient as a constant."""
  shape = _helpers.static_shape(x)
  if shape is not None and int(np.prod(shape, dtype=np.int64)) \
      == grad.value.size:
    return emit.Known(grad.value.reshape(shape), grad.dtype)
  return emit.materialize(grad)


def _reshape_or_known(grad, x):
  if isinstance(grad, emit.Known):
    grad = _known_reshaped(grad, x)
    if isinstance(grad, emit.Known):
      return grad
  return _reshape_like(grad, x)


@RegisterGradient("Reshape")
@takes_known_gradients
def _reshape_grad(op, grad):
  """dx = reshape(grad, shape(x))."""
  return _reshape_or_known(grad, op.inputs[0]), None


@RegisterGradient("ExpandDims")
@takes_known_gradients
def _expand_dims_grad(op, grad):
  """dx = reshape(grad, shape(x))."""
  return _reshape_or_known(grad, op.inputs[0]), None


@RegisterGradient("Squeeze")
def _squeeze_grad(op, grad):
  """dx = reshape(grad, shape(x))."""
  return _reshape_like(grad, op.inputs[0])


@RegisterGradient("Transpose")
def _transpose_grad(op, grad):
  """dx = transpose(grad, inverse(perm))."""
  return raw.Transpose(x=grad, perm=_inverse_perm(op.inputs[1])), None


@RegisterGradient("ConjugateTranspose")
def _conjugate_transpose_grad(op, grad):
  """dx = conj(transpose(grad, inverse(perm)))."""
  perm = _inverse_perm(op.inputs[1])
  if grad.dtype.is_complex:
    return raw.ConjugateTranspose(x=grad, perm=perm), None
  return raw.Transpose(x=grad, perm=perm), None


@RegisterGradient("BroadcastTo")
def _broadcast_to_grad(op, grad):
  """dx = grad summed over the broadcast dimensions."""
  return _helpers.unbroadcast(grad, op.inputs[0]), None


@RegisterGradient("Tile")
def _tile_grad(op, grad):
  """dx = grad viewed as [m0, d0, m1, d1, ...], summed over the m axes."""
  x, multiples = op.inputs
  x_shape, reps = _shape(x), _const_or(multiples)
  if isinstance(grad, tf.IndexedSlices):
    rows = _cast(_dim(x_shape, 0), grad.indices.dtype)
    grad = raw.UnsortedSegmentSum(
        data=grad.values, segment_ids=raw.FloorMod(x=grad.indices, y=rows),
        num_segments=rows)
    reps = _concat_shapes([1], _piece(reps, 1))
  if isinstance(reps, (list, np.ndarray)) and isinstance(x_shape, list):
    split = [int(d) for pair in zip(reps, x_shape) for d in pair]
    axes = list(range(0, len(split), 2))
  else:
    pairs = raw.Pack(values=[_as_vector(reps), _as_vector(x_shape)], axis=0)
    split = raw.Reshape(tensor=raw.Transpose(x=pairs, perm=[1, 0]),
                        shape=[-1])
    rank = x.shape.rank
    axes = (list(range(0, 2 * rank, 2)) if rank is not None else
            raw.Range(start=0, limit=raw.Size(input=split), delta=2))
  dx = raw.Sum(input=raw.Reshape(tensor=grad, shape=split), axis=axes)
  dx.set_shape(x.shape)
  return dx, None


@RegisterGradient("ReverseV2")
def _reverse_v2_grad(op, grad):
  """dx = reverse(grad, axis)."""
  return raw.ReverseV2(tensor=grad, axis=op.inputs[1]), None


@RegisterGradient("Reverse")
def _reverse_grad(op, grad):
  """dx = reverse(grad, dims) (boolean-mask form)."""
  return raw.Reverse(tensor=grad, dims=op.inputs[1]), None


@RegisterGradient("ReverseSequence")
def _reverse_sequence_grad(op, grad):
  """dx = the same per-row reversal applied to grad."""
  return raw.ReverseSequence(input=grad, seq_lengths=op.inputs[1],
                             seq_dim=op.get_attr("seq_dim"),
                             batch_dim=op.get_attr("batch_dim")), None


# ----- Concatenation, stacking, splitting -----


def _split_like(grad, values, axis, axis_t):
  """Cuts dense `grad` into pieces shaped like `values` along the axis
  (`axis` when known statically, else the tensor `axis_t`)."""
  shapes = [_helpers.static_shape(v) for v in values]
  if axis is not None and None not in shapes:
    axis = int(axis) % len(shapes[0])
    sizes = emit.const([s[axis] for s in shapes], tf.int32)
    return raw.SplitV(value=grad, size_splits=sizes, axis=axis,
                      num_split=len(shapes))
  rank = values[0].shape.rank
  if rank is None:
    rank = raw.Rank(input=values[0])
  axis = raw.FloorMod(x=axis_t, y=rank)
  sizes = raw.ShapeN(input=list(values))
  offsets = raw.ConcatOffset(concat_dim=axis, shape=sizes)
  return [raw.Slice(input=grad, begin=o, size=s)
          for o, s in zip(offsets, sizes)]


def _split_slices_like(grad, values, axis):
  """Cuts IndexedSlices `grad` into IndexedSlices shaped like `values`."""
  if axis is None or (axis < 0 and values[0].shape.rank is None):
    raise ValueError("Can only compute IndexedSlices gradient with "
                     "statically-known concat_dim (and rank if negative)")
  axis = int(axis) % values[0].shape.rank if axis < 0 else int(axis)
  if axis > 0:
    sizes = [_dim(_shape(v), axis) for v in values]
    if any(isinstance(s, tf.Tensor) for s in sizes):
      splits = raw.Pack(values=sizes, axis=0)
    else:
      splits = emit.const(sizes, tf.int32)
    pieces = raw.SplitV(value=grad.values, size_splits=splits, axis=axis,
                        num_split=len(sizes))
    return [tf.IndexedSlices(p, grad.indices, _helpers.shape_of(v))
            for p, v in zip(pieces, values)]
  out, start = [], 0
  for v in values:
    end = raw.AddV2(x=start,
                    y=_cast(_dim(_shape(v), 0), grad.indices.dtype))
    inside = raw.LogicalAnd(x=raw.GreaterEqual(x=grad.indices, y=start),
                            y=raw.Less(x=grad.indices, y=end))
    keep = raw.Squeeze(input=raw.Where(condition=inside), axis=[1])
    out.append(tf.IndexedSlices(
        raw.GatherV2(params=grad.values, indices=keep, axis=0),
        raw.Sub(x=raw.GatherV2(params=grad.indices, indices=keep, axis=0),
                y=start),
        _helpers.shape_of(v)))
    start = end
  return out


def _concat_grad(grad, values, axis_t):
  """The gradient pieces for concatenated `values` (dense or sliced)."""
  if len(values) == 1:
    return [grad]
  axis = _helpers.static_value(axis_t)
  if isinstance(grad, tf.IndexedSlices):
    return _split_slices_like(grad, values, axis)
  return _split_like(grad, values, axis, axis_t)


@RegisterGradient("ConcatV2")
def _concat_v2_grad(op, grad):
  """Each value gets its own slice of grad along the concat axis."""
  return _concat_grad(grad, op.inputs[:-1], op.inputs[-1]) + [None]


@RegisterGradient("Concat")
def _concat_grad_v1(op, grad):
  """Each value gets its own slice of grad along the concat axis."""
  return [None] + _concat_grad(grad, op.inputs[1:], op.inputs[0])


@RegisterGradient("Pack")
def _pack_grad(op, grad):
  """dx_i = unstack(grad, axis)[i]."""
  return raw.Unpack(value=grad, num=op.get_attr("N"),
                    axis=op.get_attr("axis"))


@RegisterGradient("Unpack")
def _unpack_grad(op, *grads):
  """dx = stack(grads, axis)."""
  return raw.Pack(values=list(grads), axis=op.get_attr("axis"))


def _concat(values, axis):
  """concat(values, axis); a single value is returned as it is."""
  if len(values) == 1:
    return values[0]
  return raw.ConcatV2(values=list(values), axis=axis)


@RegisterGradient("Split")
def _split_grad(op, *grads):
  """dx = concat(grads, axis)."""
  return None, _concat(grads, op.inputs[0])


@RegisterGradient("SplitV")
def _split_v_grad(op, *grads):
  """dx = concat(grads, axis)."""
  return _concat(grads, op.inputs[2]), None, None


# ----- Slicing and padding -----


def _mask_attrs(op):
  names = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
           "shrink_axis_mask")
  return {n: op.get_attr(n) for n in names}


@RegisterGradient("Slice")
def _slice_grad(op, grad):
  """dx = grad zero-padded back to x's shape."""
  x, begin, _ = op.inputs
  x_shape = _helpers.static_shape(x)
  y_shape = _helpers.static_shape(op.outputs[0])
  b = _helpers.static_value(begin)
  if x_shape is not None and y_shape is not None and b is not None:
    pads = [[int(s), int(n - s - m)] for s, n, m in zip(b, x_shape, y_shape)]
    return raw.Pad(input=grad, paddings=emit.const(pads, tf.int32)), None, None
  after = raw.Sub(x=raw.Sub(x=_shape_tensor(x, begin.dtype), y=begin),
                  y=_shape_tensor(op.outputs[0], begin.dtype))
  paddings = raw.Pack(values=[begin, after], axis=1)
  return raw.Pad(input=grad, paddings=paddings), None, None


@RegisterGradient("StridedSlice")
def _strided_slice_grad(op, grad):
  """dx = grad scattered back into zeros at the sliced positions."""
  x, begin, end, strides = op.inputs
  dx = raw.StridedSliceGrad(shape=_shape_tensor(x, begin.dtype), begin=begin,
                            end=end, strides=strides, dy=grad,
                            **_mask_attrs(op))
  return dx, None, None, None


@RegisterGradient("StridedSliceGrad")
def _strided_slice_grad_grad(op, grad):
  """d(dy) = the same strided slice of grad."""
  _, begin, end, strides, _ = op.inputs
  ddy = raw.StridedSlice(input=grad, begin=begin, end=end, strides=strides,
                         **_mask_attrs(op))
  return None, None, None, None, ddy


def _pad_grad(op, grad):
  """dx = the slice of grad that x occupies."""
  x, paddings = op.inputs[:2]
  pads, x_shape = _helpers.static_value(paddings), _helpers.static_shape(x)
  if pads is not None and x_shape is not None:
    dx = raw.Slice(input=grad,
                   begin=emit.const([int(p) for p in pads[:, 0]], tf.int32),
                   size=emit.const(x_shape, tf.int32))
  else:
    before = raw.StridedSlice(input=paddings, begin=[0, 0], end=[0, 1],
                              strides=[1, 1], begin_mask=1, end_mask=1,
                              shrink_axis_mask=2)
    dx = raw.Slice(input=grad, begin=before,
                   size=_shape_tensor(x, paddings.dtype))
  return [dx] + [None] * (len(op.inputs) - 1)


RegisterGradient("Pad")(_pad_grad)
RegisterGradient("PadV2")(_pad_grad)


@RegisterGradient("MirrorPad")
def _mirror_pad_grad(op, grad):
  """dx = grad with the mirrored borders folded back in."""
  return raw.MirrorPadGrad(input=grad, paddings=op.inputs[1],
                           mode=op.get_attr("mode")), None


@RegisterGradient("MirrorPadGrad")
def _mirror_pad_grad_grad(op, grad):
  """MirrorPadGrad is linear; its adjoint is MirrorPad."""
  return raw.MirrorPad(input=grad, paddings=op.inputs[1],
                       mode=op.get_attr("mode")), None


# ----- Gather and scatter -----


def _gathered_rows(grad, params_shape, indices):
  """IndexedSlices putting one row of grad back per (flattened) index."""
  n = _num_elements(indices)
  values = raw.Reshape(tensor=_dense(grad),
                       shape=_concat_shapes([n], _piece(params_shape, 1)))
  dense_shape = (emit.const(params_shape, tf.int32)
                 if _is_static(params_shape) else params_shape)
  flat = raw.Reshape(tensor=indices, shape=_concat_shapes([n]))
  return tf.IndexedSlices(values, flat, dense_shape)


def _batch_offsets(indices, batch_shape, batch_dims, rows):
  """indices + (flat batch position) * rows, so batches index disjoint rows."""
  dtype = indices.dtype
  offsets = raw.Range(start=_cast(0, dtype),
                      limit=_cast(_prod(batch_shape), dtype),
                      delta=_cast(1, dtype))
  offsets = raw.Mul(x=offsets, y=_cast(rows, dtype))
  tail = [1] * (indices.shape.rank - batch_dims)
  return raw.AddV2(x=indices, y=raw.Reshape(
      tensor=offsets, shape=_concat_shapes(batch_shape, tail)))


def _gather_axis_grad(grad, params, indices, axis, batch_dims):
  """Dense gradient of a gather along `axis` after `batch_dims` batch dims:
  move the gathered axis next to the batch dims, segment-sum, move back."""
  ps, rank = _shape(params), params.shape.rank
  after = _piece(ps, axis + 1)
  values = raw.Reshape(tensor=_dense(grad),
                       shape=_concat_shapes(_piece(ps, None, axis), [-1],
                                            after))
  perm = (list(range(batch_dims)) + [axis] + list(range(batch_dims, axis))
          + list(range(axis + 1, rank)))
  moved = perm != sorted(perm)
  values = raw.Transpose(x=values, perm=perm) if moved else values
  rest = _concat_shapes(_piece(ps, batch_dims, axis), after)
  size = _dim(ps, axis)
  rows = size
  if batch_dims:
    batch = _piece(ps, None, batch_dims)
    indices = _batch_offsets(indices, batch, batch_dims, size)
    values = raw.Reshape(tensor=values, shape=_concat_shapes([-1], rest))
    rows = _times(_prod(batch), size)
  summed = raw.UnsortedSegmentSum(
      data=values, segment_ids=raw.Reshape(tensor=indices, shape=[-1]),
      num_segments=rows)
  if batch_dims:
    summed = raw.Reshape(tensor=summed,
                         shape=_concat_shapes(batch, [size], rest))
  return raw.Transpose(x=summed, perm=np.argsort(perm)) if moved else summed


def _gather_dynamic_axis_grad(grad, params, indices, axis_t):
  """d params of a gather along an axis (or of params of a rank) known
  only when the graph runs: grad viewed as [outer, gathered, inner], its
  gathered rows segment-summed into the axis, reshaped to params'."""
  ps = raw.Shape(input=params)
  axis = raw.FloorMod(x=_cast(axis_t, tf.int32), y=raw.Rank(input=params))
  axis_1d = raw.Reshape(tensor=axis, shape=[1])
  outer = raw.Prod(input=raw.Slice(input=ps, begin=[0], size=axis_1d),
                   axis=[0])
  inner = raw.Prod(input=raw.Slice(input=ps, begin=raw.AddV2(x=axis_1d, y=1),
                                   size=[-1]), axis=[0])
  values = raw.Reshape(tensor=_dense(grad),
                       shape=raw.Pack(values=[outer, -1, inner], axis=0))
  summed = raw.UnsortedSegmentSum(
      data=raw.Transpose(x=values, perm=[1, 0, 2]),
      segment_ids=raw.Reshape(tensor=indices, shape=[-1]),
      num_segments=raw.GatherV2(params=ps, indices=axis, axis=0))
  return raw.Reshape(tensor=raw.Transpose(x=summed, perm=[1, 0, 2]),
                     shape=ps)


@RegisterGradient("GatherV2")
def _gather_v2_grad(op, grad):
  """d params = grad's rows summed back where they were gathered from:
  IndexedSlices for axis 0, a dense segment sum otherwise."""
  params, indices, axis_t = op.inputs
  axis = _helpers.static_value(axis_t)
  batch_dims = op.get_attr("batch_dims")
  if batch_dims < 0:
    batch_dims += indices.shape.rank
  if axis is not None and int(axis) == 0:
    return _gathered_rows(grad, _shape(params), indices), None, None
  if (axis is None or params.shape.rank is None) and not batch_dims:
    return _gather_dynamic_axis_grad(grad, params, indices, axis_t), None, None
  if axis is None or params.shape.rank is None:
    raise ValueError("GatherV2 gradient with batch_dims needs a statically "
                     "known axis and params rank")
  axis = int(axis) % params.shape.rank
  dx = _gather_axis_grad(grad, params, indices, axis, batch_dims)
  return dx, None, None


@RegisterGradient("Gather")
def _gather_grad(op, grad):
  """d params = IndexedSlices of grad's rows at the gathered indices."""
  params, indices = op.inputs
  return _gathered_rows(grad, _shape(params), indices), None


@RegisterGradient("GatherNd")
def _gather_nd_grad(op, grad):
  """d params = grad scattered (summed) back to the gathered positions."""
  params, indices = op.inputs
  shape = _shape_tensor(params, indices.dtype)
  if indices.shape.rank == 2 and indices.shape[-1] == 1:
    rows = raw.Squeeze(input=indices, axis=[-1])
    return tf.IndexedSlices(grad, rows, shape), None
  dx = raw.ScatterNd(indices=indices, updates=grad, shape=shape,
                     bad_indices_policy=op.get_attr("bad_indices_policy"))
  return dx, None


@RegisterGradient("ScatterNd")
def _scatter_nd_grad(op, grad):
  """d updates = grad gathered at the scatter indices."""
  return None, raw.GatherNd(params=grad, indices=op.inputs[0]), None


# ----- Selection and filling -----


@RegisterGradient("Select")
def _select_grad(op, grad):
  """dx = grad where cond, dy = grad where not cond (cond may be a vector
  selecting rows)."""
  cond, x = op.inputs[0], op.inputs[1]
  zeros = _zeros_like(x)
  return (None, raw.Select(condition=cond, x=grad, y=zeros),
          raw.Select(condition=cond, x=zeros, y=grad))


@RegisterGradient("SelectV2")
def _select_v2_grad(op, grad):
  """dx = grad where cond, dy = grad where not cond, each un-broadcast."""
  cond, x, y = op.inputs
  zero = emit.const(0, grad.dtype)
  gx = raw.SelectV2(condition=cond, t=grad, e=zero)
  gy = raw.SelectV2(condition=cond, t=zero, e=grad)
  return None, _helpers.unbroadcast(gx, x), _helpers.unbroadcast(gy, y)


@RegisterGradient("Fill")
def _fill_grad(op, grad):
  """d value = sum(grad)."""
  del op
  return None, _sum_all(grad)


# ----- Block rearrangements -----


@RegisterGradient("SpaceToDepth")
def _space_to_depth_grad(op, grad):
  """The adjoint of SpaceToDepth is DepthToSpace."""
  fmt = op.get_attr("data_format").decode()
  if fmt == "NCHW_VECT_C":
    raise ValueError("Cannot compute SpaceToDepth gradient with NCHW_VECT_C")
  return raw.DepthToSpace(input=grad, block_size=op.get_attr("block_size"),
                          data_format=fmt)


@RegisterGradient("DepthToSpace")
def _depth_to_space_grad(op, grad):
  """The adjoint of DepthToSpace is SpaceToDepth."""
  fmt = op.get_attr("data_format").decode()
  if fmt == "NCHW_VECT_C":
    raise ValueError("Cannot compute DepthToSpace gradient with NCHW_VECT_C")
  return raw.SpaceToDepth(input=grad, block_size=op.get_attr("block_size"),
                          data_format=fmt)


@RegisterGradient("SpaceToBatchND")
def _space_to_batch_nd_grad(op, grad):
  """The adjoint of SpaceToBatchND is BatchToSpaceND."""
  return raw.BatchToSpaceND(input=grad, block_shape=op.inputs[1],
                            crops=op.inputs[2]), None, None


@RegisterGradient("BatchToSpaceND")
def _batch_to_space_nd_grad(op, grad):
  """The adjoint of BatchToSpaceND is SpaceToBatchND."""
  return raw.SpaceToBatchND(input=grad, block_shape=op.inputs[1],
                            paddings=op.inputs[2]), None, None


# ----- Diagonals and bands -----


@RegisterGradient("Diag")
def _diag_grad(op, grad):
  """d diagonal = diag_part(grad)."""
  del op
  return raw.DiagPart(input=grad)


@RegisterGradient("DiagPart")
def _diag_part_grad(op, grad):
  """dx = diag(grad)."""
  del op
  return raw.Diag(diagonal=grad)


@RegisterGradient("MatrixDiag")
def _matrix_diag_grad(op, grad):
  """d diagonal = matrix_diag_part(grad)."""
  del op
  return raw.MatrixDiagPart(input=grad)


@RegisterGradient("MatrixDiagV3")
def _matrix_diag_v3_grad(op, grad):
  """d diagonals = the k-band diagonals of grad."""
  d = raw.MatrixDiagPartV3(input=grad, k=op.inputs[1], padding_value=0,
                           align=op.get_attr("align"))
  return d, None, None, None, None


@RegisterGradient("MatrixDiagPart")
def _matrix_diag_part_grad(op, grad):
  """dx = grad placed on the main diagonal of zeros."""
  x = op.inputs[0]
  rows, cols = x.shape[-2:] if x.shape.rank is not None else (None, None)
  if rows is not None and rows == cols:
    return raw.MatrixDiag(diagonal=grad)
  return raw.MatrixSetDiag(input=_zeros_like(x), diagonal=grad)


@RegisterGradient("MatrixDiagPartV3")
def _matrix_diag_part_v3_grad(op, grad):
  """dx = grad placed on the k-band diagonals of zeros."""
  x, k = op.inputs[0], op.inputs[1]
  align = op.get_attr("align")
  matrix = x.shape[-2:] if x.shape.rank is not None else tf.TensorShape(None)
  if matrix.is_fully_defined():
    dx = raw.MatrixDiagV3(diagonal=grad, k=k, num_rows=int(matrix[0]),
                          num_cols=int(matrix[1]), padding_value=0,
                          align=align)
  else:
    dx = raw.MatrixSetDiagV3(input=_zeros_like(x), diagonal=grad, k=k,
                             align=align)
  return dx, None, None


@RegisterGradient("MatrixSetDiag")
def _matrix_set_diag_grad(op, grad):
  """dx = grad with its diagonal zeroed; d diagonal = grad's diagonal."""
  zeros = _zeros_like(op.inputs[1], grad.dtype)
  return (raw.MatrixSetDiag(input=grad, diagonal=zeros),
          raw.MatrixDiagPart(input=grad))


@RegisterGradient("MatrixSetDiagV3")
def _matrix_set_diag_v3_grad(op, grad):
  """dx = grad with its k-band zeroed; d diagonals = grad's k-band."""
  k, align = op.inputs[2], op.get_attr("align")
  zeros = _zeros_like(op.inputs[1], grad.dtype)
  return (raw.MatrixSetDiagV3(input=grad, diagonal=zeros, k=k, align=align),
          raw.MatrixDiagPartV3(input=grad, k=k, padding_value=0, align=align),
          None)


@RegisterGradient("MatrixBandPart")
def _matrix_band_part_grad(op, grad):
  """dx = the same band of grad."""
  return raw.MatrixBandPart(input=grad, num_lower=op.inputs[1],
                            num_upper=op.inputs[2]), None, None


# ----- Diagonals, version 2 (diagonals packed left-aligned) -----


@RegisterGradient("MatrixDiagV2")
def _matrix_diag_v2_grad(op, grad):
  """d diagonals = the k-band diagonals of grad; the sizes and padding value
  get none."""
  d = raw.MatrixDiagPartV2(input=grad, k=op.inputs[1],
                           padding_value=emit.const(0, grad.dtype))
  return d, None, None, None, None


@RegisterGradient("MatrixDiagPartV2")
def _matrix_diag_part_v2_grad(op, grad):
  """dx = grad placed on the k-band diagonals of zeros."""
  x, k = op.inputs[0], op.inputs[1]
  zero = emit.const(0, grad.dtype)
  matrix = x.shape[-2:] if x.shape.rank is not None else tf.TensorShape(None)
  if matrix.is_fully_defined():
    dx = raw.MatrixDiagV2(diagonal=grad, k=k, num_rows=matrix[0],
                          num_cols=matrix[1], padding_value=zero)
  else:
    dx = raw.MatrixSetDiagV2(input=_zeros_like(x), diagonal=grad, k=k)
  return dx, None, None


@RegisterGradient("MatrixSetDiagV2")
def _matrix_set_diag_v2_grad(op, grad):
  """dx = grad with its k-band zeroed; d diagonals = grad's k-band."""
  k = op.inputs[2]
  zeros = _zeros_like(op.inputs[1], grad.dtype)
  return (raw.MatrixSetDiagV2(input=grad, diagonal=zeros, k=k),
          raw.MatrixDiagPartV2(input=grad, k=k,
                               padding_value=emit.const(0, grad.dtype)),
          None)


# ----- Block rearrangements, version 1 -----


@RegisterGradient("SpaceToBatch")
def _space_to_batch_grad(op, grad):
  """The adjoint of SpaceToBatch is BatchToSpace."""
  return raw.BatchToSpace(input=grad, crops=op.inputs[1],
                          block_size=op.get_attr("block_size")), None


@RegisterGradient("BatchToSpace")
def _batch_to_space_grad(op, grad):
  """The adjoint of BatchToSpace is SpaceToBatch."""
  return raw.SpaceToBatch(input=grad, paddings=op.inputs[1],
                          block_size=op.get_attr("block_size")), None


# ----- Scatter -----


@RegisterGradient("ScatterNdNonAliasingAdd")
def _scatter_nd_non_aliasing_add_grad(op, grad):
  """d input = grad; d updates = grad gathered at the scatter indices."""
  return grad, None, raw.GatherNd(params=grad, indices=op.inputs[1])


# ----- Fake quantization (straight-through estimators) -----


def _pass_through(op, grad):
  """Straight-through: grad goes to the input unchanged, none to the range."""
  return [grad] + [None] * (len(op.inputs) - 1)


RegisterGradient("QuantizeAndDequantizeV2")(_pass_through)
RegisterGradient("QuantizeAndDequantizeV3")(_pass_through)


@RegisterGradient("QuantizeAndDequantizeV4")
def _quantize_and_dequantize_v4_grad(op, grad):
  """grad passes where min <= x <= max (QuantizeAndDequantizeV4Grad)."""
  x, lo, hi = op.inputs
  return raw.QuantizeAndDequantizeV4Grad(
      gradients=grad, input=x, input_min=lo, input_max=hi,
      axis=op.get_attr("axis"))


@RegisterGradient("QuantizeAndDequantizeV4Grad")
def _quantize_and_dequantize_v4_grad_grad(op, grad, unused_min, unused_max):
  """input_backprop = g * [min <= x <= max] is linear in g with that mask;
  the mask is piecewise constant in x, min and max; the range backprops are
  constant zeros."""
  del unused_min, unused_max
  _, x, lo, hi = op.inputs
  masked = raw.QuantizeAndDequantizeV4Grad(
      gradients=grad, input=x, input_min=lo, input_max=hi,
      axis=op.get_attr("axis"))[0]
  return masked, None, None, None


@RegisterGradient("FakeQuantWithMinMaxArgs")
def _fake_quant_with_min_max_args_grad(op, grad):
  """grad passes inside the clamping range [min, max]."""
  attrs = {n: op.get_attr(n) for n in ("min", "max", "num_bits",
                                       "narrow_range")}
  return raw.FakeQuantWithMinMaxArgsGradient(
      gradients=grad, inputs=op.inputs[0], **attrs)


def _def_fake_quant_vars_grad(op_type):
  """Registers the rule for `op_type`: its *Gradient op gives the input's
  straight-through grad and the grads of the learned min and max."""
  grad_op = getattr(raw, f"{op_type}Gradient")

  def rule(op, grad):
    x, lo, hi = op.inputs
    return grad_op(gradients=grad, inputs=x, min=lo, max=hi,
                   num_bits=op.get_attr("num_bits"),
                   narrow_range=op.get_attr("narrow_range"))

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"{op_type}: input, min and max grads from its Gradient op."
  RegisterGradient(op_type)(rule)


_def_fake_quant_vars_grad("FakeQuantWithMinMaxVars")
_def_fake_quant_vars_grad("FakeQuantWithMinMaxVarsPerChannel")


# ----- Patch extraction -----


def _patches_grad(op, grad, extract, spatial_rank):
  """Sums each patch element's gradient back onto the input pixel it was
  copied from. The pixel of every patch element is found by extracting
  patches, with the op's own attributes, from an image of pixel numbers
  (1-based; the 0 that padding yields collects gradients nobody owns)."""
  x = op.inputs[0]
  shape = _shape(x, tf.int64)
  spatial = _piece(shape, 1, 1 + spatial_rank)
  pixels = _prod(spatial, tf.int64)
  ids = (raw.AddV2(x=pixels, y=1) if isinstance(pixels, tf.Tensor)
         else pixels + 1)
  numbers = raw.Reshape(
      tensor=raw.Range(start=_cast(1, tf.int64), limit=_cast(ids, tf.int64),
                       delta=_cast(1, tf.int64)),
      shape=_concat_shapes([1], spatial, [1], dtype=tf.int64))
  sources = raw.Reshape(tensor=extract(numbers), shape=[-1])
  batch, channels = _dim(shape, 0), _dim(shape, -1)
  per_element = raw.Transpose(
      x=raw.Reshape(tensor=grad, shape=_concat_shapes([batch, -1, channels],
                                                      dtype=tf.int64)),
      perm=[1, 0, 2])
  summed = raw.UnsortedSegmentSum(data=per_element, segment_ids=sources,
                                  num_segments=ids)
  image = raw.Reshape(tensor=_piece(summed, 1),
                      shape=_concat_shapes(spatial, [batch, channels],
                                           dtype=tf.int64))
  perm = list(range(spatial_rank, spatial_rank + 1)) + list(
      range(spatial_rank)) + [spatial_rank + 1]
  return raw.Transpose(x=image, perm=perm)


@RegisterGradient("ExtractImagePatches")
def _extract_image_patches_grad(op, grad):
  """Each input pixel gets the sum of the grads of its copies in patches."""
  attrs = {n: op.get_attr(n) for n in ("ksizes", "strides", "rates",
                                       "padding")}
  return _patches_grad(
      op, grad, lambda t: raw.ExtractImagePatches(images=t, **attrs),
      spatial_rank=2)


@RegisterGradient("ExtractVolumePatches")
def _extract_volume_patches_grad(op, grad):
  """Each input voxel gets the sum of the grads of its copies in patches."""
  attrs = {n: op.get_attr(n) for n in ("ksizes", "strides", "padding")}
  return _patches_grad(
      op, grad, lambda t: raw.ExtractVolumePatches(input=t, **attrs),
      spatial_rank=3)
