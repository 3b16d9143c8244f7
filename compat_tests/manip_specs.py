"""Specs for ops/manip_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec

FC = ("float64", "float32", "complex128")

SPECS = [
    # ----- Rolling -----
    Spec("Roll", lambda x: tf.roll(x, 2, 0), [(4,)], "vector", dtypes=FC),
    Spec("Roll", lambda x: tf.roll(x, [1, -1], [0, 1]), [(3, 4)], "matrix"),
    Spec("Roll", lambda x: tf.roll(x, [1, 2], [1, 1]), [(2, 3)],
         "repeated_axis"),
]
