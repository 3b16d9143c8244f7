"""Gradient rules for the fused LSTM kernels (TF's rnn_grad.py).

BlockLSTM runs a whole sequence in one kernel; its gradient is the matching
fused backward kernel, fed the forward op's saved activations. Only the
gradients of the `h` and `cs` sequences flow back: the other outputs are
activations the backward kernel reads, not results. The backward kernels
have no gradients of their own, so these rules are first order only.
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.emit import raw


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


# ----- cuDNN RNNs -----


def _cudnn_backward(grad_op, op, grads, extra_inputs=(), extra_outputs=(),
                    extra_attrs=()):
  """Runs the cuDNN backward kernel `grad_op` on the forward op's inputs,
  outputs, saved reserve space and the output, h and c gradients."""
  if not op.get_attr("is_training"):
    raise ValueError(f"Differentiating {op.type} '{op.name}' requires "
                     "is_training=True (no reserve space is saved otherwise)")
  inputs, outputs = op.inputs, op.outputs
  args = dict(input=inputs[0], input_h=inputs[1], input_c=inputs[2],
              params=inputs[3], output=outputs[0], output_h=outputs[1],
              output_c=outputs[2], reserve_space=outputs[3],
              output_backprop=grads[0], output_h_backprop=grads[1],
              output_c_backprop=grads[2])
  args.update({name: inputs[i] for name, i in extra_inputs})
  args.update({name: outputs[i] for name, i in extra_outputs})
  for name in ("dropout", "seed", "seed2", "rnn_mode", "input_mode",
               "direction") + tuple(extra_attrs):
    args[name] = op.get_attr(name)
  return list(grad_op(**args))


@RegisterGradient("CudnnRNN")
def _cudnn_rnn_grad(op, *grads):
  """The fused cuDNN backward pass: d input, d input_h, d input_c, d params."""
  return _cudnn_backward(raw.CudnnRNNBackprop, op, grads)


@RegisterGradient("CudnnRNNV2")
def _cudnn_rnn_v2_grad(op, *grads):
  """CudnnRNN's backward pass, also fed the host-side reserved state."""
  return _cudnn_backward(raw.CudnnRNNBackpropV2, op, grads,
                         extra_outputs=[("host_reserved", 4)])


@RegisterGradient("CudnnRNNV3")
def _cudnn_rnn_v3_grad(op, *grads):
  """CudnnRNNV2's backward pass for variable-length (and projected)
  sequences; sequence_lengths gets None."""
  return _cudnn_backward(raw.CudnnRNNBackpropV3, op, grads,
                         extra_inputs=[("sequence_lengths", 4)],
                         extra_outputs=[("host_reserved", 4)],
                         extra_attrs=("time_major", "num_proj")) + [None]
