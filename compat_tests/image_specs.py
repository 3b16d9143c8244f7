"""Specs for ops/image_grad.py rules (NHWC images, at most 4x4)."""

import numpy as np
import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops
_IMAGE = (1, 3, 3, 2)


def _resize(op, size, **attrs):
  return lambda x: op(images=x, size=tf.constant(size, tf.int32), **attrs)


def _resize_specs(op_type, nonlinear_note=None):
  op = getattr(raw, op_type)
  cases = [("up", [4, 4], {}),
           ("down_align_corners", [2, 2], dict(align_corners=True)),
           ("half_pixel", [4, 2], dict(half_pixel_centers=True))]
  return [Spec(op_type, _resize(op, size, **attrs), [_IMAGE], variant)
          for variant, size, attrs in cases]


def _scale_and_translate(kernel_type, antialias):
  def build(x):
    return raw.ScaleAndTranslate(
        images=x, size=tf.constant([4, 4], tf.int32),
        scale=tf.constant([1.4, 1.2], tf.float32),
        translation=tf.constant([0.3, -0.2], tf.float32),
        kernel_type=kernel_type, antialias=antialias)
  return build


def _crop_and_resize(method):
  def build(image, boxes):
    return raw.CropAndResize(image=image, boxes=tf.cast(boxes, tf.float32),
                             box_ind=tf.constant([0, 1], tf.int32),
                             crop_size=tf.constant([2, 3], tf.int32),
                             method=method)
  return build


_BOXES = [[0.1, 0.2, 0.8, 0.7], [0.3, 0.0, 0.9, 0.6]]


def _crop_and_resize_image_only(method):
  return lambda image: _crop_and_resize(method)(image, tf.constant(_BOXES))


# A shift by one pixel down and one left, and one with a flip: the inverse
# map then samples pixel centres exactly, so the rule is the exact adjoint.
_TRANSFORMS = {"shift": [1, 0, -1, 0, 1, 1, 0, 0],
               "flip": [-1, 0, 2, 0, 1, 0, 0, 0]}


def _projective_v2(transform, interpolation):
  def build(x):
    return raw.ImageProjectiveTransformV2(
        images=x, transforms=tf.constant([transform], tf.float32),
        output_shape=tf.constant([3, 3], tf.int32),
        interpolation=interpolation, fill_mode="CONSTANT")
  return build


def _projective_v2_dynamic(x):
  """The transforms' values hidden from the rule (inverted in the graph)."""
  transforms = tf.compat.v1.placeholder_with_default(
      tf.constant([_TRANSFORMS["flip"]], tf.float32), [None, 8])
  return raw.ImageProjectiveTransformV2(
      images=x, transforms=transforms,
      output_shape=tf.constant([3, 3], tf.int32), interpolation="NEAREST",
      fill_mode="CONSTANT")


def _projective_v3(transform, interpolation):
  def build(x):
    return raw.ImageProjectiveTransformV3(
        images=x, transforms=tf.constant([transform], tf.float32),
        output_shape=tf.constant([3, 3], tf.int32),
        fill_value=tf.constant(0.0, tf.float32),
        interpolation=interpolation, fill_mode="CONSTANT")
  return build


_FLOAT32_INSIDE = ("the bilinear kernel interpolates in float32 even for "
                   "float64 images: finite differences are too coarse; the "
                   "nearest variants check the same rule numerically")


def _projective_specs(op_type, make):
  return [Spec(op_type, make(t, interp), [_IMAGE], f"{name}_{interp.lower()}",
               **({} if interp == "NEAREST" else
                  dict(order=0, note=_FLOAT32_INSIDE)))
          for name, t in _TRANSFORMS.items()
          for interp in ("NEAREST", "BILINEAR")]


def _distinct_channels(rng, shape):
  """Pixel values in (0.1, 0.9), the channels of each pixel well apart,
  so max/min (and so HSV) are smooth."""
  channels = np.stack([rng.permutation(3) for _ in range(np.prod(shape[:-1]))])
  values = 0.15 + 0.3 * channels + rng.uniform(-0.05, 0.05, channels.shape)
  return values.reshape(shape)


_FLOAT32_ONLY = ("ScaleAndTranslateGrad has only a float32 kernel (TF's rule "
                 "fails on float64 images), so no finite-difference check")
_FIRST_ORDER = ("CropAndResizeGradImage and CropAndResizeGradBoxes have no "
                "gradients, so no second order")

SPECS = [
    *_resize_specs("ResizeNearestNeighbor"),
    *_resize_specs("ResizeBilinear"),
    *_resize_specs("ResizeBicubic"),
    Spec("ScaleAndTranslate", _scale_and_translate("lanczos3", True),
         [_IMAGE], "lanczos3", dtypes=("float32",), order=0,
         note=_FLOAT32_ONLY),
    Spec("ScaleAndTranslate", _scale_and_translate("triangle", False),
         [_IMAGE], "triangle_no_antialias", dtypes=("float32",), order=0,
         note=_FLOAT32_ONLY),
    Spec("CropAndResize", _crop_and_resize("bilinear"), [(2, 3, 3, 1), (2, 4)],
         "bilinear_boxes", domain="open_unit", order=0,
         note="boxes are float32-only: finite differences through them are "
         "too coarse to check; the image gradient is checked below"),
    Spec("CropAndResize", _crop_and_resize_image_only("bilinear"),
         [(2, 3, 3, 1)], "bilinear_image", order=1, note=_FIRST_ORDER),
    Spec("CropAndResize", _crop_and_resize_image_only("nearest"),
         [(2, 4, 4, 2)],
         "nearest_image", order=1, note=_FIRST_ORDER),
    *_projective_specs("ImageProjectiveTransformV2", _projective_v2),
    Spec("ImageProjectiveTransformV2", _projective_v2_dynamic, [_IMAGE],
         "dynamic_transforms"),
    *_projective_specs("ImageProjectiveTransformV3", _projective_v3),
    Spec("RGBToHSV", tf.image.rgb_to_hsv, [(2, 3, 3)],
         domain=_distinct_channels),
]
