"""Specs for ops/rnn_grad.py rules.

The BlockLSTM kernels exist for float32 and half only, so the finite-
difference check (float64) cannot run; test_rnn_grad.py instead compares
each rule with the gradient of a float64 LSTM written in plain TF ops
(REFERENCE_CASES). BlockLSTMV2's stock TF gradient applies the ICFO-layout
backward kernel to the IFCO-layout forward op, so its value is only checked
against the reference.
"""

import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops

# Sequence length, batch, input size, cell size.
T, B, I, H = 3, 2, 2, 2
SHAPES = [(T, B, I), (B, H), (B, H), (I + H, 4 * H), (H,), (H,), (H,),
          (4 * H,)]


def block_lstm(op_type, seq_len_max=T, **attrs):
  """build(x, cs_prev, h_prev, w, wci, wcf, wco, b) -> [h, cs]."""
  def build(x, cs_prev, h_prev, w, wci, wcf, wco, b):
    out = getattr(raw, op_type)(
        seq_len_max=tf.constant(seq_len_max, tf.int64), x=x, cs_prev=cs_prev,
        h_prev=h_prev, w=w, wci=wci, wcf=wcf, wco=wco, b=b, **attrs)
    return [out.h, out.cs]
  return build


# (op type, variant, attrs, seq_len_max): each is a spec (where stock TF is
# right) and a reference case.
CASES = [
    ("BlockLSTM", "", dict(use_peephole=False), T),
    ("BlockLSTM", "peephole", dict(use_peephole=True, forget_bias=0.5,
                                   cell_clip=-1.0), T),
    ("BlockLSTM", "short_sequence", dict(use_peephole=True), T - 1),
    ("BlockLSTMV2", "", dict(use_peephole=False), T),
    ("BlockLSTMV2", "peephole", dict(use_peephole=True), T),
    ("BlockLSTMV2", "short_sequence", dict(use_peephole=True), T - 1),
]

_NOTE = ("float32/half kernels and a backward kernel without a gradient: "
         "no float64 finite differences; test_rnn_grad.py checks the value "
         "against a float64 reference LSTM")

SPECS = [
    Spec(op, block_lstm(op, n, **attrs), SHAPES, variant, dtypes=("float32",),
         order=0, note=_NOTE)
    for op, variant, attrs, n in CASES if op == "BlockLSTM"
]

# TF's gradient for BlockLSTMV2 has the wrong value (see the module doc).
TF_WRONG_GRADIENT = ("BlockLSTMV2",)

NUMERIC_ONLY_SPECS = [
    Spec(op, block_lstm(op, n, **attrs), SHAPES, variant, dtypes=("float32",),
         order=0, note=_NOTE + "; stock TF's value is wrong (ICFO backward "
         "kernel on the IFCO forward op)")
    for op, variant, attrs, n in CASES if op in TF_WRONG_GRADIENT
]


# ----- cuDNN RNNs (GPU kernels only) -----

_CUDNN_NOTE = "cuDNN kernels only exist on GPU: graph structure compared only"
_PARAMS = {"lstm": 48, "gru": 36, "rnn_tanh": 12}  # for input and cell size 2


def _cudnn(op_type, rnn_mode, **attrs):
  def build(x, h, c, params):
    extra = ({"sequence_lengths": tf.constant([3, 2])}
             if op_type == "CudnnRNNV3" else {})
    out = getattr(raw, op_type)(input=x, input_h=h, input_c=c, params=params,
                                rnn_mode=rnn_mode, is_training=True, **extra,
                                **attrs)
    return list(out[:3])
  return build


SPECS += [
    Spec(op, _cudnn(op, mode, **attrs),
         [(3, 2, 2), (n_dir, 2, 2), (n_dir, 2, 2), (_PARAMS[mode] * n_dir,)],
         variant, runs=False, order=0, note=_CUDNN_NOTE)
    for op in ("CudnnRNN", "CudnnRNNV2", "CudnnRNNV3")
    for variant, mode, n_dir, attrs in (
        ("", "lstm", 1, {}), ("gru", "gru", 1, {}),
        ("bidirectional", "rnn_tanh", 2, dict(direction="bidirectional")))
]
