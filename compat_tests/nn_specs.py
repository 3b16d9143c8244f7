"""Specs for ops/nn_grad.py rules.

SPECS get both checks. NUMERIC_ONLY_SPECS get only the finite-difference
check: stock tf.gradients either has no rule for the op (listed in
TF_LACKS_GRADIENT, which a test keeps honest) or gives a different value
(see each spec's note).
"""

import numpy as np
import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops

_F32 = ("float32",)
_NO_F64 = "the op has no float64 kernel, so no finite-difference check"


def _away_from_relu6_kinks(rng, shape):
  """Values near -1.5, 3 or 7.5: clear of Relu6's kinks at 0 and 6."""
  return rng.choice([-1.5, 3.0, 7.5], shape) + rng.uniform(-0.5, 0.5, shape)


def _unary(op_type, fn, domain="real", shapes=((2, 3),), **kw):
  return [Spec(op_type, fn, [s], f"rank{len(s)}", domain=domain, **kw)
          for s in shapes]


def _grad_op(op_type, fn, domain="real", **kw):
  """A spec for an activation's *Grad op built directly: fn(g, x)."""
  return Spec(op_type, lambda g, x: fn(gradients=g, features=x),
              [(2, 3), (2, 3)], domain=domain, **kw)


# ----- Activations -----

_ACTIVATIONS = [
    *_unary("Relu", tf.nn.relu, "nonzero", ((), (2, 3))),
    *_unary("Relu6", tf.nn.relu6, _away_from_relu6_kinks),
    *_unary("Elu", tf.nn.elu, "nonzero", ((2, 3), (1, 2, 2))),
    *_unary("Selu", tf.nn.selu, "nonzero"),
    *_unary("Softplus", tf.nn.softplus, shapes=((), (2, 3))),
    *_unary("Softsign", tf.nn.softsign, "nonzero"),
    Spec("LeakyRelu", lambda x: tf.nn.leaky_relu(x, alpha=0.3), [(2, 3)],
         domain="nonzero"),
    _grad_op("ReluGrad", raw.ReluGrad, "nonzero"),
    _grad_op("Relu6Grad", raw.Relu6Grad, _away_from_relu6_kinks),
    Spec("LeakyReluGrad",
         lambda g, x: raw.LeakyReluGrad(gradients=g, features=x, alpha=0.3),
         [(2, 3), (2, 3)], domain="nonzero"),
    Spec("EluGrad", lambda g, y: raw.EluGrad(gradients=g, outputs=y),
         [(2, 3), (2, 3)], domain="nonzero"),
    Spec("SeluGrad", lambda g, y: raw.SeluGrad(gradients=g, outputs=y),
         [(2, 3), (2, 3)], domain="nonzero"),
    _grad_op("SoftplusGrad", raw.SoftplusGrad),
]

# ----- Softmax and cross-entropy -----


def _xent(logits, labels):
  return raw.SoftmaxCrossEntropyWithLogits(features=logits, labels=labels)


def _xent_soft(logits, label_logits):
  """Labels made to sum to 1: the op's backprop assumes they do."""
  return _xent(logits, tf.nn.softmax(label_logits))


def _soft_labels():
  return tf.constant([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]], tf.float64)


def _sparse_xent(logits):
  labels = tf.constant([2, 0], tf.int32)
  return raw.SparseSoftmaxCrossEntropyWithLogits(features=logits,
                                                 labels=labels)


_SOFTMAX = [
    *_unary("Softmax", tf.nn.softmax, shapes=((3,), (2, 3), (2, 1, 3))),
    *_unary("LogSoftmax", tf.nn.log_softmax, shapes=((3,), (2, 3))),
    Spec("SoftmaxCrossEntropyWithLogits", lambda x, l: _xent_soft(x, l)[0],
         [(2, 3), (2, 3)], "loss"),
    Spec("SoftmaxCrossEntropyWithLogits",
         lambda x: list(_xent(x, tf.cast(_soft_labels(), x.dtype))),
         [(2, 3)], "loss_and_backprop"),
    Spec("SparseSoftmaxCrossEntropyWithLogits", lambda x: _sparse_xent(x)[0],
         [(2, 3)], "loss"),
    Spec("SparseSoftmaxCrossEntropyWithLogits",
         lambda x: list(_sparse_xent(x)), [(2, 3)], "loss_and_backprop"),
]

# ----- Bias and losses -----


def _bias_add_grad(fmt):
  return lambda g: raw.BiasAddGrad(out_backprop=g, data_format=fmt)


_BIAS = [
    Spec("BiasAdd", tf.nn.bias_add, [(2, 3), (3,)], "matrix"),
    Spec("BiasAdd", tf.nn.bias_add, [(1, 2, 2, 3), (3,)], "NHWC"),
    Spec("BiasAdd", lambda x, b: tf.nn.bias_add(x, b, data_format="NCHW"),
         [(1, 3, 2, 2), (3,)], "NCHW"),
    Spec("BiasAddV1", lambda x, b: raw.BiasAddV1(value=x, bias=b),
         [(2, 2, 3), (3,)]),
    Spec("BiasAddGrad", _bias_add_grad("NHWC"), [(2, 2, 3)], "NHWC"),
    Spec("BiasAddGrad", _bias_add_grad("NCHW"), [(1, 3, 2, 2)], "NCHW"),
    *_unary("L2Loss", tf.nn.l2_loss, shapes=((), (2, 3))),
]

# ----- Convolutions -----
# Input 1x4x4x2. Each case: (variant, attrs, filter shape, output shape).
# No dilations: the CPU backprop kernels reject dilation rates above 1.

_CONV2D_CASES = [
    ("valid", dict(strides=[1, 1, 1, 1], padding="VALID"),
     (2, 2, 2, 3), (1, 3, 3, 3)),
    ("same_stride2", dict(strides=[1, 2, 2, 1], padding="SAME"),
     (3, 3, 2, 3), (1, 2, 2, 3)),
    ("explicit", dict(strides=[1, 1, 1, 1], padding="EXPLICIT",
                      explicit_paddings=[0, 0, 1, 0, 0, 1, 0, 0]),
     (2, 2, 2, 3), (1, 4, 4, 3)),
]

_DEPTHWISE_CASES = [
    ("valid", dict(strides=[1, 1, 1, 1], padding="VALID"),
     (2, 2, 2, 2), (1, 3, 3, 4)),
    ("same_stride2", dict(strides=[1, 2, 2, 1], padding="SAME"),
     (3, 3, 2, 1), (1, 2, 2, 2)),
    ("explicit", dict(strides=[1, 1, 1, 1], padding="EXPLICIT",
                      explicit_paddings=[0, 0, 1, 0, 0, 1, 0, 0]),
     (2, 2, 2, 2), (1, 4, 4, 4)),
]

_CONV3D_CASES = [
    ("valid", dict(strides=[1, 1, 1, 1, 1], padding="VALID"),
     (2, 2, 2, 2, 2), (1, 2, 2, 2, 2)),
    ("same_stride2", dict(strides=[1, 2, 2, 2, 1], padding="SAME"),
     (2, 2, 2, 2, 3), (1, 2, 2, 2, 3)),
]


def _conv_specs(conv_type, cases, x_shape, version=""):
  """Specs for a convolution and its two backprop ops, per case."""
  names = [conv_type, f"{conv_type}BackpropInput{version}",
           f"{conv_type}BackpropFilter{version}"]
  conv, bp_input, bp_filter = [getattr(raw, n) for n in names]
  specs = []
  for variant, attrs, w_shape, y_shape in cases:
    specs += [
        Spec(names[0], lambda x, w, a=attrs: conv(input=x, filter=w, **a),
             [x_shape, w_shape], variant),
        Spec(names[1], lambda w, dy, a=attrs: bp_input(
            input_sizes=tf.constant(x_shape), filter=w, out_backprop=dy, **a),
             [w_shape, y_shape], variant),
        Spec(names[2], lambda x, dy, a=attrs, s=w_shape: bp_filter(
            input=x, filter_sizes=tf.constant(s), out_backprop=dy, **a),
             [x_shape, y_shape], variant),
    ]
  return specs


_CONV = [
    *_conv_specs("Conv2D", _CONV2D_CASES, (1, 4, 4, 2)),
    *_conv_specs("DepthwiseConv2dNative", _DEPTHWISE_CASES, (1, 4, 4, 2)),
    *_conv_specs("Conv3D", _CONV3D_CASES, (1, 3, 3, 3, 2), version="V2"),
]

# ----- Pooling -----
# Input 1x4x4x2. Each case: (variant, attrs, output shape).

_POOL_CASES = [
    ("valid_2x2", dict(ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1],
                       padding="VALID"), (1, 2, 2, 2)),
    ("same_overlap", dict(ksize=[1, 3, 3, 1], strides=[1, 1, 1, 1],
                          padding="SAME"), (1, 4, 4, 2)),
]
_X = (1, 4, 4, 2)


def _max_pool_grad(x, g, a):
  y = raw.MaxPool(input=x, **a)
  return raw.MaxPoolGrad(orig_input=x, orig_output=y, grad=g, **a)


def _max_pool_grad_grad(x, g, a):
  y = raw.MaxPool(input=x, **a)
  return raw.MaxPoolGradGrad(orig_input=x, orig_output=y, grad=g, **a)


def _v2(a):
  """MaxPoolV2's arguments: ksize and strides as tensors."""
  return dict(a, ksize=tf.constant(a["ksize"]),
              strides=tf.constant(a["strides"]))


def _max_pool_grad_v2(x, g, a):
  y = raw.MaxPoolV2(input=x, **_v2(a))
  return raw.MaxPoolGradV2(orig_input=x, orig_output=y, grad=g, **_v2(a))


def _max_pool_grad_grad_v2(x, g, a):
  y = raw.MaxPoolV2(input=x, **_v2(a))
  return raw.MaxPoolGradGradV2(orig_input=x, orig_output=y, grad=g, **_v2(a))


def _pool_specs():
  specs = []
  for variant, a, y_shape in _POOL_CASES:
    specs += [
        Spec("AvgPool", lambda x, a=a: raw.AvgPool(value=x, **a), [_X],
             variant),
        Spec("AvgPoolGrad", lambda g, a=a: raw.AvgPoolGrad(
            orig_input_shape=tf.constant(_X), grad=g, **a), [y_shape],
             variant),
        Spec("MaxPool", lambda x, a=a: raw.MaxPool(input=x, **a), [_X],
             variant, domain="distinct"),
        Spec("MaxPoolV2", lambda x, a=a: raw.MaxPoolV2(input=x, **_v2(a)),
             [_X], variant, domain="distinct"),
        Spec("MaxPoolGrad", lambda x, g, a=a: _max_pool_grad(x, g, a),
             [_X, y_shape], variant, domain="distinct"),
        Spec("MaxPoolGradGrad", lambda x, g, a=a: _max_pool_grad_grad(x, g, a),
             [_X, _X], variant, domain="distinct"),
        Spec("MaxPoolGradV2", lambda x, g, a=a: _max_pool_grad_v2(x, g, a),
             [_X, y_shape], variant, domain="distinct"),
    ]
  specs.append(Spec(
      "MaxPool", lambda x: raw.MaxPool(
          input=x, ksize=[1, 2, 2, 1], strides=[1, 1, 1, 1],
          padding="EXPLICIT", explicit_paddings=[0, 0, 1, 0, 0, 1, 0, 0]),
      [_X], "explicit", domain="distinct", order=1,
      note="MaxPoolGradGrad (MaxPoolGrad's gradient) has no explicit "
      "padding, in TF as here"))
  return specs


_POOL = _pool_specs()

# ----- Batch normalization -----
# float32 only (no float64 kernel): values are compared with TF's, whose
# FusedBatchNormGrad* rules differentiate an explicit formula.


def _batch_norm(op_type, training, fmt="NHWC"):
  """fn(x, scale, offset[, mean, variance]) -> y of the fused op."""
  def build(x, scale, offset, *stats):
    c = scale.shape[0]
    mean, variance = stats or (tf.zeros([c], x.dtype), tf.ones([c], x.dtype))
    return getattr(raw, op_type)(
        x=x, scale=scale, offset=offset, mean=mean, variance=variance,
        epsilon=0.01, data_format=fmt, is_training=training)[0]
  return build


def _batch_norm_grad(op_type, training, fmt="NHWC"):
  """fn(dy, x, scale) -> (dx, dscale, doffset), statistics from the forward."""
  def build(dy, x, scale):
    c = scale.shape[0]
    forward = getattr(raw, op_type.replace("Grad", ""))(
        x=x, scale=scale, offset=tf.zeros([c]), mean=tf.zeros([c]) + 0.2,
        variance=tf.ones([c]) * 1.5, epsilon=0.01, data_format=fmt,
        is_training=training)
    stats = forward[3:] if training else [tf.zeros([c]) + 0.2,
                                          tf.ones([c]) * 1.5]
    extra = {"reserve_space_3": forward[5]} if op_type.endswith("V3") else {}
    return list(getattr(raw, op_type)(
        y_backprop=dy, x=x, scale=scale, reserve_space_1=stats[0],
        reserve_space_2=stats[1], epsilon=0.01, data_format=fmt,
        is_training=training, **extra)[:3])
  return build


def _batch_norm_specs():
  nhwc, nchw = (2, 2, 2, 3), (2, 3, 2, 2)
  specs = []
  for version in ("", "V2", "V3"):
    op_type = f"FusedBatchNorm{version}"
    grad_type = f"FusedBatchNormGrad{version}"
    for training, mode in ((True, "training"), (False, "inference")):
      for fmt, shape in (("NHWC", nhwc), ("NCHW", nchw)):
        kw = dict(dtypes=_F32, order=0, note=_NO_F64, domain="positive")
        stats = [] if training else [(3,), (3,)]
        specs.append(Spec(op_type, _batch_norm(op_type, training, fmt),
                          [shape, (3,), (3,)] + stats, f"{mode}_{fmt}", **kw))
        specs.append(Spec(grad_type, _batch_norm_grad(grad_type, training, fmt),
                          [shape, shape, (3,)], f"{mode}_{fmt}", **kw))
  return specs


_BATCH_NORM = _batch_norm_specs() + [
    Spec("LRN", lambda x: tf.nn.local_response_normalization(
        x, depth_radius=1, bias=1.0, alpha=0.5, beta=0.75), [(1, 2, 2, 4)],
         dtypes=_F32, order=0,
         note=_NO_F64 + "; LRNGrad has no gradient, in TF as here"),
]

SPECS = _ACTIVATIONS + _SOFTMAX + _BIAS + _CONV + _POOL + _BATCH_NORM

# ----- Ops stock TF cannot differentiate (or gets wrong) -----

TF_LACKS_GRADIENT = ("SoftsignGrad", "MaxPoolGradGradV2")

NUMERIC_ONLY_SPECS = [
    _grad_op("SoftsignGrad", raw.SoftsignGrad, "nonzero",
             note="no gradient for SoftsignGrad in TF, so Softsign has no "
             "TF Hessian"),
    *[Spec("MaxPoolGradGradV2",
           lambda x, g, a=a: _max_pool_grad_grad_v2(x, g, a), [_X, _X],
           variant, domain="distinct",
           note="no gradient for MaxPoolGradGradV2 in TF")
      for variant, a, _ in _POOL_CASES],
    Spec("SoftmaxCrossEntropyWithLogits", lambda x, l: list(_xent_soft(x, l)),
         [(2, 3), (2, 3)], "backprop_to_labels",
         note="TF's rule omits d(backprop)/d(labels) = -I, so its gradient "
         "for labels is wrong once the backprop output is used"),
]

# ----- 3-D pooling, other pooling, morphology, selection -----

_X3 = (1, 3, 3, 3, 2)
_P3 = dict(ksize=[1, 2, 2, 2, 1], strides=[1, 1, 1, 1, 1], padding="VALID")
_Y3 = (1, 2, 2, 2, 2)
_FIRST_ORDER = "{} has no gradient (in TF either): first order only"


def _max_pool3d_grad(x, g):
  y = raw.MaxPool3D(input=x, **_P3)
  return raw.MaxPool3DGrad(orig_input=x, orig_output=y, grad=g, **_P3)


def _max_pool3d_grad_grad(x, g):
  y = raw.MaxPool3D(input=x, **_P3)
  return raw.MaxPool3DGradGrad(orig_input=x, orig_output=y, grad=g, **_P3)


def _fractional(op, overlapping):
  """A seeded, deterministic fractional pool of x (its pooled output)."""
  return lambda x: getattr(raw, op)(
      value=x, pooling_ratio=[1.0, 1.5, 1.5, 1.0], pseudo_random=True,
      overlapping=overlapping, deterministic=True, seed=7, seed2=11)[0]


def _dilation_domain(rng, shape):
  """Images 1.0 apart with filters in [0, 0.3]: each window's max of x + w
  is unique and clear of ties."""
  if len(shape) == 4:
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 1.0
  return rng.uniform(0.0, 0.3, shape)


def _dilation(padding):
  return lambda x, w: raw.Dilation2D(input=x, filter=w, strides=[1, 1, 1, 1],
                                     rates=[1, 1, 1, 1], padding=padding)


def _argmax_pool(include_batch):
  return lambda x: raw.MaxPoolWithArgmax(
      input=x, ksize=[1, 2, 2, 1], strides=[1, 1, 1, 1], padding="VALID",
      include_batch_in_index=include_batch)[0]


_MORE_POOLING = [
    Spec("AvgPool3D", lambda x: raw.AvgPool3D(input=x, **_P3), [_X3],
         dtypes=_F32, order=0, note=_NO_F64),
    Spec("AvgPool3DGrad", lambda g: raw.AvgPool3DGrad(
        orig_input_shape=tf.constant(_X3), grad=g, **_P3), [_Y3],
         dtypes=_F32, order=0, note=_NO_F64),
    Spec("MaxPool3D", lambda x: raw.MaxPool3D(input=x, **_P3), [_X3],
         dtypes=_F32, domain="distinct", order=0, note=_NO_F64),
    Spec("MaxPool3DGrad", _max_pool3d_grad, [_X3, _Y3], dtypes=_F32,
         domain="distinct", order=0, note=_NO_F64),
    Spec("MaxPool3DGradGrad", _max_pool3d_grad_grad, [_X3, _X3],
         dtypes=_F32, domain="distinct", order=0, note=_NO_F64),
    Spec("MaxPoolWithArgmax", _argmax_pool(False), [(1, 3, 3, 2)],
         domain="distinct", order=1,
         note=_FIRST_ORDER.format("MaxPoolGradWithArgmax")),
    Spec("MaxPoolWithArgmax", _argmax_pool(True), [(2, 3, 3, 1)],
         "batch_in_index", domain="distinct", order=1,
         note=_FIRST_ORDER.format("MaxPoolGradWithArgmax")),
    *[Spec("FractionalMaxPool", _fractional("FractionalMaxPool", o),
           [(1, 4, 4, 2)], f"overlapping{int(o)}", domain="distinct", order=1,
           note=_FIRST_ORDER.format("FractionalMaxPoolGrad"))
      for o in (False, True)],
    *[Spec("FractionalAvgPool", _fractional("FractionalAvgPool", o),
           [(1, 4, 4, 2)], f"overlapping{int(o)}") for o in (False, True)],
    *[Spec("Dilation2D", _dilation(p), [(1, 3, 3, 2), (2, 2, 2)], p,
           domain=_dilation_domain, order=1,
           note=_FIRST_ORDER.format("Dilation2DBackpropInput/Filter"))
      for p in ("VALID", "SAME")],
]

_SELECTION = [
    Spec("TopKV2", lambda x: tf.math.top_k(x, k=2).values, [(2, 5)],
         "matrix", domain="distinct"),
    Spec("TopKV2", lambda x: tf.math.top_k(x, k=3).values, [(2, 2, 4)],
         "rank3", domain="distinct"),
    Spec("TopKV2", lambda x: tf.math.top_k(x, k=1).values, [(4,)],
         "vector", domain="distinct"),
    Spec("ApproxTopK", lambda x: tf.math.approx_max_k(x, 2)[0], [(2, 6)],
         dtypes=_F32, domain="distinct", order=0, note=_NO_F64),
    Spec("ApproxTopK", lambda x: tf.math.approx_max_k(x, 2)[0], [(2, 2, 5)],
         "rank3", dtypes=_F32, domain="distinct", order=0,
         note=_NO_F64 + "; the CPU kernel only reduces the last axis"),
    Spec("NthElement", lambda x: tf.raw_ops.NthElement(input=x, n=1),
         [(2, 4)], domain="distinct"),
    Spec("NthElement", lambda x: tf.raw_ops.NthElement(
        input=x, n=0, reverse=True), [(4,)], "reverse", domain="distinct"),
    Spec("IsotonicRegression", lambda x: tf.nn.isotonic_regression(x)[0],
         [(2, 5)]),
    Spec("IsotonicRegression", lambda x: tf.nn.isotonic_regression(
        x, decreasing=False, axis=0)[0], [(4, 2)], "increasing_axis0"),
]

SPECS += _MORE_POOLING + _SELECTION
