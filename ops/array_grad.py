"""Gradient rules for array ops (TF's array_grad.py family).

Most array ops only move, copy or drop elements, so each gradient is the
adjoint data movement: slicing undoes padding, concatenation undoes
splitting, a scatter-add undoes a gather. Shapes are taken statically
whenever they are fully known, so no Shape ops are emitted in that case.
"""

import numpy as np
import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_linear, def_not_differentiable


def _dense(grad):
  """`grad` as a dense Tensor (IndexedSlices rows are summed into place)."""
  if not isinstance(grad, tf.IndexedSlices):
    return grad
  return tf.math.unsorted_segment_sum(grad.values, grad.indices,
                                      grad.dense_shape[0])


def _shape(t, dtype=tf.int32):
  """`t`'s shape: a Python list when static, else a Shape op of `dtype`."""
  static = _helpers.static_shape(t)
  return list(static) if static is not None else tf.shape(t, out_type=dtype)


def _const_or(t):
  """The constant value of `t` when known at graph time, else `t`."""
  value = tf.get_static_value(t)
  return t if value is None else value


def _is_static(part):
  """True for a shape piece held in Python (no Tensors inside)."""
  return isinstance(part, (list, tuple, np.ndarray)) and not any(
      isinstance(d, tf.Tensor) for d in part)


def _concat_shapes(*parts):
  """Joins shape pieces: a list when all are static, else a Tensor."""
  if all(_is_static(p) for p in parts):
    return [int(d) for p in parts for d in p]
  return tf.concat([tf.cast(p, tf.int32) for p in parts], 0)


def _prod(part):
  """Product of a shape piece: an int when static, else a Prod op."""
  if _is_static(part):
    return int(np.prod(part, dtype=np.int64))
  return tf.reduce_prod(tf.cast(part, tf.int32))


def _num_elements(t):
  """Number of elements of `t`: an int when static, else a Size op."""
  static = _helpers.static_shape(t)
  return int(np.prod(static, dtype=np.int64)) if static is not None \
      else tf.size(t)


def _reshape_like(grad, x):
  """Reshapes `grad` (densified) to `x`'s shape; a single unknown dimension
  becomes -1 so no Shape op is needed."""
  shape = x.shape
  if shape.rank is not None and not shape.is_fully_defined():
    dims = [-1 if d is None else d for d in shape.as_list()]
    if dims.count(-1) == 1 and 0 not in dims:
      return tf.reshape(_dense(grad), dims)
  return tf.reshape(_dense(grad), _helpers.shape_of(x))


def _inverse_perm(perm):
  """The permutation undoing `perm` (static when possible)."""
  static = tf.get_static_value(perm)
  if static is not None:
    return np.argsort(static).astype(perm.dtype.as_numpy_dtype)
  return tf.math.invert_permutation(perm)


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
  return tf.debugging.check_numerics(
      grad, "Not a number (NaN) or infinity (Inf) values detected in "
      f"gradient. {message}")


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
                    f"{op.get_attr('message').decode()}")


# ----- Reshaping -----


@RegisterGradient("Reshape")
def _reshape_grad(op, grad):
  """dx = reshape(grad, shape(x))."""
  return _reshape_like(grad, op.inputs[0]), None


@RegisterGradient("ExpandDims")
def _expand_dims_grad(op, grad):
  """dx = reshape(grad, shape(x))."""
  return _reshape_like(grad, op.inputs[0]), None


@RegisterGradient("Squeeze")
def _squeeze_grad(op, grad):
  """dx = reshape(grad, shape(x))."""
  return _reshape_like(grad, op.inputs[0])


@RegisterGradient("Transpose")
def _transpose_grad(op, grad):
  """dx = transpose(grad, inverse(perm))."""
  return tf.transpose(grad, _inverse_perm(op.inputs[1])), None


@RegisterGradient("ConjugateTranspose")
def _conjugate_transpose_grad(op, grad):
  """dx = conj(transpose(grad, inverse(perm)))."""
  perm = _inverse_perm(op.inputs[1])
  return tf.transpose(grad, perm, conjugate=True), None


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
    rows = tf.cast(x_shape[0], grad.indices.dtype)
    grad = tf.math.unsorted_segment_sum(
        grad.values, tf.math.floormod(grad.indices, rows), rows)
    reps = _concat_shapes([1], reps[1:])
  if isinstance(reps, (list, np.ndarray)) and isinstance(x_shape, list):
    split = [int(d) for pair in zip(reps, x_shape) for d in pair]
    axes = list(range(0, len(split), 2))
  else:
    pairs = tf.stack([tf.cast(reps, tf.int32), tf.cast(x_shape, tf.int32)])
    split = tf.reshape(tf.transpose(pairs), [-1])
    axes = tf.range(0, tf.size(split), 2)
  dx = tf.reduce_sum(tf.reshape(grad, split), axes)
  dx.set_shape(x.shape)
  return dx, None


@RegisterGradient("ReverseV2")
def _reverse_v2_grad(op, grad):
  """dx = reverse(grad, axis)."""
  return tf.reverse(grad, op.inputs[1]), None


@RegisterGradient("Reverse")
def _reverse_grad(op, grad):
  """dx = reverse(grad, dims) (boolean-mask form)."""
  return raw.Reverse(tensor=grad, dims=op.inputs[1]), None


@RegisterGradient("ReverseSequence")
def _reverse_sequence_grad(op, grad):
  """dx = the same per-row reversal applied to grad."""
  return tf.reverse_sequence(grad, op.inputs[1],
                             seq_axis=op.get_attr("seq_dim"),
                             batch_axis=op.get_attr("batch_dim")), None


# ----- Concatenation, stacking, splitting -----


def _split_like(grad, values, axis, axis_t):
  """Cuts dense `grad` into pieces shaped like `values` along the axis
  (`axis` when known statically, else the tensor `axis_t`)."""
  shapes = [_helpers.static_shape(v) for v in values]
  if axis is not None and None not in shapes:
    axis = int(axis) % len(shapes[0])
    return tf.split(grad, [s[axis] for s in shapes], axis)
  axis = tf.math.floormod(axis_t, tf.rank(values[0]))
  sizes = tf.shape_n(values)
  offsets = raw.ConcatOffset(concat_dim=axis, shape=sizes)
  return [tf.slice(grad, o, s) for o, s in zip(offsets, sizes)]


def _split_slices_like(grad, values, axis):
  """Cuts IndexedSlices `grad` into IndexedSlices shaped like `values`."""
  if axis is None or (axis < 0 and values[0].shape.rank is None):
    raise ValueError("Can only compute IndexedSlices gradient with "
                     "statically-known concat_dim (and rank if negative)")
  axis = int(axis) % values[0].shape.rank if axis < 0 else int(axis)
  if axis > 0:
    sizes = [_shape(v)[axis] for v in values]
    pieces = tf.split(grad.values, tf.stack(sizes) if any(
        isinstance(s, tf.Tensor) for s in sizes) else sizes, axis)
    return [tf.IndexedSlices(p, grad.indices, _helpers.shape_of(v))
            for p, v in zip(pieces, values)]
  out, start = [], 0
  for v in values:
    end = start + tf.cast(_shape(v)[0], grad.indices.dtype)
    keep = tf.squeeze(tf.where(tf.logical_and(grad.indices >= start,
                                              grad.indices < end)), [1])
    out.append(tf.IndexedSlices(tf.gather(grad.values, keep),
                                tf.gather(grad.indices, keep) - start,
                                _helpers.shape_of(v)))
    start = end
  return out


def _concat_grad(grad, values, axis_t):
  """The gradient pieces for concatenated `values` (dense or sliced)."""
  if len(values) == 1:
    return [grad]
  axis = tf.get_static_value(axis_t)
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
  return tf.unstack(grad, num=op.get_attr("N"), axis=op.get_attr("axis"))


@RegisterGradient("Unpack")
def _unpack_grad(op, *grads):
  """dx = stack(grads, axis)."""
  return tf.stack(grads, axis=op.get_attr("axis"))


@RegisterGradient("Split")
def _split_grad(op, *grads):
  """dx = concat(grads, axis)."""
  return None, tf.concat(grads, op.inputs[0])


@RegisterGradient("SplitV")
def _split_v_grad(op, *grads):
  """dx = concat(grads, axis)."""
  return tf.concat(grads, op.inputs[2]), None, None


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
  b = tf.get_static_value(begin)
  if x_shape is not None and y_shape is not None and b is not None:
    pads = [[int(s), int(n - s - m)] for s, n, m in zip(b, x_shape, y_shape)]
    return tf.pad(grad, pads), None, None
  after = (tf.shape(x, out_type=begin.dtype) - begin
           - tf.shape(op.outputs[0], out_type=begin.dtype))
  return tf.pad(grad, tf.stack([begin, after], axis=1)), None, None


@RegisterGradient("StridedSlice")
def _strided_slice_grad(op, grad):
  """dx = grad scattered back into zeros at the sliced positions."""
  x, begin, end, strides = op.inputs
  static = _helpers.static_shape(x)
  shape = (np.array(static, begin.dtype.as_numpy_dtype) if static is not None
           else tf.shape(x, out_type=begin.dtype))
  dx = raw.StridedSliceGrad(shape=shape, begin=begin, end=end,
                                   strides=strides, dy=grad, **_mask_attrs(op))
  return dx, None, None, None


@RegisterGradient("StridedSliceGrad")
def _strided_slice_grad_grad(op, grad):
  """d(dy) = the same strided slice of grad."""
  _, begin, end, strides, _ = op.inputs
  ddy = raw.StridedSlice(input=grad, begin=begin, end=end,
                                strides=strides, **_mask_attrs(op))
  return None, None, None, None, ddy


def _pad_grad(op, grad):
  """dx = the slice of grad that x occupies."""
  x, paddings = op.inputs[:2]
  pads, x_shape = tf.get_static_value(paddings), _helpers.static_shape(x)
  if pads is not None and x_shape is not None:
    dx = tf.slice(grad, [int(p) for p in pads[:, 0]], x_shape)
  else:
    dx = tf.slice(grad, paddings[:, 0], tf.shape(x, out_type=paddings.dtype))
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
  values = tf.reshape(_dense(grad), _concat_shapes([n], params_shape[1:]))
  dense_shape = (tf.constant(params_shape, tf.int32)
                 if _is_static(params_shape) else params_shape)
  return tf.IndexedSlices(values, tf.reshape(indices, [n]), dense_shape)


def _batch_offsets(indices, batch_shape, batch_dims, rows):
  """indices + (flat batch position) * rows, so batches index disjoint rows."""
  offsets = tf.range(_prod(batch_shape), dtype=indices.dtype)
  offsets *= tf.cast(rows, indices.dtype)
  tail = [1] * (indices.shape.rank - batch_dims)
  return indices + tf.reshape(offsets, _concat_shapes(batch_shape, tail))


def _gather_axis_grad(grad, params, indices, axis, batch_dims):
  """Dense gradient of a gather along `axis` after `batch_dims` batch dims:
  move the gathered axis next to the batch dims, segment-sum, move back."""
  ps, rank = _shape(params), params.shape.rank
  values = tf.reshape(_dense(grad), _concat_shapes(ps[:axis], [-1],
                                                   ps[axis + 1:]))
  perm = (list(range(batch_dims)) + [axis] + list(range(batch_dims, axis))
          + list(range(axis + 1, rank)))
  moved = perm != sorted(perm)
  values = tf.transpose(values, perm) if moved else values
  rest = _concat_shapes(ps[batch_dims:axis], ps[axis + 1:])
  if batch_dims:
    indices = _batch_offsets(indices, ps[:batch_dims], batch_dims, ps[axis])
    values = tf.reshape(values, _concat_shapes([-1], rest))
  rows = _prod(ps[:batch_dims]) * ps[axis]
  summed = tf.math.unsorted_segment_sum(values, tf.reshape(indices, [-1]),
                                        rows)
  if batch_dims:
    summed = tf.reshape(summed, _concat_shapes(ps[:batch_dims], [ps[axis]],
                                               rest))
  return tf.transpose(summed, np.argsort(perm)) if moved else summed


@RegisterGradient("GatherV2")
def _gather_v2_grad(op, grad):
  """d params = grad's rows summed back where they were gathered from:
  IndexedSlices for axis 0, a dense segment sum otherwise."""
  params, indices, axis_t = op.inputs
  axis = tf.get_static_value(axis_t)
  batch_dims = op.get_attr("batch_dims")
  if batch_dims < 0:
    batch_dims += indices.shape.rank
  if axis is not None and int(axis) == 0:
    return _gathered_rows(grad, _shape(params), indices), None, None
  if axis is None:
    raise ValueError("GatherV2 gradient needs a statically known axis")
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
  static = _helpers.static_shape(params)
  shape = (tf.constant(static, indices.dtype) if static is not None
           else tf.shape(params, out_type=indices.dtype))
  if indices.shape.rank == 2 and indices.shape[-1] == 1:
    return tf.IndexedSlices(grad, tf.squeeze(indices, -1), shape), None
  dx = raw.ScatterNd(indices=indices, updates=grad, shape=shape,
                            bad_indices_policy=op.get_attr(
                                "bad_indices_policy"))
  return dx, None


@RegisterGradient("ScatterNd")
def _scatter_nd_grad(op, grad):
  """d updates = grad gathered at the scatter indices."""
  return None, tf.gather_nd(grad, op.inputs[0]), None


# ----- Selection and filling -----


@RegisterGradient("Select")
def _select_grad(op, grad):
  """dx = grad where cond, dy = grad where not cond (cond may be a vector
  selecting rows)."""
  cond, x = op.inputs[0], op.inputs[1]
  zeros = tf.zeros_like(x)
  return (None, raw.Select(condition=cond, x=grad, y=zeros),
          raw.Select(condition=cond, x=zeros, y=grad))


@RegisterGradient("SelectV2")
def _select_v2_grad(op, grad):
  """dx = grad where cond, dy = grad where not cond, each un-broadcast."""
  cond, x, y = op.inputs
  zero = tf.zeros([], grad.dtype)
  gx = raw.SelectV2(condition=cond, t=grad, e=zero)
  gy = raw.SelectV2(condition=cond, t=zero, e=grad)
  return None, _helpers.unbroadcast(gx, x), _helpers.unbroadcast(gy, y)


@RegisterGradient("Fill")
def _fill_grad(op, grad):
  """d value = sum(grad)."""
  del op
  return None, tf.reduce_sum(grad)


# ----- Block rearrangements -----


@RegisterGradient("SpaceToDepth")
def _space_to_depth_grad(op, grad):
  """The adjoint of SpaceToDepth is DepthToSpace."""
  fmt = op.get_attr("data_format").decode()
  if fmt == "NCHW_VECT_C":
    raise ValueError("Cannot compute SpaceToDepth gradient with NCHW_VECT_C")
  return tf.nn.depth_to_space(grad, op.get_attr("block_size"),
                              data_format=fmt)


@RegisterGradient("DepthToSpace")
def _depth_to_space_grad(op, grad):
  """The adjoint of DepthToSpace is SpaceToDepth."""
  fmt = op.get_attr("data_format").decode()
  if fmt == "NCHW_VECT_C":
    raise ValueError("Cannot compute DepthToSpace gradient with NCHW_VECT_C")
  return tf.nn.space_to_depth(grad, op.get_attr("block_size"),
                              data_format=fmt)


@RegisterGradient("SpaceToBatchND")
def _space_to_batch_nd_grad(op, grad):
  """The adjoint of SpaceToBatchND is BatchToSpaceND."""
  return tf.batch_to_space(grad, op.inputs[1], op.inputs[2]), None, None


@RegisterGradient("BatchToSpaceND")
def _batch_to_space_nd_grad(op, grad):
  """The adjoint of BatchToSpaceND is SpaceToBatchND."""
  return tf.space_to_batch_nd(grad, op.inputs[1], op.inputs[2]), None, None


# ----- Diagonals and bands -----


def _zeros_shaped_like(t, dtype):
  """Zeros of `t`'s shape (a constant shape when static)."""
  static = _helpers.static_shape(t)
  if static is not None:
    return tf.zeros(static, dtype)
  return tf.zeros_like(t, dtype=dtype)


@RegisterGradient("Diag")
def _diag_grad(op, grad):
  """d diagonal = diag_part(grad)."""
  del op
  return tf.linalg.tensor_diag_part(grad)


@RegisterGradient("DiagPart")
def _diag_part_grad(op, grad):
  """dx = diag(grad)."""
  del op
  return tf.linalg.tensor_diag(grad)


@RegisterGradient("MatrixDiag")
def _matrix_diag_grad(op, grad):
  """d diagonal = matrix_diag_part(grad)."""
  del op
  return raw.MatrixDiagPart(input=grad)


@RegisterGradient("MatrixDiagV3")
def _matrix_diag_v3_grad(op, grad):
  """d diagonals = the k-band diagonals of grad."""
  d = tf.linalg.diag_part(grad, k=op.inputs[1], align=op.get_attr("align"))
  return d, None, None, None, None


@RegisterGradient("MatrixDiagPart")
def _matrix_diag_part_grad(op, grad):
  """dx = grad placed on the main diagonal of zeros."""
  x = op.inputs[0]
  rows, cols = x.shape[-2:] if x.shape.rank is not None else (None, None)
  if rows is not None and rows == cols:
    return raw.MatrixDiag(diagonal=grad)
  return raw.MatrixSetDiag(input=tf.zeros_like(x), diagonal=grad)


@RegisterGradient("MatrixDiagPartV3")
def _matrix_diag_part_v3_grad(op, grad):
  """dx = grad placed on the k-band diagonals of zeros."""
  x, k = op.inputs[0], op.inputs[1]
  align = op.get_attr("align")
  matrix = x.shape[-2:] if x.shape.rank is not None else tf.TensorShape(None)
  if matrix.is_fully_defined():
    dx = tf.linalg.diag(grad, k=k, num_rows=matrix[0], num_cols=matrix[1],
                        align=align)
  else:
    dx = tf.linalg.set_diag(tf.zeros_like(x), grad, k=k, align=align)
  return dx, None, None


@RegisterGradient("MatrixSetDiag")
def _matrix_set_diag_grad(op, grad):
  """dx = grad with its diagonal zeroed; d diagonal = grad's diagonal."""
  zeros = _zeros_shaped_like(op.inputs[1], grad.dtype)
  return (raw.MatrixSetDiag(input=grad, diagonal=zeros),
          raw.MatrixDiagPart(input=grad))


@RegisterGradient("MatrixSetDiagV3")
def _matrix_set_diag_v3_grad(op, grad):
  """dx = grad with its k-band zeroed; d diagonals = grad's k-band."""
  k, align = op.inputs[2], op.get_attr("align")
  zeros = _zeros_shaped_like(op.inputs[1], grad.dtype)
  return (tf.linalg.set_diag(grad, zeros, k=k, align=align),
          tf.linalg.diag_part(grad, k=k, align=align), None)


@RegisterGradient("MatrixBandPart")
def _matrix_band_part_grad(op, grad):
  """dx = the same band of grad."""
  return tf.linalg.band_part(grad, op.inputs[1], op.inputs[2]), None, None


# ----- Diagonals, version 2 (diagonals packed left-aligned) -----


@RegisterGradient("MatrixDiagV2")
def _matrix_diag_v2_grad(op, grad):
  """d diagonals = the k-band diagonals of grad; the sizes and padding value
  get none."""
  d = raw.MatrixDiagPartV2(input=grad, k=op.inputs[1],
                                  padding_value=tf.zeros([], grad.dtype))
  return d, None, None, None, None


@RegisterGradient("MatrixDiagPartV2")
def _matrix_diag_part_v2_grad(op, grad):
  """dx = grad placed on the k-band diagonals of zeros."""
  x, k = op.inputs[0], op.inputs[1]
  zero = tf.zeros([], grad.dtype)
  matrix = x.shape[-2:] if x.shape.rank is not None else tf.TensorShape(None)
  if matrix.is_fully_defined():
    dx = raw.MatrixDiagV2(diagonal=grad, k=k, num_rows=matrix[0],
                                 num_cols=matrix[1], padding_value=zero)
  else:
    dx = raw.MatrixSetDiagV2(input=tf.zeros_like(x), diagonal=grad, k=k)
  return dx, None, None


@RegisterGradient("MatrixSetDiagV2")
def _matrix_set_diag_v2_grad(op, grad):
  """dx = grad with its k-band zeroed; d diagonals = grad's k-band."""
  k = op.inputs[2]
  zeros = _zeros_shaped_like(op.inputs[1], grad.dtype)
  return (raw.MatrixSetDiagV2(input=grad, diagonal=zeros, k=k),
          raw.MatrixDiagPartV2(input=grad, k=k,
                                      padding_value=tf.zeros([], grad.dtype)),
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
  return grad, None, tf.gather_nd(grad, op.inputs[1])


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
  shape = tf.shape(x, out_type=tf.int64)
  spatial = shape[1:1 + spatial_rank]
  pixels = tf.reduce_prod(spatial)
  numbers = tf.reshape(tf.range(1, pixels + 1, dtype=tf.int64),
                       tf.concat([[1], spatial, [1]], 0))
  sources = tf.reshape(extract(numbers), [-1])
  batch, channels = shape[0], shape[-1]
  per_element = tf.transpose(tf.reshape(grad, [batch, -1, channels]),
                             [1, 0, 2])
  summed = tf.math.unsorted_segment_sum(per_element, sources, pixels + 1)
  image = tf.reshape(summed[1:], tf.concat([spatial, [batch, channels]], 0))
  perm = list(range(spatial_rank, spatial_rank + 1)) + list(
      range(spatial_rank)) + [spatial_rank + 1]
  return tf.transpose(image, perm)


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
