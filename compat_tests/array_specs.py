"""Specs for ops/array_grad.py rules."""

import numpy as np
import tensorflow as tf

from compat_tests.spec import Spec

_C = ("float64", "float32", "complex128")


def _i32(values):
  return tf.constant(values, tf.int32)


def _i64(values):
  return tf.constant(values, tf.int64)


def _sq(y):
  """y * y: makes a linear op's second derivative non-trivial."""
  return y * y


SPECS = [
    # ----- Identities -----
    Spec("Identity", tf.identity, [(2, 3)], dtypes=_C),
    Spec("IdentityN", lambda x, y: tf.identity_n([x, y]), [(2, 3), (3,)],
         dtypes=_C),
    Spec("IdentityN", lambda x, y: tf.identity_n([x, y])[0], [(2,), (3,)],
         "one_output_used"),
    Spec("PlaceholderWithDefault",
         lambda x: tf.compat.v1.placeholder_with_default(x, [2, 3]),
         [(2, 3)]),
    Spec("EnsureShape", lambda x: tf.ensure_shape(x, [2, None]), [(2, 3)],
         dtypes=_C),
    Spec("CheckNumerics", lambda x: tf.debugging.check_numerics(x, "m"),
         [(2, 3)]),
    Spec("CheckNumericsV2",
         lambda x: tf.raw_ops.CheckNumericsV2(tensor=x, message="m"),
         [(2, 3)]),
    Spec("StopGradient", lambda x: x * tf.stop_gradient(x), [(3,)], order=0,
         note="treats x as a constant on purpose: finite differences see "
         "the true derivative"),

    # ----- Reshaping -----
    Spec("Reshape", lambda x: _sq(tf.reshape(x, [3, 2])), [(2, 3)],
         dtypes=_C),
    Spec("Reshape", lambda x: tf.reshape(x, [-1]), [()], "scalar"),
    Spec("Reshape", lambda x: tf.reshape(tf.gather(x, [0, 2, 0]), [-1]),
         [(3, 2)], "sliced_grad"),
    Spec("ExpandDims", lambda x: _sq(tf.expand_dims(x, -1)), [(2, 3)],
         dtypes=_C),
    Spec("Squeeze", lambda x: _sq(tf.squeeze(x, [1])), [(2, 1, 3)],
         dtypes=_C),
    Spec("Transpose", lambda x: _sq(tf.transpose(x)), [(2, 3)], dtypes=_C),
    Spec("Transpose", lambda x: tf.transpose(x, _i64([2, 0, 1])),
         [(2, 3, 4)], "rank3_int64_perm"),
    Spec("ConjugateTranspose", lambda x: tf.transpose(x, conjugate=True),
         [(2, 3)], dtypes=_C),
    Spec("BroadcastTo", lambda x: _sq(tf.broadcast_to(x, [2, 3, 4])),
         [(3, 1)], dtypes=_C),
    Spec("BroadcastTo", lambda x: tf.broadcast_to(x, [2, 3]), [(2, 3)],
         "same_shape"),
    Spec("Tile", lambda x: _sq(tf.tile(x, [2, 3])), [(2, 3)], dtypes=_C),
    Spec("Tile", lambda x: tf.tile(x, _i64([3])), [(1,)],
         "int64_multiples"),
    Spec("Tile", lambda x: tf.gather(tf.tile(x, [2, 1]), [0, 3, 3]),
         [(2, 3)], "sliced_grad"),
    Spec("ReverseV2", lambda x: _sq(tf.reverse(x, [1])), [(2, 3)],
         dtypes=_C),
    Spec("ReverseV2", lambda x: tf.reverse(x, [0, -1]), [(2, 3, 2)],
         "two_axes"),
    Spec("Reverse", lambda x: tf.raw_ops.Reverse(tensor=x,
                                                 dims=[True, False]),
         [(2, 3)]),
    Spec("ReverseSequence",
         lambda x: _sq(tf.reverse_sequence(x, [1, 3], seq_axis=1,
                                           batch_axis=0)), [(2, 3)]),

    # ----- Concatenation, stacking, splitting -----
    Spec("ConcatV2", lambda x, y: _sq(tf.concat([x, y], 1)),
         [(2, 3), (2, 1)], dtypes=_C),
    Spec("ConcatV2", lambda x, y, z: tf.concat([x, y, z], -1),
         [(2,), (3,), (1,)], "three_neg_axis"),
    Spec("ConcatV2", lambda x: tf.concat([x], 0), [(2,)], "single"),
    Spec("ConcatV2", lambda x, y: tf.concat([x, y], tf.rank(x) - 1),
         [(2, 3), (2, 1)], "dynamic_axis"),
    Spec("ConcatV2", lambda x, y: tf.gather(tf.concat([x, y], 0), [0, 3, 4, 3]),
         [(2, 2), (3, 2)], "sliced_grad_axis0"),
    Spec("ConcatV2", lambda x, y: tf.gather(tf.concat([x, y], 1), [1, 0, 1]),
         [(2, 2), (2, 3)], "sliced_grad_axis1"),
    Spec("Concat", lambda x, y: tf.raw_ops.Concat(concat_dim=0,
                                                  values=[x, y]),
         [(2, 3), (1, 3)]),
    Spec("Pack", lambda x, y: _sq(tf.stack([x, y], 1)), [(2, 3), (2, 3)],
         dtypes=_C),
    Spec("Pack", lambda x: tf.stack([x, x]), [()], "scalars"),
    Spec("Unpack", lambda x: [_sq(t) for t in tf.unstack(x, axis=1)],
         [(2, 3)], dtypes=_C),
    Spec("Unpack", lambda x: tf.unstack(x)[1], [(3, 2)], "one_output_used"),
    Spec("Split", lambda x: [_sq(t) for t in tf.split(x, 3, axis=1)],
         [(2, 3)], dtypes=_C),
    Spec("Split", lambda x: tf.split(x, 2)[0], [(4,)], "one_output_used"),
    Spec("SplitV", lambda x: [_sq(t) for t in tf.split(x, [1, 2], axis=-1)],
         [(2, 3)], dtypes=_C),

    # ----- Slicing and padding -----
    Spec("Slice", lambda x: _sq(tf.slice(x, [1, 0], [1, 2])), [(2, 3)],
         dtypes=_C),
    Spec("Slice", lambda x: tf.slice(x, _i64([1, 1]), _i64([-1, 2])),
         [(3, 4)], "int64_minus_one"),
    Spec("StridedSlice", lambda x: _sq(x[1:, ::2]), [(3, 4)], dtypes=_C),
    Spec("StridedSlice", lambda x: x[::-1, -2::-2], [(3, 4)],
         "negative_strides"),
    Spec("StridedSlice", lambda x: x[1, tf.newaxis, :2], [(3, 4)],
         "shrink_new_axis"),
    Spec("StridedSlice", lambda x: x[..., 1], [(2, 3, 2)], "ellipsis"),
    Spec("StridedSliceGrad",
         lambda x: tf.gradients(_sq(x[1:, ::2]), x)[0], [(3, 4)],
         note="the gradient of a StridedSlice, differentiated again"),
    Spec("Pad", lambda x: _sq(tf.pad(x, [[1, 0], [2, 1]])), [(2, 3)],
         dtypes=_C),
    Spec("Pad", lambda x: tf.pad(x, _i64([[0, 2]])), [(2,)], "int64"),
    Spec("PadV2", lambda x: tf.pad(x, [[1, 1], [0, 2]], constant_values=3.),
         [(2, 3)]),
    Spec("MirrorPad", lambda x: _sq(tf.pad(x, [[1, 1], [2, 0]], "REFLECT")),
         [(3, 3)], dtypes=_C),
    Spec("MirrorPad", lambda x: tf.pad(x, [[1, 2]], "SYMMETRIC"), [(3,)],
         "symmetric"),
    Spec("MirrorPadGrad",
         lambda x: tf.raw_ops.MirrorPadGrad(input=x, paddings=[[1, 1]],
                                            mode="REFLECT"), [(5,)]),

    # ----- Gather and scatter -----
    Spec("GatherV2", lambda x: _sq(tf.gather(x, [2, 0, 2])), [(3, 2)],
         dtypes=_C),
    Spec("GatherV2", lambda x: tf.gather(x, _i64([[1, 0], [1, 1]])), [(3,)],
         "matrix_indices"),
    Spec("GatherV2", lambda x: _sq(tf.gather(x, [[2], [0]], axis=1)),
         [(2, 3, 2)], "axis1", dtypes=_C),
    Spec("GatherV2", lambda x: tf.gather(x, [1, 1, 0], axis=-1), [(2, 3)],
         "last_axis"),
    Spec("GatherV2", lambda x: tf.gather(x, [[0, 1], [2, 2]], axis=1,
                                         batch_dims=1), [(2, 3)],
         "batch_dims1"),
    Spec("GatherV2", lambda x: tf.gather(x, [[1, 0], [0, 0]], axis=2,
                                         batch_dims=1), [(2, 3, 2)],
         "batch_dims1_axis2"),
    Spec("GatherV2", lambda x: tf.gather(x, [[[1], [0]], [[0], [2]]],
                                         axis=2, batch_dims=-1),
         [(2, 2, 3)], "batch_dims_negative"),
    Spec("GatherV2", lambda x: tf.gather(tf.gather(x, [1, 0, 1]), [2, 2]),
         [(2, 3)], "sliced_grad"),
    Spec("Gather", lambda x: _sq(tf.raw_ops.Gather(params=x,
                                                   indices=[1, 1, 0])),
         [(2, 3)]),
    Spec("GatherNd", lambda x: _sq(tf.gather_nd(x, [[1, 0], [0, 2]])),
         [(2, 3)], dtypes=_C),
    Spec("GatherNd", lambda x: tf.gather_nd(x, [[1], [0], [1]]), [(2, 3)],
         "row_indices"),
    Spec("ScatterNd", lambda x: _sq(tf.scatter_nd([[1], [3]], x, [4, 2])),
         [(2, 2)], dtypes=_C),

    # ----- Selection and filling -----
    Spec("Select", lambda x, y: _sq(tf.raw_ops.Select(
        condition=tf.constant([[True, False, True], [False, False, True]]),
        x=x, y=y)), [(2, 3), (2, 3)], dtypes=_C),
    Spec("Select", lambda x, y: tf.raw_ops.Select(
        condition=tf.constant([False, True]), x=x, y=y), [(2, 3), (2, 3)],
         "row_condition"),
    Spec("SelectV2", lambda x, y: _sq(tf.where(
        tf.constant([[True, False, True], [False, False, True]]), x, y)),
         [(2, 3), (2, 3)], dtypes=_C),
    Spec("SelectV2", lambda x, y: tf.where(tf.constant([[True], [False]]),
                                           x, y), [(3,), ()], "broadcast"),
    Spec("Fill", lambda x: _sq(tf.fill([2, 3], x)), [()], dtypes=_C),

    # ----- Diagonals and bands -----
    Spec("Diag", lambda x: _sq(tf.linalg.tensor_diag(x)), [(3,)], dtypes=_C),
    Spec("DiagPart", lambda x: _sq(tf.linalg.tensor_diag_part(x)), [(3, 3)],
         dtypes=_C),
    Spec("MatrixDiag", lambda x: _sq(tf.raw_ops.MatrixDiag(diagonal=x)),
         [(2, 3)]),
    Spec("MatrixDiagV3", lambda x: _sq(tf.linalg.diag(x)), [(2, 3)],
         dtypes=_C),
    Spec("MatrixDiagV3", lambda x: tf.linalg.diag(x, k=(-1, 0), num_cols=3),
         [(2, 2)], "band"),
    Spec("MatrixDiagPart", lambda x: _sq(tf.raw_ops.MatrixDiagPart(input=x)),
         [(2, 3, 3)]),
    Spec("MatrixDiagPart", lambda x: tf.raw_ops.MatrixDiagPart(input=x),
         [(2, 3)], "wide"),
    Spec("MatrixDiagPartV3", lambda x: _sq(tf.linalg.diag_part(x)),
         [(2, 3, 3)], dtypes=_C),
    Spec("MatrixDiagPartV3", lambda x: tf.linalg.diag_part(x, k=(0, 1)),
         [(3, 4)], "band"),
    Spec("MatrixSetDiag", lambda x, d: _sq(tf.raw_ops.MatrixSetDiag(
        input=x, diagonal=d)), [(3, 2), (2,)]),
    Spec("MatrixSetDiagV3", lambda x, d: _sq(tf.linalg.set_diag(x, d)),
         [(2, 3, 3), (2, 3)], dtypes=_C),
    Spec("MatrixSetDiagV3", lambda x, d: tf.linalg.set_diag(x, d, k=(-1, 0)),
         [(3, 3), (2, 3)], "band"),
    Spec("MatrixBandPart", lambda x: _sq(tf.linalg.band_part(x, 1, 0)),
         [(3, 3)], dtypes=_C),
    Spec("MatrixBandPart", lambda x: tf.linalg.band_part(x, -1, 1),
         [(2, 3, 4)], "upper"),

    # ----- Block rearrangements -----
    Spec("SpaceToDepth", lambda x: _sq(tf.nn.space_to_depth(x, 2)),
         [(1, 2, 4, 1)]),
    Spec("DepthToSpace", lambda x: _sq(tf.nn.depth_to_space(x, 2)),
         [(1, 1, 2, 4)]),
    Spec("SpaceToBatchND", lambda x: _sq(tf.space_to_batch(
        x, [2], [[0, 1]])), [(1, 3, 2)]),
    Spec("BatchToSpaceND", lambda x: _sq(tf.batch_to_space(
        x, [2], [[0, 1]])), [(2, 2, 1)]),

    # ----- Not differentiable -----
    Spec("Shape", lambda x: tf.reshape(_sq(x), tf.shape(x)), [(2, 3)]),
    Spec("ShapeN", lambda x: tf.reshape(_sq(x), tf.shape_n([x, x])[1]),
         [(2, 3)]),
    Spec("Size", lambda x: tf.reshape(x, [tf.size(x)]), [(2, 2)]),
    Spec("Rank", lambda x: tf.reverse(x, [tf.rank(x) - 1]), [(2, 3)]),
    Spec("InvertPermutation",
         lambda x: tf.transpose(x, tf.math.invert_permutation([1, 0])),
         [(2, 3)]),
    Spec("BroadcastGradientArgs", lambda x: tf.reduce_sum(
        x, tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(x), s1=[1, 3])[0]),
         [(2, 3)]),
    Spec("ConcatOffset", lambda x: tf.slice(x, tf.raw_ops.ConcatOffset(
        concat_dim=1, shape=[[2, 1], [2, 2]])[1], [2, 2]), [(2, 3)]),
    Spec("Const", lambda x: x * tf.constant(2.0, x.dtype), [(2,)]),
    Spec("EditDistance", lambda x: [tf.identity(x), tf.raw_ops.EditDistance(
        hypothesis_indices=_i64([[0, 0], [0, 1]]), hypothesis_values=x,
        hypothesis_shape=_i64([1, 2]), truth_indices=_i64([[0, 0]]),
        truth_values=tf.constant([9.0], x.dtype), truth_shape=_i64([1, 1]))],
         [(2,)]),
    Spec("FakeQuantWithMinMaxArgsGradient",
         lambda x: x * tf.raw_ops.FakeQuantWithMinMaxArgsGradient(
             gradients=x, inputs=x), [(3,)], dtypes=("float32",), order=0,
         note="float32-only op; finite differences run in float64"),
    Spec("FakeQuantWithMinMaxVarsGradient",
         lambda x: x * tf.raw_ops.FakeQuantWithMinMaxVarsGradient(
             gradients=x, inputs=x, min=-3.0, max=3.0)[0], [(3,)],
         dtypes=("float32",), order=0,
         note="float32-only op; finite differences run in float64"),
    Spec("FakeQuantWithMinMaxVarsPerChannelGradient",
         lambda x: x * tf.raw_ops.FakeQuantWithMinMaxVarsPerChannelGradient(
             gradients=x, inputs=x, min=[-3.0] * 3, max=[3.0] * 3)[0],
         [(2, 3)], dtypes=("float32",), order=0,
         note="float32-only op; finite differences run in float64"),
    Spec("OnesLike", lambda x: x * tf.ones_like(x), [(2,)]),
    Spec("ZerosLike", lambda x: x + tf.zeros_like(x), [(2,)]),
    Spec("OneHot", lambda x: x * tf.one_hot([1, 0], 2, on_value=x[0, 0]),
         [(2, 2)], order=0,
         note="on_value is treated as a constant on purpose: finite "
         "differences see the true derivative"),
]

# ----- Diagonals v2, block rearrangements v1, scatter, fake quantization -----

_raw = tf.raw_ops
_F32_ONLY = ("float32",)
_STRAIGHT_THROUGH = ("straight-through estimator: the rule's gradient is not "
                     "the (zero almost everywhere) derivative of the "
                     "quantizer, so finite differences do not apply")
_NO_F64_KERNEL = "no float64 kernel, so no finite-difference check; " + \
    _STRAIGHT_THROUGH


def _in_range(rng, shape):
  """Values inside the quantization range [-1, 1] used below."""
  return rng.uniform(-0.9, 0.9, shape)


def _padding(t):
  return tf.zeros([], t.dtype)


SPECS += [
    Spec("MatrixDiagV2", lambda d: _raw.MatrixDiagV2(
        diagonal=d, k=1, num_rows=-1, num_cols=-1, padding_value=_padding(d)),
         [(2, 3)], "superdiagonal"),
    Spec("MatrixDiagV2", lambda d: _raw.MatrixDiagV2(
        diagonal=d, k=-1, num_rows=3, num_cols=4, padding_value=_padding(d)),
         [(2,)], "rectangular"),
    Spec("MatrixDiagPartV2", lambda x: _raw.MatrixDiagPartV2(
        input=x, k=0, padding_value=_padding(x)), [(2, 3, 3)], "main"),
    Spec("MatrixDiagPartV2", lambda x: _raw.MatrixDiagPartV2(
        input=x, k=1, padding_value=_padding(x)), [(3, 4)], "superdiagonal"),
    Spec("MatrixSetDiagV2", lambda x, d: _raw.MatrixSetDiagV2(
        input=x, diagonal=d, k=0), [(2, 3, 3), (2, 3)], "main"),
    Spec("MatrixSetDiagV2", lambda x, d: _raw.MatrixSetDiagV2(
        input=x, diagonal=d, k=-1), [(3, 4), (2,)], "subdiagonal"),
    Spec("SpaceToBatch", lambda x: _raw.SpaceToBatch(
        input=x, paddings=[[0, 0], [1, 1]], block_size=2), [(1, 2, 2, 1)]),
    Spec("BatchToSpace", lambda x: _raw.BatchToSpace(
        input=x, crops=[[0, 0], [1, 1]], block_size=2), [(4, 1, 2, 1)]),
    Spec("ScatterNdNonAliasingAdd", lambda x, u: _raw.ScatterNdNonAliasingAdd(
        input=x, indices=[[1], [3], [1]], updates=u), [(4, 2), (3, 2)]),
    Spec("QuantizeAndDequantizeV2", lambda x: _raw.QuantizeAndDequantizeV2(
        input=x, input_min=-1.0, input_max=1.0, range_given=True),
         [(2, 3)], domain=_in_range, order=0, note=_STRAIGHT_THROUGH),
    Spec("QuantizeAndDequantizeV3", lambda x: _raw.QuantizeAndDequantizeV3(
        input=x, input_min=-1.0, input_max=1.0, num_bits=4,
        range_given=True), [(2, 3)], domain=_in_range, order=0,
         note=_STRAIGHT_THROUGH),
    Spec("QuantizeAndDequantizeV4", lambda x: _raw.QuantizeAndDequantizeV4(
        input=x, input_min=-0.5, input_max=0.5, range_given=True),
         [(2, 3)], "some_clamped", domain=_in_range, order=0,
         note=_STRAIGHT_THROUGH),
    Spec("FakeQuantWithMinMaxArgs", lambda x: _raw.FakeQuantWithMinMaxArgs(
        inputs=x, min=-0.5, max=0.5), [(2, 3)], dtypes=_F32_ONLY,
         domain=_in_range, order=0, note=_NO_F64_KERNEL),
    Spec("FakeQuantWithMinMaxVars", lambda x: _raw.FakeQuantWithMinMaxVars(
        inputs=x, min=-0.5, max=0.5), [(2, 3)], dtypes=_F32_ONLY,
         domain=_in_range, order=0, note=_NO_F64_KERNEL),
    Spec("FakeQuantWithMinMaxVars", lambda x, lo, hi:
         _raw.FakeQuantWithMinMaxVars(inputs=x, min=lo - 1.0, max=hi + 1.0,
                                      num_bits=4), [(2, 3), (), ()],
         "learned_range", dtypes=_F32_ONLY, domain=_in_range, order=0,
         note=_NO_F64_KERNEL),
    Spec("FakeQuantWithMinMaxVarsPerChannel", lambda x, lo, hi:
         _raw.FakeQuantWithMinMaxVarsPerChannel(inputs=x, min=lo - 0.6,
                                                max=hi + 0.6),
         [(2, 3), (3,), (3,)], dtypes=_F32_ONLY, domain=_in_range, order=0,
         note=_NO_F64_KERNEL),
]


def _image_patches(sizes, strides, rates, padding):
  return lambda x: tf.image.extract_patches(
      x, [1, *sizes, 1], [1, *strides, 1], [1, *rates, 1], padding)


def _volume_patches(sizes, strides, padding):
  return lambda x: tf.extract_volume_patches(
      x, [1, *sizes, 1], [1, *strides, 1], padding)


SPECS += [
    Spec("ExtractImagePatches", _image_patches((2, 2), (1, 1), (1, 1),
                                               "VALID"), [(2, 3, 4, 2)],
         "valid", dtypes=("float64", "float32", "complex128")),
    Spec("ExtractImagePatches", _image_patches((2, 3), (2, 1), (1, 1),
                                               "SAME"), [(1, 4, 4, 1)],
         "same_strided"),
    Spec("ExtractImagePatches", _image_patches((2, 2), (1, 2), (2, 1),
                                               "SAME"), [(1, 4, 5, 2)],
         "dilated"),
    Spec("ExtractVolumePatches", _volume_patches((2, 2, 1), (1, 1, 1),
                                                 "VALID"), [(1, 3, 3, 2, 1)],
         "valid"),
    Spec("ExtractVolumePatches", _volume_patches((2, 1, 2), (2, 1, 1),
                                                 "SAME"), [(2, 3, 2, 3, 2)],
         "same_strided"),
]

# ----- Rules TF gets wrong: finite differences only -----

# TF's rule for these takes one incoming gradient although the op has three
# outputs, so stock tf.gradients raises TypeError on them.
TF_WRONG_GRADIENT = ("QuantizeAndDequantizeV4Grad",)
_TF_RAISES = ("stock TF's rule raises TypeError (it accepts one gradient for "
              "the op's three outputs)")


def _off_boundaries(rng, shape):
  """Values at least 0.2 away from the range ends (-1, 0, 1) used below."""
  return rng.choice([-1.0, 1.0], shape) * (rng.integers(0, 2, shape)
                                           + rng.uniform(0.2, 0.8, shape))


def _qdq_v4_grad(lo, hi, axis=-1):
  def build(g, x):
    return _raw.QuantizeAndDequantizeV4Grad(
        gradients=g, input=x, input_min=tf.constant(lo, g.dtype),
        input_max=tf.constant(hi, g.dtype), axis=axis)
  return build


NUMERIC_ONLY_SPECS = [
    Spec("QuantizeAndDequantizeV4Grad", _qdq_v4_grad(-1.0, 1.0),
         [(2, 3), (2, 3)], "per_tensor", domain=_off_boundaries,
         note=_TF_RAISES),
    Spec("QuantizeAndDequantizeV4Grad",
         _qdq_v4_grad([-1.0, 0.0, -1.0], [1.0, 1.0, 0.0], axis=1),
         [(2, 3), (2, 3)], "per_channel", domain=_off_boundaries,
         note=_TF_RAISES),
]
