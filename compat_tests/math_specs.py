"""Specs for ops/math_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec

SPECS = [
    Spec("AddV2", tf.add, [(2, 3), (2, 3)], "same_shape",
         dtypes=("float64", "float32", "complex128")),
    Spec("AddV2", tf.add, [(2, 3), (3,)], "broadcast"),
    Spec("AddV2", tf.add, [(4, 1, 3), (2, 1)], "broadcast_both"),
    Spec("Mul", tf.multiply, [(2, 3), (2, 3)], "same_shape",
         dtypes=("float64", "float32", "complex128")),
    Spec("Mul", tf.multiply, [(2, 3), ()], "scalar"),
    Spec("Sum", lambda x: tf.reduce_sum(x), [(2, 3)], "all"),
    Spec("Sum", lambda x: tf.reduce_sum(x, axis=1), [(2, 3)], "axis1"),
    Spec("Sum", lambda x: tf.reduce_sum(x, axis=[0, -1], keepdims=True),
         [(2, 3, 4)], "keepdims"),
]
