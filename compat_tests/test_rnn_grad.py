"""ops/rnn_grad.py: the BlockLSTM rules against stock TF and against the
gradient of a float64 LSTM built from plain TF ops."""

import numpy as np
import pytest
import tensorflow as tf

import tfgrad
from compat_tests import harness
from compat_tests import rnn_specs

_LAYOUT = {"BlockLSTM": "icfo", "BlockLSTMV2": "ifco"}


@pytest.mark.parametrize(**harness.cases(rnn_specs.SPECS))
def test_matches_tf(spec, dtype):
  harness.check_matches_tf(spec, dtype)


def _reference_lstm(op_type, attrs, seq_len_max, x, cs, h, w, wci, wcf, wco,
                    b):
  """[h, cs] sequences of the LSTM the kernel computes (no clipping)."""
  if not attrs.get("use_peephole"):
    wci, wcf, wco = wci * 0, wcf * 0, wco * 0
  forget_bias = attrs.get("forget_bias", 1.0) if op_type == "BlockLSTM" else 0
  hs, css = [], []
  for t in range(seq_len_max):
    gates = tf.matmul(tf.concat([x[t], h], 1), w) + b
    part = dict(zip(_LAYOUT[op_type], tf.split(gates, 4, axis=1)))
    i = tf.sigmoid(cs * wci + part["i"])
    f = tf.sigmoid(cs * wcf + part["f"] + forget_bias)
    cs = tf.tanh(part["c"]) * i + cs * f
    h = tf.tanh(cs) * tf.sigmoid(cs * wco + part["o"])
    hs.append(h)
    css.append(cs)
  pad = [tf.zeros_like(h)] * (x.shape[0] - seq_len_max)
  return [tf.stack(hs + pad), tf.stack(css + pad)]


def _gradients(op_type, attrs, seq_len_max, tfgrad_rule):
  rng = np.random.default_rng(7)
  values = [rng.uniform(-1.0, 1.0, s) for s in rnn_specs.SHAPES]
  cotangents = [rng.uniform(-1.0, 1.0, rnn_specs.SHAPES[0][:2] + (rnn_specs.H,))
                for _ in range(2)]
  dtype = np.float32 if tfgrad_rule else np.float64
  with tf.Graph().as_default():
    xs = [tf.constant(v.astype(dtype)) for v in values]
    if tfgrad_rule:
      ys = rnn_specs.block_lstm(op_type, seq_len_max, **attrs)(*xs)
      grads = tfgrad.gradients(ys, xs, [c.astype(dtype) for c in cotangents],
                               strict=True)
    else:
      ys = _reference_lstm(op_type, attrs, seq_len_max, *xs)
      grads = tf.gradients(ys, xs, cotangents)
    with tf.compat.v1.Session() as sess:
      return sess.run(grads)


@pytest.mark.parametrize("op_type,variant,attrs,seq_len_max", rnn_specs.CASES,
                         ids=[f"{c[0]}-{c[1] or 'plain'}"
                              for c in rnn_specs.CASES])
def test_matches_reference_lstm(op_type, variant, attrs, seq_len_max):
  del variant
  ours = _gradients(op_type, attrs, seq_len_max, tfgrad_rule=True)
  expected = _gradients(op_type, attrs, seq_len_max, tfgrad_rule=False)
  for i, (a, b) in enumerate(zip(ours, expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5,
                               err_msg=f"{op_type}: gradient {i}")


@pytest.mark.parametrize("op_type", rnn_specs.TF_WRONG_GRADIENT)
def test_tf_gradient_is_wrong(op_type):
  """The TF gap the numeric-only specs document is real (until TF fixes it)."""
  spec = next(s for s in rnn_specs.NUMERIC_ONLY_SPECS if s.op == op_type)
  rng = np.random.default_rng(3)
  with tf.Graph().as_default():
    xs = [tf.constant(rng.uniform(-1.0, 1.0, s).astype(np.float32))
          for s in spec.shapes]
    ys = spec.build(*xs)
    ours, theirs = tfgrad.gradients(ys, xs), tf.gradients(ys, xs)
    with tf.compat.v1.Session() as sess:
      a, b = sess.run([ours[-1], theirs[-1]])
  assert np.abs(a - b).max() > 1e-3
