"""Specs for ops/sparse_csr_matrix_grad.py rules.

CSR matrices are variant tensors, so every builder starts from the float
values of a COO matrix (or a dense matrix) and ends in a dense or COO output.
"""

import numpy as np
import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops
_WITH_COMPLEX = ("float64", "float32", "complex128")

# A 3x4 matrix with five entries, a 4x3 one with four, and a batch of two
# 2x3 matrices with four entries in all (row-major order).
_A_IDX, _A_SHAPE = [[0, 1], [0, 3], [1, 0], [2, 2], [2, 3]], [3, 4]
_B_IDX, _B_SHAPE = [[0, 2], [1, 0], [2, 1], [3, 1]], [4, 3]
_BATCH_IDX = [[0, 0, 1], [0, 1, 2], [1, 0, 0], [1, 1, 1]]
_BATCH_SHAPE = [2, 2, 3]


def _csr(values, indices=_A_IDX, shape=_A_SHAPE):
  return raw.SparseTensorToCSRSparseMatrix(
      indices=tf.constant(indices, tf.int64), values=values,
      dense_shape=tf.constant(shape, tf.int64))


def _dense(csr, dtype):
  return raw.CSRSparseMatrixToDense(sparse_input=csr, type=dtype)


def _round_trip(indices, shape):
  return lambda values: _dense(_csr(values, indices, shape), values.dtype)


def _dense_to_csr_to_coo(x):
  csr = raw.DenseToCSRSparseMatrix(dense_input=x,
                                   indices=tf.constant(_A_IDX, tf.int64))
  values = raw.CSRSparseMatrixToSparseTensor(sparse_matrix=csr,
                                             type=x.dtype).values
  values.set_shape([len(_A_IDX)])
  return values


def _dense_to_csr_to_dense(x):
  csr = raw.DenseToCSRSparseMatrix(dense_input=x,
                                   indices=tf.constant(_A_IDX, tf.int64))
  return _dense(csr, x.dtype)


def _transpose(conjugate):
  def build(values):
    t = raw.SparseMatrixTranspose(input=_csr(values), type=values.dtype,
                                  conjugate=conjugate)
    return _dense(t, values.dtype)
  return build


def _b_shape(inner, flags, outer=2):
  """Shape of a dense B giving opB(B) of shape (inner, outer)."""
  transposed = flags.get("transpose_b") or flags.get("adjoint_b")
  return (outer, inner) if transposed else (inner, outer)


def _matmul(flags):
  def build(values, b):
    return raw.SparseMatrixMatMul(a=_csr(values), b=b, **flags)
  return build


_MATMUL_FLAGS = {
    "plain": {},
    "transpose_a": dict(transpose_a=True),
    "adjoint_a": dict(adjoint_a=True),
    "transpose_b": dict(transpose_b=True),
    "adjoint_b": dict(adjoint_b=True),
    "adjoint_a_transpose_b": dict(adjoint_a=True, transpose_b=True),
    "transpose_a_adjoint_b": dict(transpose_a=True, adjoint_b=True),
    "transpose_output": dict(transpose_output=True),
    "conjugate_output": dict(conjugate_output=True),
    "adjoint_b_transpose_conjugate_output": dict(
        adjoint_b=True, transpose_output=True, conjugate_output=True),
}


def _matmul_specs():
  specs = []
  for variant, flags in _MATMUL_FLAGS.items():
    a_transposed = flags.get("transpose_a") or flags.get("adjoint_a")
    inner = _A_SHAPE[0] if a_transposed else _A_SHAPE[1]
    specs.append(Spec("SparseMatrixMatMul", _matmul(flags),
                      [(5,), _b_shape(inner, flags)], variant,
                      dtypes=_WITH_COMPLEX))
  return specs


def _batched_matmul(values, b):
  return raw.SparseMatrixMatMul(a=_csr(values, _BATCH_IDX, _BATCH_SHAPE), b=b)


def _sparse_matmul(flags):
  def build(a_values, b_values):
    a_t = flags.get("transpose_a") or flags.get("adjoint_a")
    b_t = flags.get("transpose_b") or flags.get("adjoint_b")
    b_idx = [[c, r] for r, c in _B_IDX] if a_t != b_t else _B_IDX
    b_shape = _B_SHAPE[::-1] if a_t != b_t else _B_SHAPE
    product = raw.SparseMatrixSparseMatMul(
        a=_csr(a_values), b=_csr(b_values, sorted(b_idx), b_shape),
        type=a_values.dtype, **flags)
    return _dense(product, a_values.dtype)
  return build


_SPARSE_MATMUL_FLAGS = {
    "plain": {},
    "transpose_a": dict(transpose_a=True),
    "adjoint_b": dict(adjoint_b=True),
    "adjoint_a_adjoint_b": dict(adjoint_a=True, adjoint_b=True),
    "transpose_a_adjoint_b": dict(transpose_a=True, adjoint_b=True),
}

_NO_CPU = "no CPU kernel: graph structure compared only"
_C_IDX = [[0, 1], [1, 1], [2, 0]]  # three entries of a 3x4 matrix


def _add(a_values, b_values):
  total = raw.SparseMatrixAdd(
      a=_csr(a_values), b=_csr(b_values, _C_IDX, _A_SHAPE),
      alpha=tf.constant(2.0, a_values.dtype),
      beta=tf.constant(-0.5, a_values.dtype))
  return _dense(total, a_values.dtype)


def _softmax(values):
  return _dense(raw.SparseMatrixSoftmax(logits=_csr(values),
                                        type=values.dtype), values.dtype)


SPECS = [
    Spec("SparseMatrixAdd", _add, [(5,), (3,)], dtypes=_WITH_COMPLEX,
         runs=False, order=0, note=_NO_CPU),
    Spec("SparseMatrixSoftmax", _softmax, [(5,)], runs=False, order=0,
         note=_NO_CPU),
    Spec("SparseTensorToCSRSparseMatrix", _round_trip(_A_IDX, _A_SHAPE),
         [(5,)], dtypes=_WITH_COMPLEX),
    Spec("SparseTensorToCSRSparseMatrix",
         _round_trip(_BATCH_IDX, _BATCH_SHAPE), [(4,)], "batched"),
    Spec("CSRSparseMatrixToDense", _dense_to_csr_to_dense, [(3, 4)],
         dtypes=_WITH_COMPLEX),
    Spec("DenseToCSRSparseMatrix", _dense_to_csr_to_coo, [(3, 4)],
         dtypes=_WITH_COMPLEX),
    Spec("CSRSparseMatrixToSparseTensor", _dense_to_csr_to_coo, [(3, 4)]),
    Spec("SparseMatrixTranspose", _transpose(False), [(5,)], "transpose",
         dtypes=_WITH_COMPLEX),
    Spec("SparseMatrixTranspose", _transpose(True), [(5,)], "adjoint",
         dtypes=_WITH_COMPLEX),
    *_matmul_specs(),
    Spec("SparseMatrixMatMul", _batched_matmul, [(4,), (2, 3, 2)], "batched"),
    *[Spec("SparseMatrixSparseMatMul", _sparse_matmul(flags), [(5,), (4,)],
           variant, dtypes=_WITH_COMPLEX)
      for variant, flags in _SPARSE_MATMUL_FLAGS.items()],
]
