"""Gradient rules for neural-network ops (TF's nn_grad.py family).

Besides the forward ops, the *Grad ops their rules emit (ReluGrad,
Conv2DBackpropInput, MaxPoolGrad, FusedBatchNormGradV3, ...) have rules
too, so Hessians of conv/pool/activation nets stay native.
"""

import numpy as np
import tensorflow as tf

from tfgrad import emit
from tfgrad import tf_compat
from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient
from tfgrad.registry import takes_known_gradients
from tfgrad.registry import takes_none_for_unreached_outputs

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
  """The attributes `names` of `op`, as keyword arguments for a raw op
  (AttrValue protos, read at once: see `tf_compat.attr_protos`)."""
  return tf_compat.attr_protos(op, names) if names else {}


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


def _cast(t, dtype):
  """`t` as `dtype`: `t` itself when it already is, else a Cast."""
  return t if t.dtype == dtype else raw.Cast(x=t, DstT=dtype)


def _vector(items):
  """A shape vector from ints and scalar tensors: a Pack of them when any
  is a tensor, else the list itself (a constant once given to `raw`)."""
  if any(isinstance(v, tf.Tensor) for v in items):
    return raw.Pack(values=items)
  return items


def _last(vector):
  """vector[-1] of a 1-D tensor (a scalar)."""
  return raw.StridedSlice(input=vector, begin=[-1], end=[0], strides=[1],
                          shrink_axis_mask=1)


def _softmax_vjp(grad, softmax):
  """(grad - <grad, softmax>) * softmax over the last axis."""
  inner = raw.Sum(input=raw.Mul(x=grad, y=softmax), axis=-1, keep_dims=True)
  return raw.Mul(x=raw.Sub(x=grad, y=inner), y=softmax)


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
def_unary("Softplus", lambda x, y, g: raw.Mul(x=g, y=raw.Sigmoid(x=x)))
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
    return [d_grad, raw.ZerosLike(x=x)]

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
    dout = raw.SelectV2(condition=raw.Less(x=y, y=0),
                        t=raw.Mul(x=grad, y=dy), e=raw.ZerosLike(x=y))
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
  with emit.after(grad):
    d_dy = raw.SoftplusGrad(gradients=grad, features=x)
    num = raw.Mul(x=grad, y=dy)
    denom = raw.AddV2(x=raw.AddV2(x=raw.Exp(x=raw.Neg(x=x)), y=2.0),
                      y=raw.Exp(x=x))
    return [d_dy, raw.RealDiv(x=num, y=denom)]


@RegisterGradient("SoftsignGrad")
def _softsign_grad_grad(op, grad):
  """out = g / (1 + |x|)^2: d/dg as forward, d/dx = -2 g sign(x) / (1+|x|)^3."""
  dy, x = op.inputs
  d_dy = raw.SoftsignGrad(gradients=grad, features=x)
  denom = raw.AddV2(x=1.0, y=raw.Abs(x=x))
  num = raw.Mul(x=raw.Mul(x=raw.Mul(x=-2.0, y=grad), y=dy), y=raw.Sign(x=x))
  cube = raw.Mul(x=raw.Mul(x=denom, y=denom), y=denom)
  return [d_dy, raw.RealDiv(x=num, y=cube)]


# ----- Softmax and cross-entropy -----

@RegisterGradient("Softmax")
def _softmax_grad(op, grad):
  """(g - sum(g * y, -1)) * y, reusing the output y."""
  return _softmax_vjp(grad, op.outputs[0])


@RegisterGradient("LogSoftmax")
def _log_softmax_grad(op, grad):
  """g - sum(g, -1) * exp(y), reusing the output y."""
  softmax = raw.Exp(x=op.outputs[0])
  total = raw.Sum(input=grad, axis=-1, keep_dims=True)
  return raw.Sub(x=grad, y=raw.Mul(x=total, y=softmax))


def _xent_logits_grad(op, grad_loss, grad_backprop):
  """g_loss * backprop, plus the softmax VJP of g_backprop when it is used;
  grad_loss comes with a trailing axis of size 1."""
  d_logits = raw.Mul(x=grad_loss, y=op.outputs[1])
  if not _is_zero(grad_backprop):
    softmax = raw.Softmax(logits=op.inputs[0])
    d_logits = raw.AddV2(x=d_logits, y=_softmax_vjp(grad_backprop, softmax))
  return d_logits


def _expanded_loss_grad(op, grad_loss):
  """g_loss with a trailing axis; zeros when only `backprop` was reached.
  A g_loss known at construction time becomes one constant of the
  expanded shape (the same values)."""
  if grad_loss is None:
    grad_loss = raw.ZerosLike(x=op.outputs[0])
  elif isinstance(grad_loss, emit.Known):
    return emit.const(grad_loss.value[..., np.newaxis], grad_loss.dtype)
  return raw.ExpandDims(input=grad_loss, axis=-1)


@RegisterGradient("SoftmaxCrossEntropyWithLogits")
@takes_none_for_unreached_outputs
@takes_known_gradients
def _softmax_xent_grad(op, grad_loss, grad_backprop):
  """logits: see _xent_logits_grad; labels: -g_loss * log_softmax - g_backprop
  (backprop = softmax - labels), when labels lead to an x."""
  grad_loss = _expanded_loss_grad(op, grad_loss)
  grad_backprop = emit.materialize(grad_backprop)
  d_logits = (_xent_logits_grad(op, grad_loss, grad_backprop)
              if _helpers.needs_grad(op, 0) else None)
  if not _helpers.needs_grad(op, 1):
    return [d_logits, None]
  d_labels = raw.Mul(x=grad_loss,
                     y=raw.Neg(x=raw.LogSoftmax(logits=op.inputs[0])))
  if not _is_zero(grad_backprop):
    d_labels = raw.Sub(x=d_labels, y=grad_backprop)
  return [d_logits, d_labels]


@RegisterGradient("SparseSoftmaxCrossEntropyWithLogits")
@takes_none_for_unreached_outputs
@takes_known_gradients
def _sparse_softmax_xent_grad(op, grad_loss, grad_backprop):
  """As the dense rule for logits; integer labels get none."""
  grad_loss = _expanded_loss_grad(op, grad_loss)
  grad_backprop = emit.materialize(grad_backprop)
  return [_xent_logits_grad(op, grad_loss, grad_backprop), None]


# ----- Bias and losses -----

@RegisterGradient("BiasAdd")
def _bias_add_grad(op, grad):
  """grad for the value; grad summed over all but the channel axis for bias."""
  # (the attribute's bytes, read from one NodeDef parse: half of a
  # get_attr call, and `raw` finds the proto for them in its cache)
  data_format = _attrs(op, ("data_format",))["data_format"].s
  d_bias = raw.BiasAddGrad(out_backprop=grad, data_format=data_format)
  return [grad, d_bias]


@RegisterGradient("BiasAddV1")
def _bias_add_v1_grad(op, grad):
  """grad for the value; grad summed over all but the last axis for bias."""
  rank = grad.shape.rank
  axes = list(range(rank - 1)) if rank is not None else raw.Range(
      start=0, limit=raw.Sub(x=raw.Rank(input=grad), y=1), delta=1)
  return [grad, raw.Sum(input=grad, axis=axes)]


@RegisterGradient("BiasAddGrad")
def _bias_add_grad_grad(op, grad):
  """Broadcasts the per-channel grad back over out_backprop's shape."""
  x = op.inputs[0]
  if op.get_attr("data_format") == b"NCHW":
    if x.shape.rank is not None:
      shape = [1, -1] + [1] * (x.shape.rank - 2)
    else:
      ones = raw.Fill(dims=_vector([raw.Sub(x=raw.Rank(input=x), y=2)]),
                      value=emit.const(1, tf.int32))
      shape = raw.ConcatV2(values=[[1, -1], ones], axis=0)
    grad = raw.Reshape(tensor=grad, shape=shape)
  return raw.BroadcastTo(input=grad, shape=_helpers.shape_of(x))


@RegisterGradient("L2Loss")
def _l2_loss_grad(op, grad):
  """L2Loss = sum(x^2) / 2, so x * g."""
  return raw.Mul(x=op.inputs[0], y=grad)


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
      **_attrs(op, _POOL_ATTRS + ("explicit_paddings",)))


def _def_max_pool_grad_grad(op_type, adjoint, attr_names):
  """`op_type` is linear in its grad input (adjoint: `adjoint`) and locally
  constant in orig_input/orig_output (zeros); ksize/strides inputs get none."""

  def rule(op, grad):
    x, y = op.inputs[0], op.inputs[1]
    window = dict(zip(("ksize", "strides"), op.inputs[3:]))
    d_grad = adjoint(orig_input=x, orig_output=y, grad=grad, **window,
                     **_attrs(op, attr_names))
    return [raw.ZerosLike(x=x), raw.ZerosLike(x=y), d_grad] + [None] * len(
        window)

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
@takes_none_for_unreached_outputs
def _fused_batch_norm_grad(op, grad_y, *unused_stat_grads):
  """x, scale, offset get the fused grad op's outputs (batch statistics in
  training; the given mean and variance, channels last, in inference).
  The statistics' gradients are ignored, as by TF's rule."""
  if grad_y is None:
    grad_y = raw.ZerosLike(x=op.outputs[0])
  grad_op = getattr(raw, _FUSED_BATCH_NORM_GRAD[op.type])
  x, scale = op.inputs[0], op.inputs[1]
  a = _attrs(op, ("data_format", "is_training", "epsilon"))
  fmt, training = a["data_format"].s, a["is_training"].b
  stats = op.outputs[3:5] if training else op.inputs[3:5]
  extra = {"reserve_space_3": op.outputs[5]} if len(op.outputs) > 5 else {}
  to_last = None if training else _TO_CHANNELS_LAST.get(fmt)
  if to_last:
    x = raw.Transpose(x=x, perm=to_last)
    grad_y = raw.Transpose(x=grad_y, perm=to_last)
    fmt = b"NHWC" if fmt == b"NCHW" else b"NDHWC"
  dx, dscale, doffset = grad_op(
      y_backprop=grad_y, x=x, scale=scale, reserve_space_1=stats[0],
      reserve_space_2=stats[1], epsilon=a["epsilon"],
      data_format=fmt, is_training=training, **extra)[:3]
  if to_last:
    dx = raw.Transpose(x=dx, perm=_TO_CHANNELS_FIRST[a["data_format"].s])
  return [dx, dscale, doffset, None, None]



def _batch_norm_training_grad_grad(dy, x, scale, ggs, axes, epsilon):
  """VJP of (dx, dscale, doffset) = batch-norm backprop, batch statistics.

  With x_hat = (x - mean) / sigma and P(v) = v - mean(v) - x_hat mean(v x_hat)
  (per channel): dx = scale / sigma P(dy), dscale = sum(dy x_hat),
  doffset = sum(dy); d x_hat = P(d x) / sigma, d sigma = mean(x_hat d x).
  """
  mean = lambda v: raw.Mean(input=v, axis=axes, keep_dims=True)
  mul, add, sub = raw.Mul, raw.AddV2, raw.Sub
  gg_x, gg_scale, gg_offset = ggs
  centered = sub(x=x, y=mean(x))
  inv_sigma = raw.Rsqrt(x=add(x=mean(raw.Square(x=centered)), y=epsilon))
  x_hat = mul(x=centered, y=inv_sigma)
  proj = lambda v: sub(x=sub(x=v, y=mean(v)),
                       y=mul(x=x_hat, y=mean(mul(x=v, y=x_hat))))
  p_dy, c = proj(dy), mul(x=scale, y=inv_sigma)
  g_dy = add(x=add(x=mul(x=c, y=proj(gg_x)), y=mul(x=gg_scale, y=x_hat)),
             y=gg_offset)
  g_x_hat = sub(x=mul(x=gg_scale, y=dy),
                y=mul(x=c, y=add(x=mul(x=mean(mul(x=dy, y=x_hat)), y=gg_x),
                                 y=mul(x=mean(mul(x=gg_x, y=x_hat)), y=dy))))
  g_x = mul(x=inv_sigma,
            y=sub(x=proj(g_x_hat),
                  y=mul(x=x_hat, y=mean(mul(x=mul(x=gg_x, y=c), y=p_dy)))))
  g_scale = raw.Sum(input=mul(x=mul(x=gg_x, y=p_dy), y=inv_sigma), axis=axes)
  return g_dy, g_x, g_scale


def _batch_norm_inference_grad_grad(dy, x, scale, ggs, axes, stats, epsilon):
  """VJP of dx = dy scale r, dscale = sum(dy (x - mean) r), doffset = sum(dy),
  with r = rsqrt(variance + epsilon) from the given statistics."""
  gg_x, gg_scale, gg_offset = ggs
  mean, variance = stats
  mul = raw.Mul
  r = raw.Rsqrt(x=raw.AddV2(x=variance, y=epsilon))
  g_dy = raw.AddV2(
      x=raw.AddV2(x=mul(x=mul(x=gg_x, y=scale), y=r),
                  y=mul(x=mul(x=gg_scale, y=raw.Sub(x=x, y=mean)), y=r)),
      y=gg_offset)
  return (g_dy, mul(x=mul(x=gg_scale, y=dy), y=r),
          raw.Sum(input=mul(x=mul(x=gg_x, y=dy), y=r), axis=axes))


@RegisterGradient("FusedBatchNormGrad")
@RegisterGradient("FusedBatchNormGradV2")
@RegisterGradient("FusedBatchNormGradV3")
def _fused_batch_norm_grad_grad(op, *grads):
  """Second order of batch norm: VJP of the backprop's (dx, dscale, doffset)
  for y_backprop, x and scale; the reserved statistics get none."""
  dy, x, scale = op.inputs[:3]
  u = scale.dtype
  axes, shape = _channel_axes(x, op.get_attr("data_format"))
  per_channel = lambda v: raw.Reshape(tensor=v, shape=shape)
  dy, x, gg_x = _cast(dy, u), _cast(x, u), _cast(grads[0], u)
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
  return ([_cast(g_dy, x_type), _cast(g_x, x_type), g_scale]
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
    return emit.const(static, tf.int64)
  return raw.Shape(input=x, out_type=tf.int64)


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
  else:
    n = x_shape[-1] if isinstance(x_shape, tuple) else _last(x_shape)
    k = _last(_helpers.shape_of(indices))
    static = _helpers.static_shape(indices)
    size = (emit.const(int(np.prod(static, dtype=np.int64)), tf.int32)
            if static is not None else raw.Size(input=indices))
    rows = raw.FloorDiv(x=size, y=k)
  offsets = raw.Reshape(
      tensor=raw.Mul(x=raw.Range(start=0, limit=rows, delta=1), y=n),
      shape=[-1, 1])
  flat = raw.Reshape(
      tensor=raw.AddV2(x=raw.Reshape(tensor=indices, shape=_vector([-1, k])),
                       y=offsets), shape=[-1, 1])
  total = raw.Mul(x=rows, y=n) if isinstance(rows, tf.Tensor) else rows * n
  dx = raw.ScatterNd(indices=flat, updates=raw.Reshape(tensor=grad, shape=[-1]),
                     shape=_vector([total]))
  return raw.Reshape(tensor=dx, shape=x_shape)


def _static_or_dynamic_shape(x):
  static = _helpers.static_shape(x)
  return static if static is not None else raw.Shape(input=x)


@RegisterGradient("TopKV2")
def _top_k_v2_grad(op, grad, unused_indices_grad):
  """Each kept value's grad goes back to its position in the input."""
  del unused_indices_grad
  x, k = op.inputs
  return [_scatter_last_axis(grad, op.outputs[1], _static_or_dynamic_shape(x)),
          emit.const(0, k.dtype)]


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
  moved = _scatter_last_axis(raw.Transpose(x=grad, perm=perm),
                             raw.Transpose(x=indices, perm=perm),
                             tuple(x_shape[p] for p in perm))
  return raw.Transpose(x=moved, perm=perm)


@RegisterGradient("NthElement")
def _nth_element_grad(op, grad):
  """grad goes to the inputs equal to the selected value, shared evenly."""
  x, y = op.inputs[0], op.outputs[0]
  hits = raw.Cast(x=raw.Equal(x=raw.ExpandDims(input=y, axis=-1), y=x),
                  DstT=grad.dtype)
  share = raw.RealDiv(x=hits,
                      y=raw.Sum(input=hits, axis=-1, keep_dims=True))
  return [raw.Mul(x=share, y=raw.ExpandDims(input=grad, axis=-1)), None]


@RegisterGradient("IsotonicRegression")
def _isotonic_regression_grad(op, grad, unused_segments_grad):
  """Each output is the mean of the inputs in its pooled block, so each
  input receives the mean of its block's grad (per row)."""
  del unused_segments_grad
  segments = op.outputs[1]
  static = _helpers.static_shape(grad)
  if static is not None:
    rows, n = static
  else:
    rows, n = raw.Unpack(value=raw.Shape(input=grad), num=2)
  offsets = raw.Reshape(
      tensor=raw.Mul(x=raw.Range(start=0, limit=rows, delta=1), y=n),
      shape=[-1, 1])
  ids = raw.AddV2(x=segments, y=offsets)
  total = rows * n if static is not None else raw.Mul(x=rows, y=n)
  sums = raw.UnsortedSegmentSum(data=grad, segment_ids=ids, num_segments=total)
  counts = raw.UnsortedSegmentSum(data=raw.OnesLike(x=grad), segment_ids=ids,
                                  num_segments=total)
  dx = raw.GatherV2(params=raw.DivNoNan(x=sums, y=counts), indices=ids, axis=0)
  return _cast(dx, op.inputs[0].dtype)
