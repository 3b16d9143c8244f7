"""Gradient rules for random ops.

Samplers are constants with respect to their inputs, except the Gamma
samplers, whose samples are differentiated in alpha by implicit
reparameterization: d sample / d alpha = -(dF/d alpha) / (dF/d sample),
F the Gamma CDF, computed by the RandomGammaGrad op (which itself has no
gradient, so these rules are first order only).
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

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
  partial = tf.raw_ops.RandomGammaGrad(alpha=alpha_b, sample=sample)
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
    "StatelessRandomUniform", "StatelessRandomUniformFullInt",
    "StatelessRandomUniformFullIntV2", "StatelessRandomUniformInt",
    "StatelessRandomUniformIntV2", "StatelessRandomUniformV2",
    "StatelessTruncatedNormal", "StatelessTruncatedNormalV2",
    "TruncatedNormal")


# ----- Gamma samplers -----


@RegisterGradient("RandomGamma")
def _random_gamma_grad(op, grad):
  """d alpha = sum over sample dims of grad * d sample / d alpha
  (samples have shape `shape + alpha.shape`)."""
  shape, alpha = op.inputs
  lead = _num_dims(shape)
  return None, _gamma_alpha_grad(alpha, op.outputs[0], grad, lead)


def _stateless_gamma_grad(op, grad):
  """d alpha = sum over sample dims of grad * d sample / d alpha
  (samples have shape `shape`, ending in alpha's shape)."""
  shape, alpha = op.inputs[0], op.inputs[-1]
  rank = alpha.shape.rank
  lead = _num_dims(shape)
  lead = lead - rank if rank is not None else lead - tf.rank(alpha)
  dalpha = _gamma_alpha_grad(alpha, op.outputs[0], grad, lead)
  return [None] * (len(op.inputs) - 1) + [dalpha]


RegisterGradient("StatelessRandomGammaV2")(_stateless_gamma_grad)
RegisterGradient("StatelessRandomGammaV3")(_stateless_gamma_grad)
