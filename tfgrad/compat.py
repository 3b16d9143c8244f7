"""TF1-style names: `tfgrad.compat.v1.gradients` mirrors
`tf.compat.v1.gradients` (with `colocate_gradients_with_ops`)."""

import types

from tfgrad import api

v1 = types.SimpleNamespace(gradients=api.gradients_v1)
v2 = types.SimpleNamespace(gradients=api.gradients)
