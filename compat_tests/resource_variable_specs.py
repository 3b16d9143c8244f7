"""Specs for ops/resource_variable_grad.py rules."""

import tensorflow as tf

from compat_tests.spec import Spec


def _gather(v, indices, **kwargs):
  """A ResourceGather on `v`'s handle (what tf.gather emits for variables)."""
  return tf.raw_ops.ResourceGather(resource=v.handle, indices=indices,
                                   dtype=v.dtype, **kwargs)


SPECS = [
    Spec("ReadVariableOp", lambda v: v.read_value() * 2.0, [(2, 3)],
         variables=True),
    Spec("ReadVariableOp", lambda v: tf.reduce_sum(v * v), [(3,)],
         "sparse_free_square", variables=True),
    Spec("ResourceGather", lambda v: tf.gather(v, [2, 0, 2]), [(3, 2)],
         variables=True),
    Spec("ResourceGather",
         lambda v: _gather(v, [[1, 0], [1, 1]]) * _gather(v, [[0, 0], [1, 0]]),
         [(2, 3)], "matrix_indices_two_gathers", variables=True),
    Spec("ResourceGather", lambda v: _gather(v, tf.constant([1], tf.int64)),
         [(3,)], "int64_indices", variables=True),
    Spec("ResourceGather", lambda v: tf.nn.embedding_lookup(v, [[0], [1]]),
         [(2, 4)], "embedding_lookup", variables=True),
    Spec("ResourceGatherNd",
         lambda v: tf.raw_ops.ResourceGatherNd(resource=v.handle,
                                               indices=[[1, 0], [0, 2]],
                                               dtype=v.dtype), [(2, 3)],
         variables=True),
    Spec("ResourceGatherNd",
         lambda v: tf.raw_ops.ResourceGatherNd(resource=v.handle,
                                               indices=[[1], [1]],
                                               dtype=v.dtype), [(2, 3)],
         "row_indices", variables=True),
    Spec("VariableShape",
         lambda v: tf.reshape(v.read_value(),
                              tf.raw_ops.VariableShape(input=v.handle)),
         [(2, 3)], variables=True),
    Spec("VarIsInitializedOp",
         lambda v: tf.raw_ops.VarIsInitializedOp(resource=v.handle),
         [(2,)], variables=True, order=0,
         note="boolean output: nothing to differentiate, structure only"),
]
