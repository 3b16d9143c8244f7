"""Gradient rules for neural-network ops (TF's nn_grad.py family).

Besides the forward ops, the *Grad ops their rules emit (ReluGrad,
Conv2DBackpropInput, MaxPoolGrad, FusedBatchNormGradV3, ...) have rules
too, so Hessians of conv/pool/activation nets stay native.
"""

import numpy as np
import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_unary

_CONV2D_ATTRS = ("strides", "padding", "explicit_paddings", "data_format",
                 "dilations", "use_cudnn_on_gpu")
_DEPTHWISE_ATTRS = ("strides", "padding", "explicit_paddings", "data_format",
                    "dilations")
_CONV3D_ATTRS = ("strides", "padding", "data_format", "dilations")
_POOL_ATTRS = ("ksize", "strides", "padding", "data_format")
_MAX_POOL_V2_ATTRS = ("padding", "data_format")


def _attrs(op, names):
  """The attributes `names` of `op`, as keyword arguments for a raw op."""
  return {name: op.get_attr(name) for name in names}


def _is_zero(t):
  """True when `t` is None or built to be all zeros (an unused output)."""
  if t is None or t.op.type == "ZerosLike":
    return True
  if t.op.type == "Fill":
    value = tf.get_static_value(t.op.inputs[1])
  elif t.op.type == "Const":
    value = tf.get_static_value(t)
  else:
    return False
  return value is not None and not np.any(value)


def _softmax_vjp(grad, softmax):
  """(grad - <grad, softmax>) * softmax over the last axis."""
  inner = tf.reduce_sum(grad * softmax, -1, keepdims=True)
  return (grad - inner) * softmax


def _channel_axes(x, data_format):
  """(axes to reduce, shape broadcasting a per-channel vector against x)."""
  rank = x.shape.rank
  if data_format.startswith(b"NC"):
    return [0] + list(range(2, rank)), [1, -1] + [1] * (rank - 2)
  return list(range(rank - 1)), [-1]


# ----- Activations -----

def_unary("Relu", lambda x, y, g: raw.ReluGrad(gradients=g, features=y))
def_unary("Relu6",
          lambda x, y, g: raw.Relu6Grad(gradients=g, features=y))
def_unary("Elu", lambda x, y, g: raw.EluGrad(gradients=g, outputs=y))
def_unary("Selu", lambda x, y, g: raw.SeluGrad(gradients=g, outputs=y))
def_unary("Softplus", lambda x, y, g: g * tf.sigmoid(x))
def_unary("Softsign",
          lambda x, y, g: raw.SoftsignGrad(gradients=g, features=x))


@RegisterGradient("LeakyRelu")
def _leaky_relu_grad(op, grad):
  """grad where x > 0, alpha * grad elsewhere."""
  return raw.LeakyReluGrad(gradients=grad, features=op.inputs[0],
                                  alpha=op.get_attr("alpha"))


def _def_piecewise_linear_grad_grad(op_type, grad_op, attr_names=()):
  """`op_type(g, x)` = g * mask(x): linear in g, locally constant in x."""

  def rule(op, grad):
    x = op.inputs[1]
    d_grad = grad_op(gradients=grad, features=x, **_attrs(op, attr_names))
    return [d_grad, tf.zeros_like(x)]

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"{op_type} again for the gradients input, zeros for x."
  RegisterGradient(op_type)(rule)


_def_piecewise_linear_grad_grad("ReluGrad", raw.ReluGrad)
_def_piecewise_linear_grad_grad("Relu6Grad", raw.Relu6Grad)
_def_piecewise_linear_grad_grad("LeakyReluGrad", raw.LeakyReluGrad,
                                ("alpha",))


def _def_exp_linear_grad_grad(op_type, grad_op):
  """`op_type(g, y)` = g * (y + c) for y < 0 (Elu, Selu), else g * const."""

  def rule(op, grad):
    dy, y = op.inputs
    dout = tf.where(y < 0, grad * dy, tf.zeros_like(y))
    return [grad_op(gradients=grad, outputs=y), dout]

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = f"{op_type} again for the gradients input; grad * g for y < 0."
  RegisterGradient(op_type)(rule)


_def_exp_linear_grad_grad("EluGrad", raw.EluGrad)
_def_exp_linear_grad_grad("SeluGrad", raw.SeluGrad)


@RegisterGradient("SoftplusGrad")
def _softplus_grad_grad(op, grad):
  """out = g * sigmoid(x): d/dg = sigmoid(x), d/dx = g / (e^-x + 2 + e^x)."""
  dy, x = op.inputs
  d_dy = raw.SoftplusGrad(gradients=grad, features=x)
  return [d_dy, grad * dy / (tf.exp(-x) + 2.0 + tf.exp(x))]


@RegisterGradient("SoftsignGrad")
def _softsign_grad_grad(op, grad):
  """out = g / (1 + |x|)^2: d/dg as forward, d/dx = -2 g sign(x) / (1+|x|)^3."""
  dy, x = op.inputs
  d_dy = raw.SoftsignGrad(gradients=grad, features=x)
  denom = 1.0 + tf.abs(x)
  return [d_dy, -2.0 * grad * dy * tf.sign(x) / (denom * denom * denom)]


# ----- Softmax and cross-entropy -----

@RegisterGradient("Softmax")
def _softmax_grad(op, grad):
  """(g - sum(g * y, -1)) * y, reusing the output y."""
  return _softmax_vjp(grad, op.outputs[0])


@RegisterGradient("LogSoftmax")
def _log_softmax_grad(op, grad):
  """g - sum(g, -1) * exp(y), reusing the output y."""
  softmax = tf.exp(op.outputs[0])
  return grad - tf.reduce_sum(grad, -1, keepdims=True) * softmax


def _xent_logits_grad(op, grad_loss, grad_backprop):
  """g_loss * backprop, plus the softmax VJP of g_backprop when it is used;
  grad_loss comes with a trailing axis of size 1."""
  d_logits = grad_loss * op.outputs[1]
  if not _is_zero(grad_backprop):
    softmax = raw.Softmax(logits=op.inputs[0])
    d_logits += _softmax_vjp(grad_backprop, softmax)
  return d_logits


@RegisterGradient("SoftmaxCrossEntropyWithLogits")
def _softmax_xent_grad(op, grad_loss, grad_backprop):
  """logits: see _xent_logits_grad; labels: -g_loss * log_softmax - g_backprop
  (backprop = softmax - labels)."""
  grad_loss = tf.expand_dims(grad_loss, -1)
  d_labels = grad_loss * -raw.LogSoftmax(logits=op.inputs[0])
  if not _is_zero(grad_backprop):
    d_labels -= grad_backprop
  return [_xent_logits_grad(op, grad_loss, grad_backprop), d_labels]


@RegisterGradient("SparseSoftmaxCrossEntropyWithLogits")
def _sparse_softmax_xent_grad(op, grad_loss, grad_backprop):
  """As the dense rule for logits; integer labels get none."""
  grad_loss = tf.expand_dims(grad_loss, -1)
  return [_xent_logits_grad(op, grad_loss, grad_backprop), None]


# ----- Bias and losses -----

@RegisterGradient("BiasAdd")
def _bias_add_grad(op, grad):
  """grad for the value; grad summed over all but the channel axis for bias."""
  d_bias = raw.BiasAddGrad(out_backprop=grad,
                                  data_format=op.get_attr("data_format"))
  return [grad, d_bias]


@RegisterGradient("BiasAddV1")
def _bias_add_v1_grad(op, grad):
  """grad for the value; grad summed over all but the last axis for bias."""
  rank = grad.shape.rank
  axes = list(range(rank - 1)) if rank is not None else tf.range(
      tf.rank(grad) - 1)
  return [grad, tf.reduce_sum(grad, axes)]


@RegisterGradient("BiasAddGrad")
def _bias_add_grad_grad(op, grad):
  """Broadcasts the per-channel grad back over out_backprop's shape."""
  x = op.inputs[0]
  if op.get_attr("data_format") == b"NCHW":
    if x.shape.rank is not None:
      shape = [1, -1] + [1] * (x.shape.rank - 2)
    else:
      shape = tf.concat([[1, -1], tf.ones([tf.rank(x) - 2], tf.int32)], 0)
    grad = tf.reshape(grad, shape)
  return tf.broadcast_to(grad, _helpers.shape_of(x))


@RegisterGradient("L2Loss")
def _l2_loss_grad(op, grad):
  """L2Loss = sum(x^2) / 2, so x * g."""
  return op.inputs[0] * grad


# ----- Convolutions -----

def _def_conv_family(conv_type, attr_names, version=""):
  """Rules for a convolution and its two backprop ops (all bilinear)."""
  conv = getattr(raw, conv_type)
  backprop_input = getattr(raw, f"{conv_type}BackpropInput{version}")
  backprop_filter = getattr(raw, f"{conv_type}BackpropFilter{version}")

  def conv_grad(op, grad):
    x, w = op.inputs
    a = _attrs(op, attr_names)
    dx = dw = None
    if _helpers.needs_grad(op, 0):
      dx = backprop_input(input_sizes=_helpers.shape_of(x), filter=w,
                          out_backprop=grad, **a)
    if _helpers.needs_grad(op, 1):
      dw = backprop_filter(input=x, filter_sizes=_helpers.shape_of(w),
                           out_backprop=grad, **a)
    return [dx, dw]

  def backprop_input_grad(op, grad):
    _, w, dy = op.inputs
    a = _attrs(op, attr_names)
    dw = d_dy = None
    if _helpers.needs_grad(op, 1):
      dw = backprop_filter(input=grad, filter_sizes=_helpers.shape_of(w),
                           out_backprop=dy, **a)
    if _helpers.needs_grad(op, 2):
      d_dy = conv(input=grad, filter=w, **a)
    return [None, dw, d_dy]

  def backprop_filter_grad(op, grad):
    x, _, dy = op.inputs
    a = _attrs(op, attr_names)
    dx = d_dy = None
    if _helpers.needs_grad(op, 0):
      dx = backprop_input(input_sizes=_helpers.shape_of(x), filter=grad,
                          out_backprop=dy, **a)
    if _helpers.needs_grad(op, 2):
      d_dy = conv(input=x, filter=grad, **a)
    return [dx, None, d_dy]

  for rule, name, doc in (
      (conv_grad, conv_type, "backprops of y = conv(x, w) to x and w."),
      (backprop_input_grad, f"{conv_type}BackpropInput{version}",
       "linear in (w, dy): backprop-filter to w, conv to dy."),
      (backprop_filter_grad, f"{conv_type}BackpropFilter{version}",
       "linear in (x, dy): backprop-input to x, conv to dy.")):
    rule.__name__ = f"_{name.lower()}_grad"
    rule.__doc__ = f"{name}: {doc}"
    RegisterGradient(name)(rule)


_def_conv_family("Conv2D", _CONV2D_ATTRS)
_def_conv_family("DepthwiseConv2dNative", _DEPTHWISE_ATTRS)
_def_conv_family("Conv3D", _CONV3D_ATTRS, version="V2")


# ----- Pooling -----

@RegisterGradient("AvgPool")
def _avg_pool_grad(op, grad):
  """Spreads each window's grad evenly over the window (AvgPoolGrad)."""
  shape = _helpers.shape_of(op.inputs[0])
  return raw.AvgPoolGrad(orig_input_shape=shape, grad=grad,
                                **_attrs(op, _POOL_ATTRS))


@RegisterGradient("AvgPoolGrad")
def _avg_pool_grad_grad(op, grad):
  """AvgPoolGrad is linear in grad with adjoint AvgPool; the shape gets none."""
  return [None, raw.AvgPool(value=grad, **_attrs(op, _POOL_ATTRS))]


@RegisterGradient("MaxPool")
def _max_pool_grad(op, grad):
  """Routes each window's grad to its max (MaxPoolGrad)."""
  return raw.MaxPoolGrad(
      orig_input=op.inputs[0], orig_output=op.outputs[0], grad=grad,
      explicit_paddings=op.get_attr("explicit_paddings"),
      **_attrs(op, _POOL_ATTRS))


def _def_max_pool_grad_grad(op_type, adjoint, attr_names):
  """`op_type` is linear in its grad input (adjoint: `adjoint`) and locally
  constant in orig_input/orig_output (zeros); ksize/strides inputs get none."""

  def rule(op, grad):
    x, y = op.inputs[0], op.inputs[1]
    window = dict(zip(("ksize", "strides"), op.inputs[3:]))
    d_grad = adjoint(orig_input=x, orig_output=y, grad=grad, **window,
                     **_attrs(op, attr_names))
    return [tf.zeros_like(x), tf.zeros_like(y), d_grad] + [None] * len(window)

  rule.__name__ = f"_{op_type.lower()}_grad"
  rule.__doc__ = "The adjoint pooling-gradient op of grad; zeros for x, y."
  RegisterGradient(op_type)(rule)


_def_max_pool_grad_grad("MaxPoolGrad", raw.MaxPoolGradGrad, _POOL_ATTRS)
_def_max_pool_grad_grad("MaxPoolGradGrad", raw.MaxPoolGrad, _POOL_ATTRS)
_def_max_pool_grad_grad("MaxPoolGradV2", raw.MaxPoolGradGradV2,
                        _MAX_POOL_V2_ATTRS)
_def_max_pool_grad_grad("MaxPoolGradGradV2", raw.MaxPoolGradV2,
                        _MAX_POOL_V2_ATTRS)


@RegisterGradient("MaxPoolV2")
def _max_pool_v2_grad(op, grad):
  """MaxPoolGradV2 for the input; ksize and strides get none."""
  x, ksize, strides = op.inputs
  d_x = raw.MaxPoolGradV2(
      orig_input=x, orig_output=op.outputs[0], grad=grad, ksize=ksize,
      strides=strides, **_attrs(op, _MAX_POOL_V2_ATTRS))
  return [d_x, None, None]


# ----- Normalization -----

@RegisterGradient("LRN")
def _lrn_grad(op, grad):
  """LRNGrad from x and the output y. LRNGrad has no gradient (first order
  only), in TF as here."""
  attrs = _attrs(op, ("depth_radius", "bias", "alpha", "beta"))
  return raw.LRNGrad(input_grads=grad, input_image=op.inputs[0],
                            output_image=op.outputs[0], **attrs)


_FUSED_BATCH_NORM_GRAD = {"FusedBatchNorm": "FusedBatchNormGrad",
                          "FusedBatchNormV2": "FusedBatchNormGradV2",
                          "FusedBatchNormV3": "FusedBatchNormGradV3"}
_TO_CHANNELS_LAST = {b"NCHW": [0, 2, 3, 1], b"NCDHW": [0, 2, 3, 4, 1]}
_TO_CHANNELS_FIRST = {b"NCHW": [0, 3, 1, 2], b"NCDHW": [0, 4, 1, 2, 3]}


@RegisterGradient("FusedBatchNorm")
@RegisterGradient("FusedBatchNormV2")
@RegisterGradient("FusedBatchNormV3")
def _fused_batch_norm_grad(op, grad_y, *unused_stat_grads):
  """x, scale, offset get the fused grad op's outputs (batch statistics in
  training; the given mean and variance, channels last, in inference)."""
  grad_op = getattr(raw, _FUSED_BATCH_NORM_GRAD[op.type])
  x, scale = op.inputs[0], op.inputs[1]
  fmt, training = op.get_attr("data_format"), op.get_attr("is_training")
  stats = op.outputs[3:5] if training else op.inputs[3:5]
  extra = {"reserve_space_3": op.outputs[5]} if len(op.outputs) > 5 else {}
  to_last = None if training else _TO_CHANNELS_LAST.get(fmt)
  if to_last:
    x, grad_y = tf.transpose(x, to_last), tf.transpose(grad_y, to_last)
    fmt = b"NHWC" if fmt == b"NCHW" else b"NDHWC"
  dx, dscale, doffset = grad_op(
      y_backprop=grad_y, x=x, scale=scale, reserve_space_1=stats[0],
      reserve_space_2=stats[1], epsilon=op.get_attr("epsilon"),
      data_format=fmt, is_training=training, **extra)[:3]
  if to_last:
    dx = tf.transpose(dx, _TO_CHANNELS_FIRST[op.get_attr("data_format")])
  return [dx, dscale, doffset, None, None]



def _batch_norm_training_grad_grad(dy, x, scale, ggs, axes, epsilon):
  """VJP of (dx, dscale, doffset) = batch-norm backprop, batch statistics.

  With x_hat = (x - mean) / sigma and P(v) = v - mean(v) - x_hat mean(v x_hat)
  (per channel): dx = scale / sigma P(dy), dscale = sum(dy x_hat),
  doffset = sum(dy); d x_hat = P(d x) / sigma, d sigma = mean(x_hat d x).
  """
  mean = lambda v: tf.reduce_mean(v, axes, keepdims=True)
  gg_x, gg_scale, gg_offset = ggs
  centered = x - mean(x)
  inv_sigma = tf.math.rsqrt(mean(tf.square(centered)) + epsilon)
  x_hat = centered * inv_sigma
  proj = lambda v: v - mean(v) - x_hat * mean(v * x_hat)
  p_dy, c = proj(dy), scale * inv_sigma
  g_dy = c * proj(gg_x) + gg_scale * x_hat + gg_offset
  g_x_hat = gg_scale * dy - c * (mean(dy * x_hat) * gg_x
                                 + mean(gg_x * x_hat) * dy)
  g_x = inv_sigma * (proj(g_x_hat) - x_hat * mean(gg_x * c * p_dy))
  g_scale = tf.reduce_sum(gg_x * p_dy * inv_sigma, axes)
  return g_dy, g_x, g_scale


def _batch_norm_inference_grad_grad(dy, x, scale, ggs, axes, stats, epsilon):
  """VJP of dx = dy scale r, dscale = sum(dy (x - mean) r), doffset = sum(dy),
  with r = rsqrt(variance + epsilon) from the given statistics."""
  gg_x, gg_scale, gg_offset = ggs
  mean, variance = stats
  r = tf.math.rsqrt(variance + epsilon)
  g_dy = gg_x * scale * r + gg_scale * (x - mean) * r + gg_offset
  return g_dy, gg_scale * dy * r, tf.reduce_sum(gg_x * dy * r, axes)


@RegisterGradient("FusedBatchNormGrad")
@RegisterGradient("FusedBatchNormGradV2")
@RegisterGradient("FusedBatchNormGradV3")
def _fused_batch_norm_grad_grad(op, *grads):
  """Second order of batch norm: VJP of the backprop's (dx, dscale, doffset)
  for y_backprop, x and scale; the reserved statistics get none."""
  dy, x, scale = op.inputs[:3]
  u = scale.dtype
  axes, shape = _channel_axes(x, op.get_attr("data_format"))
  per_channel = lambda v: tf.reshape(v, shape)
  dy, x, gg_x = tf.cast(dy, u), tf.cast(x, u), tf.cast(grads[0], u)
  ggs = (gg_x, per_channel(grads[1]), per_channel(grads[2]))
  epsilon = op.get_attr("epsilon")
  if op.get_attr("is_training"):
    g_dy, g_x, g_scale = _batch_norm_training_grad_grad(
        dy, x, per_channel(scale), ggs, axes, epsilon)
  else:
    stats = [per_channel(s) for s in op.inputs[3:5]]
    g_dy, g_x, g_scale = _batch_norm_inference_grad_grad(
        dy, x, per_channel(scale), ggs, axes, stats, epsilon)
  x_type = op.inputs[1].dtype
  return ([tf.cast(g_dy, x_type), tf.cast(g_x, x_type), g_scale]
          + [None] * (len(op.inputs) - 3))


# ----- 3-D pooling -----

_POOL3D_ATTRS = ("ksize", "strides", "padding", "data_format")


@RegisterGradient("AvgPool3D")
def _avg_pool3d_grad(op, grad):
  """Spreads each window's grad evenly over the window (AvgPool3DGrad)."""
  return raw.AvgPool3DGrad(
      orig_input_shape=_helpers.shape_of(op.inputs[0]), grad=grad,
      **_attrs(op, _POOL3D_ATTRS))


@RegisterGradient("AvgPool3DGrad")
def _avg_pool3d_grad_grad(op, grad):
  """AvgPool3DGrad is linear in grad with adjoint AvgPool3D."""
  return [None, raw.AvgPool3D(input=grad, **_attrs(op, _POOL3D_ATTRS))]


@RegisterGradient("MaxPool3D")
def _max_pool3d_grad(op, grad):
  """Routes each window's grad to its max (MaxPool3DGrad)."""
  return raw.MaxPool3DGrad(
      orig_input=op.inputs[0], orig_output=op.outputs[0], grad=grad,
      **_attrs(op, _POOL3D_ATTRS))


_def_max_pool_grad_grad("MaxPool3DGrad", raw.MaxPool3DGradGrad,
                        _POOL3D_ATTRS)
_def_max_pool_grad_grad("MaxPool3DGradGrad", raw.MaxPool3DGrad,
                        _POOL3D_ATTRS)


# ----- Other pooling and morphology -----

@RegisterGradient("MaxPoolWithArgmax")
def _max_pool_with_argmax_grad(op, grad, unused_argmax_grad):
  """Routes each window's grad to the recorded argmax position.
  MaxPoolGradWithArgmax has no gradient: first order only."""
  del unused_argmax_grad
  return raw.MaxPoolGradWithArgmax(
      input=op.inputs[0], grad=grad, argmax=op.outputs[1],
      **_attrs(op, ("ksize", "strides", "padding", "include_batch_in_index")))


@RegisterGradient("FractionalMaxPool")
def _fractional_max_pool_grad(op, grad, unused_rows, unused_cols):
  """Routes each region's grad to its max, regions from the op's sequences.
  FractionalMaxPoolGrad has no gradient: first order only."""
  del unused_rows, unused_cols
  y, rows, cols = op.outputs
  return raw.FractionalMaxPoolGrad(
      orig_input=op.inputs[0], orig_output=y, out_backprop=grad,
      row_pooling_sequence=rows, col_pooling_sequence=cols,
      overlapping=op.get_attr("overlapping"))


def _shape64(x):
  """x's shape as int64: a constant when static, else a Shape op."""
  static = _helpers.static_shape(x)
  if static is not None:
    return tf.constant(static, tf.int64)
  return tf.shape(x, out_type=tf.int64)


@RegisterGradient("FractionalAvgPool")
def _fractional_avg_pool_grad(op, grad, unused_rows, unused_cols):
  """Spreads each region's grad evenly over the region (linear in grad)."""
  del unused_rows, unused_cols
  return raw.FractionalAvgPoolGrad(
      orig_input_tensor_shape=_shape64(op.inputs[0]),
      out_backprop=grad, row_pooling_sequence=op.outputs[1],
      col_pooling_sequence=op.outputs[2],
      overlapping=op.get_attr("overlapping"))


@RegisterGradient("Dilation2D")
def _dilation2d_grad(op, grad):
  """Grayscale dilation routes grad to the argmax of x + w in each window.
  Its backprop ops have no gradient: first order only."""
  x, w = op.inputs
  a = _attrs(op, ("strides", "rates", "padding"))
  return [raw.Dilation2DBackpropInput(input=x, filter=w,
                                             out_backprop=grad, **a),
          raw.Dilation2DBackpropFilter(input=x, filter=w,
                                              out_backprop=grad, **a)]


# ----- Selection -----

def _scatter_last_axis(grad, indices, x_shape):
  """Zeros of `x_shape` (a tuple, or a Shape tensor) with grad[..., j] added
  at position indices[..., j] of the last axis."""
  k = indices.shape[-1]
  if isinstance(x_shape, tuple) and k is not None:
    n, rows = x_shape[-1], int(np.prod(x_shape[:-1], dtype=np.int64))
    x_shape = list(x_shape)
  else:
    n, k = x_shape[-1], tf.shape(indices)[-1]
    rows = tf.size(indices) // k
  offsets = tf.reshape(tf.range(rows) * n, [-1, 1])
  flat = tf.reshape(tf.reshape(indices, [-1, k]) + offsets, [-1, 1])
  dx = tf.scatter_nd(flat, tf.reshape(grad, [-1]), [rows * n])
  return tf.reshape(dx, x_shape)


def _static_or_dynamic_shape(x):
  static = _helpers.static_shape(x)
  return static if static is not None else tf.shape(x)


@RegisterGradient("TopKV2")
def _top_k_v2_grad(op, grad, unused_indices_grad):
  """Each kept value's grad goes back to its position in the input."""
  del unused_indices_grad
  x, k = op.inputs
  return [_scatter_last_axis(grad, op.outputs[1], _static_or_dynamic_shape(x)),
          tf.zeros([], k.dtype)]


@RegisterGradient("ApproxTopK")
def _approx_top_k_grad(op, grad, unused_indices_grad):
  """Each kept value's grad goes back to its position along the reduction
  dimension (static shapes, as the op requires)."""
  del unused_indices_grad
  x_shape, indices = _helpers.static_shape(op.inputs[0]), op.outputs[1]
  axis = op.get_attr("reduction_dimension") % len(x_shape)
  if axis == len(x_shape) - 1:
    return _scatter_last_axis(grad, indices, x_shape)
  perm = list(range(len(x_shape)))
  perm[axis], perm[-1] = perm[-1], perm[axis]
  moved = _scatter_last_axis(tf.transpose(grad, perm),
                             tf.transpose(indices, perm),
                             tuple(x_shape[p] for p in perm))
  return tf.transpose(moved, perm)


@RegisterGradient("NthElement")
def _nth_element_grad(op, grad):
  """grad goes to the inputs equal to the selected value, shared evenly."""
  x, y = op.inputs[0], op.outputs[0]
  hits = tf.cast(tf.equal(tf.expand_dims(y, -1), x), grad.dtype)
  share = hits / tf.reduce_sum(hits, -1, keepdims=True)
  return [share * tf.expand_dims(grad, -1), None]


@RegisterGradient("IsotonicRegression")
def _isotonic_regression_grad(op, grad, unused_segments_grad):
  """Each output is the mean of the inputs in its pooled block, so each
  input receives the mean of its block's grad (per row)."""
  del unused_segments_grad
  segments = op.outputs[1]
  static = _helpers.static_shape(grad)
  rows, n = static if static is not None else tf.unstack(tf.shape(grad))
  ids = segments + tf.reshape(tf.range(rows) * n, [-1, 1])
  sums = tf.math.unsorted_segment_sum(grad, ids, rows * n)
  counts = tf.math.unsorted_segment_sum(tf.ones_like(grad), ids, rows * n)
  dx = tf.gather(tf.math.divide_no_nan(sums, counts), ids)
  x_type = op.inputs[0].dtype
  return dx if dx.dtype == x_type else tf.cast(dx, x_type)
