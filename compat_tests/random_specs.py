"""Specs for ops/random_grad.py rules.

Samplers are built on x's shape (or fed x as a parameter) so that they lie
on a path from x to y and their declaration is exercised. Stateful samplers
draw new values on every session run, so only the comparison with stock TF
applies to them (order=0).
"""

import tensorflow as tf

from compat_tests.spec import Spec

_STATEFUL = "stateful sampler: every session run draws new values, so " \
    "finite differences do not apply"
_GAMMA = "the implicit-reparameterization gradient is not the derivative " \
    "of the sampler's own algorithm, so finite differences do not apply"
_SEED = [1, 2]


def _key_counter_alg():
  """Philox key, counter and algorithm inputs for the V2 stateless ops."""
  return (tf.constant([7], tf.uint64), tf.constant([0, 3], tf.uint64),
          tf.constant(1))


def _stateless_v2(op):
  """x * op(shape(x)) for a shape-and-key stateless sampler `op`."""
  def build(x):
    key, counter, alg = _key_counter_alg()
    return x * op(shape=tf.shape(x), key=key, counter=counter, alg=alg,
                  dtype=x.dtype)
  return build


def _stateless_v3_gamma(shape, alpha):
  key, counter, alg = _key_counter_alg()
  return tf.raw_ops.StatelessRandomGammaV3(shape=shape, key=key,
                                           counter=counter, alg=alg,
                                           alpha=alpha)


def _int_index(x, samples):
  """Gathers x at sampled integer positions (kept in range)."""
  return tf.gather(x, tf.math.floormod(samples, x.shape[0]))


SPECS = [
    # ----- Gamma samplers -----
    Spec("RandomGamma", lambda a: tf.raw_ops.RandomGamma(
        shape=[2], alpha=a, seed=1, seed2=2), [(3,)], domain="positive",
         order=0, note=_GAMMA),
    Spec("RandomGamma",
         lambda a: tf.random.gamma([2, 1], a, seed=3, dtype=a.dtype),
         [(2, 2)], "matrix_alpha", domain="positive", order=0, note=_GAMMA),
    Spec("StatelessRandomGammaV2",
         lambda a: tf.raw_ops.StatelessRandomGammaV2(shape=[2, 3], seed=_SEED,
                                                     alpha=a),
         [(3,)], domain="positive", order=0, note=_GAMMA),
    Spec("StatelessRandomGammaV3", lambda a: _stateless_v3_gamma([2, 2], a),
         [(2,)], domain="positive", order=0, note=_GAMMA),
    Spec("StatelessRandomGammaV3",
         lambda a: tf.random.stateless_gamma([3], _SEED, a, dtype=a.dtype),
         [()], "scalar_alpha", domain="positive", order=0, note=_GAMMA),

    # ----- Stateful samplers (not differentiable) -----
    Spec("RandomUniform", lambda x: x * tf.raw_ops.RandomUniform(
        shape=tf.shape(x), dtype=x.dtype, seed=1, seed2=2), [(2, 3)],
         order=0, note=_STATEFUL),
    Spec("RandomStandardNormal",
         lambda x: x * tf.raw_ops.RandomStandardNormal(
             shape=tf.shape(x), dtype=x.dtype, seed=1, seed2=2), [(3,)],
         order=0, note=_STATEFUL),
    Spec("TruncatedNormal", lambda x: x * tf.raw_ops.TruncatedNormal(
        shape=tf.shape(x), dtype=x.dtype, seed=1, seed2=2), [(3,)],
         order=0, note=_STATEFUL),
    Spec("ParameterizedTruncatedNormal",
         lambda x: x * tf.raw_ops.ParameterizedTruncatedNormal(
             shape=[3], means=x, stdevs=tf.ones_like(x),
             minvals=x - 1.0, maxvals=x + 1.0, seed=1, seed2=2), [(3,)],
         order=0, note=_STATEFUL),
    Spec("RandomShuffle", lambda x: x * tf.random.shuffle(x, seed=4),
         [(4,)], order=0, note=_STATEFUL),
    Spec("Multinomial", lambda x: tf.gather(x, tf.random.categorical(
        x, 2, seed=5), axis=1, batch_dims=1), [(2, 3)], order=0,
         note=_STATEFUL),

    # ----- Stateless samplers (not differentiable) -----
    Spec("StatelessRandomUniform", lambda x: x * tf.raw_ops.
         StatelessRandomUniform(shape=tf.shape(x), seed=_SEED, dtype=x.dtype),
         [(2, 3)]),
    Spec("StatelessRandomNormal", lambda x: x * tf.raw_ops.
         StatelessRandomNormal(shape=tf.shape(x), seed=_SEED, dtype=x.dtype),
         [(3,)]),
    Spec("StatelessTruncatedNormal", lambda x: x * tf.raw_ops.
         StatelessTruncatedNormal(shape=tf.shape(x), seed=_SEED,
                                  dtype=x.dtype), [(3,)]),
    Spec("StatelessRandomUniformV2",
         _stateless_v2(tf.raw_ops.StatelessRandomUniformV2), [(2, 2)]),
    Spec("StatelessRandomNormalV2",
         _stateless_v2(tf.raw_ops.StatelessRandomNormalV2), [(3,)]),
    Spec("StatelessTruncatedNormalV2",
         _stateless_v2(tf.raw_ops.StatelessTruncatedNormalV2), [(3,)]),
    Spec("StatelessRandomPoisson", lambda x: x * tf.raw_ops.
         StatelessRandomPoisson(shape=[3], seed=_SEED, lam=x, dtype=x.dtype),
         [(3,)], domain="positive"),
    Spec("StatelessRandomBinomial", lambda x: x * tf.raw_ops.
         StatelessRandomBinomial(shape=[3], seed=_SEED, probs=x,
                                 counts=tf.constant(4.0, x.dtype),
                                 dtype=x.dtype),
         [(3,)], domain="open_unit"),
    Spec("StatelessMultinomial", lambda x: tf.gather(
        x, tf.raw_ops.StatelessMultinomial(logits=x, num_samples=2,
                                           seed=_SEED), axis=1, batch_dims=1),
         [(2, 3)]),
    Spec("StatelessRandomUniformInt", lambda x: _int_index(
        x, tf.raw_ops.StatelessRandomUniformInt(
            shape=tf.shape(x), seed=_SEED, minval=0, maxval=3)), [(3,)]),
    Spec("StatelessRandomUniformIntV2", lambda x: _int_index(
        x, tf.raw_ops.StatelessRandomUniformIntV2(
            shape=tf.shape(x), key=_key_counter_alg()[0],
            counter=_key_counter_alg()[1], alg=_key_counter_alg()[2],
            minval=0, maxval=3)), [(3,)]),
    Spec("StatelessRandomUniformFullInt", lambda x: _int_index(
        x, tf.raw_ops.StatelessRandomUniformFullInt(
            shape=tf.shape(x), seed=_SEED, dtype=tf.int64)), [(3,)]),
    Spec("StatelessRandomUniformFullIntV2", lambda x: _int_index(
        x, tf.raw_ops.StatelessRandomUniformFullIntV2(
            shape=tf.shape(x), key=_key_counter_alg()[0],
            counter=_key_counter_alg()[1], alg=_key_counter_alg()[2],
            dtype=tf.int64)), [(3,)]),
    Spec("RandomIndexShuffle", lambda x: tf.gather(
        x, tf.raw_ops.RandomIndexShuffle(
            index=tf.constant([0, 1, 2], tf.int64),
            seed=tf.constant([1, 2, 3], tf.int64),
            max_index=tf.constant(2, tf.int64))), [(3,)]),
]


def _truncated_normal(shape):
  """A seeded truncated normal with mean in [-0.5, 1], stddev in [0.5, 2]
  and bounds in [-3, -1.5] and [1.5, 3] (inputs drawn positive)."""
  def build(m, s, lo, hi):
    return tf.raw_ops.StatelessParameterizedTruncatedNormal(
        shape=shape, seed=_SEED, means=m - 1.0, stddevs=s, minvals=-lo - 1.0,
        maxvals=hi + 1.0)
  return build


SPECS += [
    # ----- Truncated normal -----
    Spec("StatelessParameterizedTruncatedNormal", _truncated_normal([2, 3]),
         [(3,), (), (), ()], "broadcast", domain="positive", order=0,
         note=_GAMMA),
    Spec("StatelessParameterizedTruncatedNormal", _truncated_normal([3]),
         [(3,), (3,), (3,), (3,)], "same_shape", domain="positive", order=0,
         note=_GAMMA),
]
