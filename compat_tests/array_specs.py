"""Specs for ops/array_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec

SPECS = [
    Spec("Identity", tf.identity, [(2, 3)],
         dtypes=("float64", "float32", "complex128")),
]
