"""Gradient rules for image ops (TF's image_grad.py family, plus the
projective transforms TF registers in image_ops.py).

Resizing is linear in the image, so its rules are the kernels' adjoints;
sizes, box indices and output shapes get None.
"""

import numpy as np
import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_not_differentiable

from tfgrad.emit import raw

_RESIZE_ATTRS = ("align_corners", "half_pixel_centers")


def _attrs(op, names):
  """The attributes `names` of `op`, as keyword arguments for a raw op."""
  return {name: op.get_attr(name) for name in names}


def _image_size(image):
  """(height, width) of an NHWC image: a constant when static."""
  static = image.shape[1:3]
  if static.is_fully_defined():
    return tf.constant(static.as_list(), tf.int32)
  return tf.shape(image)[1:3]


# ----- Resizing -----


@RegisterGradient("ResizeNearestNeighbor")
def _resize_nearest_neighbor_grad(op, grad):
  """Each input pixel sums the grads of the output pixels that copy it."""
  image = op.inputs[0]
  image_grad = raw.ResizeNearestNeighborGrad(
      grads=grad, size=_image_size(image), **_attrs(op, _RESIZE_ATTRS))
  return image_grad, None


@RegisterGradient("ResizeBilinear")
def _resize_bilinear_grad(op, grad):
  """The adjoint of bilinear interpolation (ResizeBilinearGrad)."""
  image_grad = raw.ResizeBilinearGrad(grads=grad, original_image=op.inputs[0],
                                      **_attrs(op, _RESIZE_ATTRS))
  return image_grad, None


@RegisterGradient("ResizeBicubic")
def _resize_bicubic_grad(op, grad):
  """The adjoint of bicubic interpolation; float32/float64 images only."""
  image = op.inputs[0]
  if image.dtype not in (tf.float32, tf.float64):
    return None, None
  image_grad = raw.ResizeBicubicGrad(grads=grad, original_image=image,
                                     **_attrs(op, _RESIZE_ATTRS))
  return image_grad, None


@RegisterGradient("ScaleAndTranslate")
def _scale_and_translate_grad(op, grad):
  """The adjoint of the resampling kernel; scale/translation get None."""
  image, _, scale, translation = op.inputs
  image_grad = raw.ScaleAndTranslateGrad(
      grads=grad, original_image=image, scale=scale, translation=translation,
      **_attrs(op, ("kernel_type", "antialias")))
  return image_grad, None, None, None


@RegisterGradient("CropAndResize")
def _crop_and_resize_grad(op, grad):
  """Adjoint sampling for a float image, plus the boxes' gradient.

  The grad ops have no gradients themselves: first order only."""
  image, boxes, box_ind, _ = op.inputs
  image_grad = None
  if image.dtype in (tf.float16, tf.float32, tf.float64):
    shape = _helpers.static_shape(image)
    image_size = (tf.constant(shape, tf.int32) if shape is not None
                  else tf.shape(image))
    image_grad = raw.CropAndResizeGradImage(
        grads=grad, boxes=boxes, box_ind=box_ind, image_size=image_size,
        T=image.dtype, method=op.get_attr("method"))
  boxes_grad = raw.CropAndResizeGradBoxes(grads=grad, image=image,
                                          boxes=boxes, box_ind=box_ind)
  return image_grad, boxes_grad, None, None


# ----- Projective transforms -----


def _inverse_transforms(transforms):
  """Flat 8-parameter projective transforms of the inverse maps."""
  static = tf.get_static_value(transforms)
  if static is not None:
    flat = np.reshape(static, (-1, 8)).astype(np.float64)
    full = np.concatenate([flat, np.ones((len(flat), 1))], 1).reshape(-1, 3, 3)
    inverse = np.linalg.inv(full).reshape(-1, 9)
    return tf.constant(inverse[:, :8] / inverse[:, 8:], tf.float32)
  flat = tf.reshape(transforms, [-1, 8])
  full = tf.concat([flat, tf.ones_like(flat[:, :1])], 1)
  inverse = tf.reshape(tf.linalg.inv(tf.reshape(full, [-1, 3, 3])), [-1, 9])
  return inverse[:, :8] / inverse[:, 8:]


def _projective_transform_grad(op, grad, **extra):
  """Transforms the grad back by the inverse map, to the image's size."""
  image_grad = getattr(raw, op.type)(
      images=grad, transforms=_inverse_transforms(op.inputs[1]),
      output_shape=_image_size(op.inputs[0]),
      **_attrs(op, ("interpolation", "fill_mode")), **extra)
  return image_grad


@RegisterGradient("ImageProjectiveTransformV2")
def _image_projective_transform_v2_grad(op, grad):
  """The image warped back by the inverse transforms."""
  return _projective_transform_grad(op, grad), None, None


@RegisterGradient("ImageProjectiveTransformV3")
def _image_projective_transform_v3_grad(op, grad):
  """The image warped back by the inverse transforms, filling with 0."""
  fill = tf.zeros([], tf.float32)
  return _projective_transform_grad(op, grad, fill_value=fill), None, None, None


# ----- Colour spaces -----


def _one_hot_extremes(rgb):
  """One-hot (..., 3) masks of the channel holding the max and the min,
  breaking ties as the kernel does (red, then green, then blue)."""
  r, g, b = tf.unstack(rgb, axis=-1)
  dtype = rgb.dtype
  is_max = tf.stack([(r >= g) & (r >= b), (g > r) & (g >= b),
                     (b > r) & (b > g)], -1)
  is_min = tf.stack([(r < g) & (r < b), (g <= r) & (g < b),
                     (b <= r) & (b <= g)], -1)
  return tf.cast(is_max, dtype), tf.cast(is_min, dtype)


@RegisterGradient("RGBToHSV")
def _rgb_to_hsv_grad(op, grad):
  """Per pixel, with C = max - min: v = max, s = C / v and
  h = (n / C + k) / 6, n the difference of the two non-max channels."""
  rgb, hsv = op.inputs[0], op.outputs[0]
  is_max, is_min = _one_hot_extremes(rgb)
  value = hsv[..., 2:]
  chroma = hsv[..., 1:2] * value
  # n = rgb[i+1] - rgb[i+2] for the max channel i (indices mod 3)
  n_weights = (tf.gather(is_max, [2, 0, 1], axis=-1)
               - tf.gather(is_max, [1, 2, 0], axis=-1))
  n = tf.reduce_sum(n_weights * rgb, -1, keepdims=True)
  d_chroma = is_max - is_min
  d_hue = tf.math.divide_no_nan(n_weights * chroma - n * d_chroma,
                                6 * tf.square(chroma))
  d_sat = tf.math.divide_no_nan(d_chroma * value - chroma * is_max,
                                tf.square(value))
  g_h, g_s, g_v = grad[..., 0:1], grad[..., 1:2], grad[..., 2:]
  return g_h * d_hue + g_s * d_sat + g_v * is_max


# ----- Not differentiable -----

def_not_differentiable(
    "ResizeBilinearGrad", "HSVToRGB", "RandomCrop", "DrawBoundingBoxes",
    "SampleDistortedBoundingBox", "SampleDistortedBoundingBoxV2",
    "ExtractGlimpse", "NonMaxSuppression", "NonMaxSuppressionV2",
    "NonMaxSuppressionWithOverlaps", "GenerateBoundingBoxProposals")
