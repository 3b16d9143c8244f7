"""Gradient rules for the fused LSTM kernels (TF's rnn_grad.py).

BlockLSTM runs a whole sequence in one kernel; its gradient is the matching
fused backward kernel, fed the forward op's saved activations. Only the
gradients of the `h` and `cs` sequences flow back: the other outputs are
activations the backward kernel reads, not results. The backward kernels
have no gradients of their own, so these rules are first order only.
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

raw = tf.raw_ops


def _block_lstm_backward(grad_op, op, grads):
  """Runs `grad_op` on the forward op's inputs, activations and the h/cs
  gradients; seq_len_max gets None."""
  _, cs_grad, _, _, _, _, h_grad = grads
  names = ("seq_len_max", "x", "cs_prev", "h_prev", "w", "wci", "wcf", "wco",
           "b", "i", "cs", "f", "o", "ci", "co", "h")
  args = dict(zip(names, list(op.inputs) + list(op.outputs)))
  return (None,) + tuple(grad_op(
      **args, cs_grad=cs_grad, h_grad=h_grad,
      use_peephole=op.get_attr("use_peephole")))


@RegisterGradient("BlockLSTM")
def _block_lstm_grad(op, *grads):
  """Backpropagation through time for the ICFO gate layout of BlockLSTM."""
  return _block_lstm_backward(raw.BlockLSTMGrad, op, grads)


@RegisterGradient("BlockLSTMV2")
def _block_lstm_v2_grad(op, *grads):
  """Backpropagation through time for the IFCO gate layout of BlockLSTMV2."""
  return _block_lstm_backward(raw.BlockLSTMGradV2, op, grads)
