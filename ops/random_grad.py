"""Gradient rules for random ops.

Samplers are constants with respect to their inputs, except the Gamma
samplers, whose samples are differentiated in alpha by implicit
reparameterization: d sample / d alpha = -(dF/d alpha) / (dF/d sample),
F the Gamma CDF, computed by the RandomGammaGrad op (which itself has no
gradient, so these rules are first order only).
"""

import numpy as np
import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_not_differentiable


def _gamma_alpha_grad(alpha, sample, grad, lead):
  """d alpha = sum over the `lead` leading sample dims of
  grad * d sample / d alpha."""
  if isinstance(lead, int) and alpha.shape.is_fully_defined():
    alpha_b = tf.reshape(alpha, [1] * lead + alpha.shape.as_list())
    axes = list(range(lead))
  else:
    ones = tf.ones(tf.reshape(lead, [1]), tf.int32)
    alpha_b = tf.reshape(alpha, tf.concat([ones, tf.shape(alpha)], 0))
    axes = tf.range(lead)
  partial = raw.RandomGammaGrad(alpha=alpha_b, sample=sample)
  return tf.reduce_sum(grad * partial, axis=axes)


def _num_dims(shape_vector):
  """Length of a 1-D shape input: an int when static, else a Size op."""
  n = shape_vector.shape.num_elements()
  return n if n is not None else tf.size(shape_vector)


# ----- Not differentiable -----

def_not_differentiable(
    "Multinomial", "ParameterizedTruncatedNormal", "RandomIndexShuffle",
    "RandomShuffle", "RandomStandardNormal", "RandomUniform",
    "StatelessMultinomial", "StatelessRandomBinomial", "StatelessRandomNormal",
    "StatelessRandomNormalV2", "StatelessRandomPoisson",
    "StatelessRandomShuffle", "StatelessRandomUniform",
    "StatelessRandomUniformFullInt", "StatelessRandomUniformFullIntV2",
    "StatelessRandomUniformInt", "StatelessRandomUniformIntV2",
    "StatelessRandomUniformV2",
    "StatelessTruncatedNormal", "StatelessTruncatedNormalV2",
    "TruncatedNormal")


# ----- Gamma samplers -----


@RegisterGradient("RandomGamma")
def _random_gamma_grad(op, grad):
  """d alpha = sum over sample dims of grad * d sample / d alpha
  (samples have shape `shape + alpha.shape`)."""
  shape, alpha = op.inputs
  with _helpers.after_grads(grad):
    lead = _num_dims(shape)
    return None, _gamma_alpha_grad(alpha, op.outputs[0], grad, lead)


def _stateless_gamma_grad(op, grad):
  """d alpha = sum over sample dims of grad * d sample / d alpha
  (samples have shape `shape`, ending in alpha's shape)."""
  shape, alpha = op.inputs[0], op.inputs[-1]
  rank = alpha.shape.rank
  with _helpers.after_grads(grad):
    lead = _num_dims(shape)
    lead = lead - rank if rank is not None else lead - tf.rank(alpha)
    dalpha = _gamma_alpha_grad(alpha, op.outputs[0], grad, lead)
  return [None] * (len(op.inputs) - 1) + [dalpha]


RegisterGradient("StatelessRandomGammaV2")(_stateless_gamma_grad)
RegisterGradient("StatelessRandomGammaV3")(_stateless_gamma_grad)


# ----- Truncated normal -----


def _ndtr(x):
  """The standard normal CDF, accurate in both tails."""
  half_sqrt2 = tf.constant(0.5 * np.sqrt(2.0), x.dtype)
  w = x * half_sqrt2
  z = tf.abs(w)
  tail = tf.where(w > 0.0, 2.0 - tf.math.erfc(z), tf.math.erfc(z))
  return 0.5 * tf.where(z < half_sqrt2, 1.0 + tf.math.erf(w), tail)


def _sum_to(g, param, lead):
  """Sums g over the `lead` leading sample dims, then down to param's shape."""
  if isinstance(lead, int):
    g = tf.reduce_sum(g, list(range(lead))) if lead else g
  else:
    g = tf.reduce_sum(g, tf.range(lead))
  return _helpers.unbroadcast(g, param)


@RegisterGradient("StatelessParameterizedTruncatedNormal")
def _stateless_parameterized_truncated_normal_grad(op, grad):
  """Implicit reparameterization: with s, a, b the sample and bounds
  standardised and c = (Phi(s) - Phi(a)) / (Phi(b) - Phi(a)), d sample is
  1 d mean + s d stddev + c e^((s^2 - b^2)/2) d max
  + (1 - c) e^((s^2 - a^2)/2) d min, summed to each parameter's shape."""
  with _helpers.after_grads(grad):
    return _truncated_normal_grads(op, grad)


def _truncated_normal_grads(op, grad):
  shape, _, mean, stddev, lo, hi = op.inputs
  std = lambda t: (t - mean) / stddev
  s, a, b = std(op.outputs[0]), std(lo), std(hi)
  info = np.finfo(mean.dtype.as_numpy_dtype)
  cdf = (_ndtr(s) - _ndtr(a)) / (_ndtr(b) - _ndtr(a))
  cdf = tf.clip_by_value(cdf, info.tiny, 1.0 - info.eps)
  d_hi = tf.exp(0.5 * (s * s - b * b) + tf.math.log(cdf))
  d_lo = tf.exp(0.5 * (s * s - a * a) + tf.math.log1p(-cdf))
  params = (mean, stddev, lo, hi)
  ranks = [p.shape.rank for p in params]
  lead = _num_dims(shape)
  if None in ranks or not isinstance(lead, int):
    ranks = tf.stack([tf.rank(p) for p in params])
    lead = tf.size(shape) - tf.reduce_max(ranks)
  else:
    lead -= max(ranks)
  partials = (grad, grad * s, grad * d_lo, grad * d_hi)
  return [None, None] + [_sum_to(g, p, lead) for g, p in zip(partials, params)]
