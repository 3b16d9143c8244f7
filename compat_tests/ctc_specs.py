"""Specs for ops/ctc_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec

_FUSED = ("the rule passes on the fused kernel's own d loss / d logits, "
          "which differs from finite differences of its loss by up to ~1% "
          "(in TF as here), so only the comparison with TF applies; a "
          "second derivative is refused (test_second_order_refused)")
_FIRST = dict(order=0, note=_FUSED)


def _ctc_loss(**attrs):
  """CTC loss of logits x (time 4, batch 2, 4 classes, blank last)."""
  def build(x):
    return tf.raw_ops.CTCLoss(
        inputs=x, labels_indices=tf.constant([[0, 0], [0, 1], [1, 0]],
                                             tf.int64),
        labels_values=tf.constant([1, 2, 0]),
        sequence_length=tf.constant([4, 3]), **attrs)[0]
  return build


SPECS = [
    # ----- CTC loss -----
    Spec("CTCLoss", _ctc_loss(), [(4, 2, 4)], **_FIRST),
    Spec("CTCLoss", _ctc_loss(ctc_merge_repeated=False,
                              preprocess_collapse_repeated=True),
         [(4, 2, 4)], "collapse", **_FIRST),
]
