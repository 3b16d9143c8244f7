"""Specs for ops/linalg_grad.py rules.

Inputs are kept where the ops are smooth: square matrices near 3 I (well
conditioned), Cholesky/eigh inputs built inside the builder (A = X X^H + n I,
A = (X + X^H) / 2 with spread eigenvalues), and decompositions checked
through gauge-invariant functions of their vectors (U diag(c) V^H for SVD,
V diag(c) V^H for eigh, V diag(c) V^-1 for Eig), which do not depend on the
sign or phase the kernel picks for each vector.
"""

import numpy as np
import tensorflow as tf

from compat_tests.spec import Spec

raw = tf.raw_ops

_C = ("float64", "float32", "complex128")
_NOTE_COMPLEX_FD = ("the numeric check runs in float64 only, so the complex "
                    "dtype is compared with TF alone")


def _near_3i(rng, shape):
  """Entries in [-1, 1], plus 3 on the diagonal of square (batched) shapes."""
  x = rng.uniform(-1.0, 1.0, shape)
  if len(shape) >= 2 and shape[-1] == shape[-2]:
    x = x + 3.0 * np.eye(shape[-1])
  return x


def _spread_diagonal(rng, shape):
  """Small entries plus diag(0, 2, 4, ...): eigenvalues stay well apart."""
  x = rng.uniform(-0.3, 0.3, shape)
  if len(shape) >= 2 and shape[-1] == shape[-2]:
    x = x + np.diag(2.0 * np.arange(shape[-1]))
  return x


def _distinct_rows(rng, shape):
  """Random entries plus a spread diagonal: distinct singular values."""
  x = rng.uniform(-0.5, 0.5, shape)
  k = min(shape[-2:])
  x[..., np.arange(k), np.arange(k)] += 1.0 + 1.5 * np.arange(k)
  return x


def _bands(rng, shape):
  return rng.uniform(2.0, 4.0, shape)


def _tridiagonal(rng, shape):
  """Compact [super; main; sub] diagonals with a dominant main diagonal."""
  x = rng.uniform(-1.0, 1.0, shape)
  if len(shape) >= 2 and shape[-2] == 3:
    x[..., 1, :] += 4.0
  return x


def _weights(n, dtype):
  return tf.constant(np.arange(1.0, n + 1.0), dtype)


def _spd(x):
  """X X^H + n I: Hermitian positive definite."""
  n = x.shape[-1]
  return tf.matmul(x, x, adjoint_b=True) + tf.constant(np.eye(n) * n, x.dtype)


def _hermitian(x):
  return 0.5 * (x + tf.linalg.adjoint(x))


# ----- Inverse, determinants -----

_SQ = [((3, 3),), ((2, 3, 3),)]

_INVERSE_DET = [
    *[Spec("MatrixInverse", tf.linalg.inv, s, f"rank{len(s[0])}", _C,
           _near_3i) for s in _SQ],
    Spec("MatrixInverse", lambda a: tf.linalg.inv(a, adjoint=True),
         [(2, 3, 3)], "adjoint", _C, _near_3i),
    *[Spec("MatrixDeterminant", tf.linalg.det, s, f"rank{len(s[0])}", _C,
           _near_3i) for s in _SQ],
    Spec("MatrixDeterminant", tf.linalg.det, [(1, 1)], "1x1", domain="nonzero"),
    *[Spec("LogMatrixDeterminant", lambda a: list(tf.linalg.slogdet(a)), s,
           f"rank{len(s[0])}", _C, _near_3i) for s in _SQ],
    Spec("LogMatrixDeterminant", lambda a: tf.linalg.slogdet(a)[1], [(3, 3)],
         "negative_det", domain=lambda rng, s: -_near_3i(rng, s)),
]

# ----- Factorizations -----


def _qr(full):
  return lambda a: list(tf.linalg.qr(a, full_matrices=full))


_FACTORIZATIONS = [
    *[Spec("Cholesky", lambda x: tf.linalg.cholesky(_spd(x)), s,
           f"rank{len(s[0])}", _C) for s in _SQ],
    Spec("Cholesky", tf.linalg.cholesky, [(3, 3)], "raw_input",
         domain=_near_3i, note="input not symmetric: the kernel reads its "
         "lower triangle, the rule returns a symmetric gradient (as TF)",
         order=0),
    *[Spec("Qr", _qr(False), [s], f"{'x'.join(map(str, s))}", _C,
           _distinct_rows) for s in ((3, 3), (4, 3), (3, 4), (2, 3, 3))],
    *[Spec("Qr", _qr(True), [s], f"full_{'x'.join(map(str, s))}", _C,
           _distinct_rows) for s in ((3, 3), (3, 4))],
]

# ----- Linear solvers -----


def _tri(lower, adjoint):
  return lambda a, b: tf.linalg.triangular_solve(a, b, lower=lower,
                                                 adjoint=adjoint)


def _banded(lower, adjoint):
  return lambda a, b: tf.linalg.banded_triangular_solve(a, b, lower=lower,
                                                        adjoint=adjoint)


def _lstsq(l2):
  return lambda a, b: tf.linalg.lstsq(a, b, l2_regularizer=l2, fast=True)


_SOLVERS = [
    Spec("MatrixSolve", tf.linalg.solve, [(3, 3), (3, 2)], "matrix", _C,
         _near_3i),
    Spec("MatrixSolve", tf.linalg.solve, [(2, 3, 3), (2, 3, 1)], "batch", _C,
         _near_3i),
    Spec("MatrixSolve", lambda a, b: tf.linalg.solve(a, b, adjoint=True),
         [(2, 3, 3), (2, 3, 2)], "adjoint", _C, _near_3i),
    *[Spec("MatrixTriangularSolve", _tri(lower, adj), [(3, 3), (3, 2)],
           f"lower{int(lower)}_adjoint{int(adj)}", _C, _near_3i)
      for lower in (True, False) for adj in (False, True)],
    Spec("MatrixTriangularSolve", _tri(True, False), [(2, 3, 3), (3, 2)],
         "broadcast_a", domain=_near_3i),
    Spec("MatrixTriangularSolve", _tri(False, True), [(3, 3), (2, 3, 2)],
         "broadcast_b", domain=_near_3i),
    *[Spec("BandedTriangularSolve", _banded(lower, adj), [(2, 3), (3, 2)],
           f"lower{int(lower)}_adjoint{int(adj)}", _C, _bands)
      for lower in (True, False) for adj in (False, True)],
    Spec("BandedTriangularSolve", _banded(True, False), [(3, 3), (3, 1)],
         "full_band", domain=_bands),
    Spec("BandedTriangularSolve", _banded(False, False), [(2, 2, 3), (3, 2)],
         "broadcast_a", domain=_bands),
    Spec("BandedTriangularSolve", _banded(True, True), [(2, 3), (2, 3, 2)],
         "broadcast_b", domain=_bands),
    Spec("MatrixSolveLs", _lstsq(0.0), [(4, 3), (4, 2)], "tall",
         domain=_distinct_rows),
    Spec("MatrixSolveLs", _lstsq(0.1), [(2, 4, 3), (2, 4, 1)], "tall_l2",
         domain=_distinct_rows),
    Spec("MatrixSolveLs", _lstsq(0.0), [(3, 4), (3, 2)], "wide",
         domain=_distinct_rows),
    Spec("MatrixSolveLs", _lstsq(0.1), [(3, 4), (3, 2)], "wide_l2",
         domain=_distinct_rows),
    Spec("MatrixSolveLs", _lstsq(0.0), [(3, 3), (3, 2)], "square", _C,
         domain=_near_3i),
]

# ----- Matrix functions -----

_FUNCTIONS = [
    Spec("MatrixSquareRoot", tf.linalg.sqrtm, [(3, 3)], "matrix", _C,
         _near_3i),
    Spec("MatrixSquareRoot", tf.linalg.sqrtm, [(2, 2, 2)], "batch",
         domain=_near_3i),
]

# ----- Spectral decompositions -----


def _eigh_vectors(x):
  e, v = tf.linalg.eigh(_hermitian(x))
  n = v.shape[-1]
  return [e, tf.matmul(v * _weights(n, v.dtype), v, adjoint_b=True)]


def _power_sums(e):
  """sum(e), sum(e^2), sum(e^3) over the last axis: the eigenvalues as a
  set. Eig returns them in no fixed order, and a reordering between the
  two evaluations of a finite difference would make it meaningless."""
  return tf.stack([tf.reduce_sum(e ** k, axis=-1) for k in (1, 2, 3)], -1)


def _eig_vectors(a):
  """Power sums of the eigenvalues, and V exp(diag(e)) V^-1 (= expm(a)):
  both independent of the order Eig returns eigenpairs in, and the second
  exercises the eigenvector part of the rule."""
  e, v = tf.linalg.eig(a)
  ve = v * tf.exp(e)[..., tf.newaxis, :]
  return [_power_sums(e), tf.matmul(ve, tf.linalg.inv(v))]


def _re_im(fn):
  """fn's complex outputs split into real and imaginary parts."""
  def build(*xs):
    outs = fn(*xs)
    outs = outs if isinstance(outs, list) else [outs]
    return [p for o in outs for p in (tf.math.real(o), tf.math.imag(o))]
  return build


def _svd_vectors(full):
  def build(a):
    s, u, v = tf.linalg.svd(a, full_matrices=full)
    k = s.shape[-1]
    w = _weights(k, u.dtype)
    return [s, tf.matmul(u[..., :k] * w, v[..., :k], adjoint_b=True)]
  return build


def _svd_full_null_vectors(a):
  """The extra column of V (full_matrices, 3 x 4): sign-free as v v^T."""
  _, _, v = tf.linalg.svd(a, full_matrices=True)
  last = v[..., 3:]
  return tf.matmul(last, last, adjoint_b=True)


_SPECTRAL = [
    Spec("SelfAdjointEigV2", lambda x: tf.linalg.eigvalsh(_hermitian(x)),
         [(3, 3)], "values", _C, _spread_diagonal),
    Spec("SelfAdjointEigV2", _eigh_vectors, [(3, 3)], "vectors", _C,
         _spread_diagonal),
    Spec("SelfAdjointEigV2", _eigh_vectors, [(2, 3, 3)], "vectors_batch",
         domain=_spread_diagonal),
    Spec("SelfAdjointEigV2", lambda a: _eigh_vectors_raw(a), [(3, 3)],
         "lower_triangle", domain=_spread_diagonal),
    Spec("Eig", _re_im(lambda a: _power_sums(tf.linalg.eigvals(a))),
         [(3, 3)], "values",
         domain=_spread_diagonal),
    Spec("Eig", _re_im(_eig_vectors), [(3, 3)], "vectors",
         domain=_spread_diagonal),
    Spec("Eig", _re_im(_eig_vectors), [(2, 3, 3)], "vectors_batch",
         domain=lambda rng, s: rng.uniform(-2.0, 2.0, s)),
    Spec("Eig", _eig_vectors, [(3, 3)], "complex", ("complex128", "complex64"),
         _spread_diagonal, order=0, note=_NOTE_COMPLEX_FD),
    Spec("Eig", lambda re, im: _re_im(_eig_vectors)(tf.complex(re, im)),
         [(3, 3), (3, 3)], "complex_re_im", domain=_spread_diagonal),
    *[Spec("Svd", lambda a: tf.linalg.svd(a, compute_uv=False), [s],
           f"values_{'x'.join(map(str, s))}", _C, _distinct_rows)
      for s in ((3, 3), (4, 3), (3, 4), (2, 3, 3))],
    *[Spec("Svd", _svd_vectors(False), [s],
           f"vectors_{'x'.join(map(str, s))}", _C, _distinct_rows)
      for s in ((3, 3), (4, 3), (3, 4), (2, 2, 3))],
    *[Spec("Svd", _svd_vectors(True), [s],
           f"full_{'x'.join(map(str, s))}", _C, _distinct_rows)
      for s in ((3, 3), (4, 3), (3, 4))],
    Spec("Svd", _svd_full_null_vectors, [(3, 4)], "full_null_vector",
         domain=_distinct_rows),
    Spec("Svd", lambda re, im: _re_im(_svd_vectors(False))(tf.complex(re, im)),
         [(3, 4), (3, 4)], "complex_re_im", domain=_distinct_rows, order=1,
         note="the complex rule (as TF's) takes the phase term from V alone, "
         "so it is not itself phase-invariant and its derivative is not a "
         "Hessian; stock tf.gradients misses finite differences at order 2 "
         "alike"),
]


def _eigh_vectors_raw(a):
  """eigh of a non-symmetric input: the kernel reads the lower triangle."""
  e, v = tf.linalg.eigh(a)
  return [e, tf.matmul(v * _weights(3, v.dtype), v, adjoint_b=True)]


# ----- Tridiagonal -----


def _tridiagonal_matmul(sup, main, sub, rhs):
  return raw.TridiagonalMatMul(superdiag=sup, maindiag=main, subdiag=sub,
                               rhs=rhs)


def _tridiagonal_solve(pivoting):
  return lambda d, b: raw.TridiagonalSolve(diagonals=d, rhs=b,
                                           partial_pivoting=pivoting)


_TRIDIAGONAL = [
    Spec("TridiagonalMatMul", _tridiagonal_matmul,
         [(1, 4), (1, 4), (1, 4), (4, 2)], "matrix", _C),
    Spec("TridiagonalMatMul", _tridiagonal_matmul,
         [(2, 1, 3), (2, 1, 3), (2, 1, 3), (2, 3, 1)], "batch"),
    Spec("TridiagonalSolve", _tridiagonal_solve(True), [(3, 4), (4, 2)],
         "pivoting", _C, _tridiagonal),
    Spec("TridiagonalSolve", _tridiagonal_solve(False), [(2, 3, 3), (2, 3, 1)],
         "batch_no_pivoting", domain=_tridiagonal),
]

SPECS = _INVERSE_DET + _FACTORIZATIONS + _SOLVERS + _FUNCTIONS + _SPECTRAL + \
    _TRIDIAGONAL
