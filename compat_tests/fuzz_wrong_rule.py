"""A deliberately wrong tfgrad rule, for the fuzzer's own tests
(`--rules_module=compat_tests.fuzz_wrong_rule`).

`wrong_square(x)` is `tf.square` under `gradient_override_map` to a name of
its own, so no real op type's rule changes: tfgrad's registry gets a rule
for that name that is off by `grad` (d/dx x^2 = 2x, here 2x + 1), TF's
registry the right one, which stock `tf.gradients` uses.
"""

import tensorflow as tf

import tfgrad

OVERRIDE_NAME = "TfgradFuzzTestWrongSquare"


@tfgrad.RegisterGradient(OVERRIDE_NAME)
def wrong_square_grad(op, grad):
  """grad * (2x + 1): one grad too many."""
  return grad * (2.0 * op.inputs[0] + 1.0)


@tf.RegisterGradient(OVERRIDE_NAME)
def _square_grad(op, grad):
  """grad * 2x."""
  return grad * 2.0 * op.inputs[0]


def wrong_square(x):
  """tf.square whose gradient comes from the rules above."""
  graph = tf.compat.v1.get_default_graph()
  with graph.gradient_override_map({"Square": OVERRIDE_NAME}):
    return tf.square(x)


FUZZ_OPS = [dict(name="wrong_square", template="rules.wrong_square({0})",
                 arity=1, dtypes=("float32", "float64"))]
