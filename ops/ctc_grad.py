"""Gradient rules for the CTC loss ops (TF's ctc_ops.py registrations).

The fused CTCLoss kernel returns d loss / d logits alongside the loss, so
the rule only scales it per batch entry. That second output has no
derivative of its own: it is wrapped in PreventGradient, so asking for a
second derivative fails loudly instead of silently returning zeros.
"""

import tensorflow as tf

from tfgrad.emit import raw
from tfgrad.registry import RegisterGradient

_NO_SECOND_ORDER = ("CTCLoss has no second derivative: its fused kernel "
                    "only provides the first")


# ----- CTC loss -----

@RegisterGradient("CTCLoss")
def _ctc_loss_grad(op, grad_loss, unused_grad_gradient):
  """d logits = grad_loss[b] * (the kernel's d loss[b] / d logits); the
  labels and sequence lengths get none."""
  del unused_grad_gradient
  fused = raw.PreventGradient(input=op.outputs[1],
                                     message=_NO_SECOND_ORDER)
  return [tf.expand_dims(grad_loss, -1) * fused, None, None, None]
