"""Gradient rules for CSR sparse-matrix ops (TF's sparse_csr_matrix_grad.py).

A CSR matrix is a variant tensor; its gradient is a CSR matrix with the
same sparsity pattern, so a rule only ever produces values at the entries
the forward matrix stores.
"""

import tensorflow as tf

from tfgrad.registry import RegisterGradient

from tfgrad.ops import _helpers
from tfgrad.ops.registrars import def_not_differentiable

from tfgrad.emit import raw


def _to_coo(csr, dtype):
  """(indices, values, dense_shape) of a CSR matrix."""
  return raw.CSRSparseMatrixToSparseTensor(sparse_matrix=csr, type=dtype)


def _dense_shape(t):
  """`t`'s shape as int64: a constant when static."""
  static = _helpers.static_shape(t)
  if static is not None:
    return tf.constant(static, tf.int64)
  return tf.shape(t, out_type=tf.int64)


def _on_pattern(indices, values, dense_shape):
  return raw.SparseTensorToCSRSparseMatrix(indices=indices, values=values,
                                           dense_shape=dense_shape)


def _rows_and_cols(indices, rank):
  """Index rows selecting, per entry (.., r, c), the batch-and-row r and the
  batch-and-column c of a rank-2 or rank-3 dense operand."""
  if rank == 2:
    return indices[:, :1], indices[:, 1:]
  return indices[:, :2], tf.gather(indices, [0, 2], axis=1)


def _sampled_product(left, right, indices, conjugate):
  """(left @ right^T)[.., r, c] at `indices` only: a row of `left` dotted
  with a row of `right`; conjugated when `conjugate`."""
  rows, cols = _rows_and_cols(indices, left.shape.rank)
  values = tf.reduce_sum(tf.gather_nd(left, rows) * tf.gather_nd(right, cols),
                         axis=-1)
  return _helpers.conj(values) if conjugate else values


def _op_flags(op, name):
  """(transposed, conjugated) for operand `name` ("a" or "b") of a matmul."""
  adjoint = op.get_attr(f"adjoint_{name}")
  return adjoint or op.get_attr(f"transpose_{name}"), adjoint


# ----- Conversions -----


@RegisterGradient("DenseToCSRSparseMatrix")
def _dense_to_csr_sparse_matrix_grad(op, grad):
  """The dense input gets the gradient matrix densified (zero off-pattern)."""
  dense = raw.CSRSparseMatrixToDense(sparse_input=grad, type=op.get_attr("T"))
  return dense, None


@RegisterGradient("CSRSparseMatrixToDense")
def _csr_sparse_matrix_to_dense_grad(op, grad):
  """grad read at the stored entries, as a CSR matrix of the same pattern."""
  indices = _to_coo(op.inputs[0], grad.dtype).indices
  return _on_pattern(indices, tf.gather_nd(grad, indices), _dense_shape(grad))


@RegisterGradient("SparseTensorToCSRSparseMatrix")
def _sparse_tensor_to_csr_sparse_matrix_grad(op, grad):
  """The values of the CSR gradient (same entries, same order)."""
  values = _to_coo(grad, op.get_attr("T")).values
  return None, values, None


@RegisterGradient("CSRSparseMatrixToSparseTensor")
def _csr_sparse_matrix_to_sparse_tensor_grad(op, *grads):
  """The values' gradient put back on the matrix's pattern."""
  return _on_pattern(op.outputs[0], grads[1], op.outputs[2])


# ----- Linear algebra -----


@RegisterGradient("SparseMatrixTranspose")
def _sparse_matrix_transpose_grad(op, grad):
  """The adjoint of (conjugate) transposition is itself."""
  return raw.SparseMatrixTranspose(input=grad, type=op.get_attr("type"),
                                   conjugate=op.get_attr("conjugate"))


def _grad_of_product(op, grad):
  """d(opA(A) opB(B)) for the dense output C0 of a sparse matmul."""
  if op.get_attr("conjugate_output"):
    grad = tf.math.conj(grad)
  if op.get_attr("transpose_output"):
    grad = tf.linalg.matrix_transpose(grad)
  return grad


def _a_values_grad(a_indices, grad_c0, op_b, a_flags):
  """Values of dA at A's entries from d opA(A) = G opB(B)^H."""
  a_t, a_conj = a_flags
  left, right = grad_c0, _helpers.conj(op_b)
  if a_t:  # dA[r, c] = d opA(A)[c, r], conjugated for an adjoint
    left, right = right, left
  return _sampled_product(left, right, a_indices, conjugate=a_conj)


def _op_dense(x, flags):
  """opX(x) of a dense x: x, x^T or x^H."""
  transposed, conjugated = flags
  if not transposed:
    return x
  return tf.linalg.matrix_transpose(x, conjugate=conjugated)


@RegisterGradient("SparseMatrixMatMul")
def _sparse_matrix_mat_mul_grad(op, grad):
  """C = opA(A) opB(B) (maybe transposed/conjugated): dA at A's entries,
  d opB(B) = opA(A)^H G with the op undone by the output flags."""
  a, b = op.inputs
  a_flags, b_flags = _op_flags(op, "a"), _op_flags(op, "b")
  grad_c0 = _grad_of_product(op, grad)
  indices, _, dense_shape = _to_coo(a, b.dtype)
  a_grad = _on_pattern(
      indices, _a_values_grad(indices, grad_c0, _op_dense(b, b_flags),
                              a_flags), dense_shape)
  # opA(A)^H = A^H, conj(A) or A: conj(A) G is conj(A conj(G))
  a_t, a_conj = a_flags
  conj_a = a_t and not a_conj
  rhs = tf.math.conj(grad_c0) if conj_a and grad.dtype.is_complex else grad_c0
  b_grad = raw.SparseMatrixMatMul(
      a=a, b=rhs, adjoint_a=not a_t, transpose_output=b_flags[0],
      conjugate_output=conj_a != b_flags[1])
  return a_grad, b_grad


@RegisterGradient("SparseMatrixSparseMatMul")
def _sparse_matrix_sparse_mat_mul_grad(op, grad):
  """C = opA(A) opB(B): dA, dB at their own entries, read off dense
  products of the (densified) gradient and the other operand."""
  a, b = op.inputs
  dtype = op.get_attr("type")
  a_flags, b_flags = _op_flags(op, "a"), _op_flags(op, "b")
  dense = lambda m: raw.CSRSparseMatrixToDense(sparse_input=m, type=dtype)
  g, a_dense, b_dense = dense(grad), dense(a), dense(b)
  a_idx, _, a_shape = _to_coo(a, dtype)
  b_idx, _, b_shape = _to_coo(b, dtype)
  op_a = _op_dense(a_dense, a_flags)
  a_grad = _a_values_grad(a_idx, g, _op_dense(b_dense, b_flags), a_flags)
  # d opB(B) = opA(A)^H G; dB[r, c] = d opB(B) at (r, c), or (c, r) undone
  b_grad = _b_values_grad(b_idx, op_a, g, b_flags)
  return (_on_pattern(a_idx, a_grad, a_shape),
          _on_pattern(b_idx, b_grad, b_shape))


def _b_values_grad(b_indices, op_a, grad_c0, b_flags):
  """Values of dB at B's entries from d opB(B) = opA(A)^H G."""
  b_t, b_conj = b_flags
  left = tf.linalg.matrix_transpose(op_a, conjugate=True)
  right = tf.linalg.matrix_transpose(grad_c0)
  if b_t:
    left, right = right, left
  return _sampled_product(left, right, b_indices, conjugate=b_conj)


# ----- Elementwise -----


def _scaled_on_pattern(dense_grad, pattern, scale):
  """conj(scale) * dense_grad read at `pattern`'s entries, as a CSR matrix
  of that pattern."""
  indices, _, dense_shape = _to_coo(pattern, dense_grad.dtype)
  values = _helpers.conj(scale) * tf.gather_nd(dense_grad, indices)
  return _on_pattern(indices, values, dense_shape)


@RegisterGradient("SparseMatrixAdd")
def _sparse_matrix_add_grad(op, grad):
  """C = alpha A + beta B: dA = conj(alpha) G on A's pattern, dB likewise;
  the scalars get None, as in TF."""
  a, b, alpha, beta = op.inputs
  dense = raw.CSRSparseMatrixToDense(sparse_input=grad, type=alpha.dtype)
  return (_scaled_on_pattern(dense, a, alpha),
          _scaled_on_pattern(dense, b, beta), None, None)


@RegisterGradient("SparseMatrixSoftmax")
def _sparse_matrix_softmax_grad(op, grad):
  """Row-wise softmax over the stored entries: the fused backward kernel
  on the forward output (which has no gradient itself: first order)."""
  return raw.SparseMatrixSoftmaxGrad(softmax=op.outputs[0], grad_softmax=grad,
                                     type=op.get_attr("type"))


# ----- Not differentiable -----

def_not_differentiable("SparseMatrixNNZ", "SparseMatrixZeros")
