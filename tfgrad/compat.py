"""TF1-style names: `tfgrad.compat.v1.gradients` and
`tfgrad.compat.v1.hessians` mirror `tf.compat.v1.gradients` /
`tf.compat.v1.hessians` (with `colocate_gradients_with_ops`)."""

import types

from tfgrad import api
from tfgrad import higher_order

v1 = types.SimpleNamespace(gradients=api.gradients_v1,
                           hessians=higher_order.hessians_v1)
v2 = types.SimpleNamespace(gradients=api.gradients,
                           hessians=higher_order.hessians)
