"""Specs for ops/resource_variable_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec

SPECS = [
    Spec("ReadVariableOp", lambda v: v.read_value() * 2.0, [(2, 3)],
         variables=True),
    Spec("ReadVariableOp", lambda v: tf.reduce_sum(v * v), [(3,)],
         "sparse_free_square", variables=True),
]
