"""Specs for ops/math_grad.py rules."""

import numpy as np
import tensorflow as tf

from compat_tests.spec import Spec

_SP = tf.math.special
F = ("float64", "float32")
FC = ("float64", "float32", "complex128")


def _above_one(rng, shape):
  return rng.uniform(1.2, 3.0, shape)


def _with_zero(rng, shape):
  values = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
  values.flat[0] = 0.0
  return values


_IGAMMA_NOTE = "dP/da is IgammaGradA, which has no gradient (in TF either)"
_ZERO_FIRST = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]])


def _cplx(a, b):
  return tf.complex(a, b)


def _binary(op, fn, domain="real", dtypes=F, **kw):
  """Specs for a broadcasting binary op: same shape, scalar, broadcasting."""
  return [
      Spec(op, fn, [(2, 3), (2, 3)], "same_shape", dtypes=dtypes,
           domain=domain, **kw),
      Spec(op, fn, [(2, 3), ()], "scalar", domain=domain, **kw),
      Spec(op, fn, [(4, 1, 3), (2, 1)], "broadcast_both", domain=domain,
           **kw),
  ]


def _unary(op, fn, domain="real", dtypes=F, scalar=True, **kw):
  """Specs for an elementwise unary op: a matrix and (optionally) a scalar."""
  specs = [Spec(op, fn, [(2, 3)], "matrix", dtypes=dtypes, domain=domain,
                **kw)]
  if scalar:
    specs.append(Spec(op, fn, [()], "scalar", domain=domain, **kw))
  return specs


SPECS = [
    # ----- Broadcasting binary -----
    *_binary("AddV2", tf.add, dtypes=FC),
    *_binary("Add", lambda x, y: tf.raw_ops.Add(x=x, y=y)),
    *_binary("Sub", tf.subtract, dtypes=FC),
    *_binary("Mul", tf.multiply, dtypes=FC),
    *_binary("MulNoNan", tf.math.multiply_no_nan, domain="nonzero"),
    Spec("MulNoNan", tf.math.multiply_no_nan, [(2, 3), (2, 3)], "zeros",
         domain=_with_zero, order=1,
         note="second order of mul_no_nan(x, g) at y = 0 is 0 by design"),
    *_binary("RealDiv", tf.math.truediv, domain="nonzero", dtypes=FC),
    *_binary("Div", lambda x, y: tf.raw_ops.Div(x=x, y=y), domain="nonzero",
             dtypes=FC),
    *_binary("DivNoNan", tf.math.divide_no_nan, domain="nonzero"),
    Spec("DivNoNan", tf.math.divide_no_nan, [(2, 3), (2, 3)], "zeros",
         domain=_with_zero, order=1,
         note="x/y jumps to 0 at y = 0: no second derivative there"),
    *_binary("FloorMod", tf.math.floormod, domain="positive"),
    *_binary("FloorDiv", lambda x, y: x * tf.math.floordiv(x, y),
             domain="positive"),
    *_binary("TruncateDiv", lambda x, y: x * tf.raw_ops.TruncateDiv(x=x, y=y),
             domain="positive"),
    *_binary("SquaredDifference", tf.math.squared_difference),
    *_binary("Pow", tf.pow, domain="positive", dtypes=FC),
    Spec("Pow", lambda x: tf.pow(x, 3.0), [(2, 3)], "int_exponent"),
    Spec("Pow", lambda x, y: tf.pow(x, tf.round(y)), [(2, 3), (2, 3)],
         "negative_base", domain="nonzero"),
    *_binary("Maximum", tf.maximum, domain="distinct"),
    *_binary("Minimum", tf.minimum, domain="distinct"),
    *_binary("Atan2", tf.atan2, domain="nonzero"),
    *_binary("Xlogy", tf.math.xlogy, domain="positive"),
    Spec("Xlogy", lambda x, y: tf.math.xlogy(x * _ZERO_FIRST, y),
         [(2, 3), (2, 3)], "zero_x", domain="positive"),
    *_binary("Xlog1py", tf.math.xlog1py, domain="positive"),
    *_binary("Xdivy", tf.math.xdivy, domain="nonzero"),
    Spec("Xdivy", lambda x, y: tf.math.xdivy(x * _ZERO_FIRST, y),
         [(2, 3), (2, 3)], "zero_x", domain="nonzero"),
    Spec("Complex", lambda a, b: tf.math.real(_cplx(a, b) * _cplx(b, a)),
         [(2, 3), (2, 3)], "same_shape"),
    Spec("Complex", lambda a, b: tf.math.imag(_cplx(a, b) * _cplx(a, a)),
         [(2, 3), ()], "scalar"),
    Spec("AddN", lambda x, y: tf.add_n([x, y, x]), [(2, 3), (2, 3)],
         dtypes=FC),
    Spec("AddN", lambda x, y: tf.add_n([x, y]), [(), ()], "scalar"),

    # ----- Elementwise unary -----
    *_unary("Neg", tf.negative, dtypes=FC),
    *_unary("Abs", tf.abs, domain="nonzero"),
    *_unary("Sign", lambda x: tf.sign(x) * x, domain="nonzero"),
    *_unary("Square", tf.square, dtypes=FC),
    *_unary("Sqrt", tf.sqrt, domain="positive", dtypes=FC),
    *_unary("Rsqrt", tf.math.rsqrt, domain="positive", dtypes=FC),
    *_unary("Reciprocal", tf.math.reciprocal, domain="nonzero", dtypes=FC),
    *_unary("Inv", lambda x: tf.raw_ops.Inv(x=x), domain="nonzero",
            dtypes=FC, scalar=False),
    *_unary("Exp", tf.exp, dtypes=FC),
    *_unary("Expm1", tf.math.expm1, dtypes=FC, scalar=False),
    *_unary("Log", tf.math.log, domain="positive", dtypes=FC),
    *_unary("Log1p", tf.math.log1p, domain="positive", dtypes=FC),
    *_unary("Tanh", tf.tanh, dtypes=FC),
    *_unary("Sigmoid", tf.sigmoid, dtypes=FC),
    *_unary("Erf", tf.math.erf),
    *_unary("Erfc", tf.math.erfc, scalar=False),
    *_unary("Erfinv", tf.math.erfinv, domain="unit", scalar=False),
    *_unary("Ndtri", tf.math.ndtri, domain="open_unit", scalar=False),
    *_unary("Sin", tf.sin, dtypes=FC),
    *_unary("Cos", tf.cos, dtypes=FC),
    *_unary("Tan", tf.tan, domain="unit", dtypes=FC, scalar=False),
    *_unary("Asin", tf.asin, domain="unit", dtypes=FC, scalar=False),
    *_unary("Acos", tf.acos, domain="unit", dtypes=FC, scalar=False),
    *_unary("Atan", tf.atan, dtypes=FC, scalar=False),
    *_unary("Sinh", tf.sinh, dtypes=FC, scalar=False),
    *_unary("Cosh", tf.cosh, dtypes=FC, scalar=False),
    *_unary("Asinh", tf.asinh, dtypes=FC, scalar=False),
    *_unary("Acosh", tf.acosh, domain=_above_one, dtypes=FC, scalar=False),
    *_unary("Atanh", tf.atanh, domain="unit", dtypes=FC, scalar=False),
    *_unary("Lgamma", tf.math.lgamma, domain="positive", scalar=False),
    *_unary("Digamma", tf.math.digamma, domain="positive", scalar=False),
    *_unary("Polygamma",
            lambda x: tf.math.polygamma(tf.constant(1.0, x.dtype), x),
            domain="positive", scalar=False),
    *_unary("Floor", lambda x: tf.floor(x) * x),
    *_unary("Ceil", lambda x: tf.math.ceil(x) * x, scalar=False),
    *_unary("Round", lambda x: tf.round(x) * x, scalar=False),
    *_unary("Rint", lambda x: tf.math.rint(x) * x, scalar=False),

    # ----- Gradient ops (second order) -----
    Spec("SqrtGrad", lambda a, b: tf.raw_ops.SqrtGrad(y=a, dy=b),
         [(2, 3), (2, 3)], domain="positive", dtypes=FC),
    Spec("RsqrtGrad", lambda a, b: tf.raw_ops.RsqrtGrad(y=a, dy=b),
         [(2, 3), (2, 3)], domain="positive", dtypes=FC),
    Spec("ReciprocalGrad", lambda a, b: tf.raw_ops.ReciprocalGrad(y=a, dy=b),
         [(2, 3), (2, 3)], dtypes=FC),
    Spec("InvGrad", lambda a, b: tf.raw_ops.InvGrad(y=a, dy=b),
         [(2, 3), (2, 3)], dtypes=FC),
    Spec("TanhGrad", lambda a, b: tf.raw_ops.TanhGrad(y=a, dy=b),
         [(2, 3), (2, 3)], dtypes=FC),
    Spec("SigmoidGrad", lambda a, b: tf.raw_ops.SigmoidGrad(y=a, dy=b),
         [(2, 3), (2, 3)], dtypes=FC),

    # ----- Complex parts and casts -----
    Spec("Real", lambda a, b: tf.math.real(tf.square(_cplx(a, b))),
         [(2, 3), (2, 3)]),
    Spec("Imag", lambda a, b: tf.math.imag(tf.square(_cplx(a, b))),
         [(2, 3), (2, 3)]),
    Spec("Conj", lambda a, b: tf.math.imag(tf.math.conj(_cplx(a, b))
                                           * _cplx(b, a)), [(2, 3), (2, 3)]),
    Spec("Angle", lambda a, b: tf.math.angle(_cplx(a, b)), [(2, 3), (2, 3)],
         domain="nonzero"),
    Spec("ComplexAbs", lambda a, b: tf.abs(_cplx(a, b)), [(2, 3), (2, 3)],
         domain="nonzero"),
    Spec("Cast", lambda x: tf.math.real(tf.square(tf.cast(x, tf.complex128))),
         [(2, 3)], "to_complex"),
    Spec("Cast", lambda x: x * tf.cast(tf.cast(x, tf.int32), x.dtype),
         [(2, 3)], "to_int"),
    Spec("Cast", lambda x: tf.cast(tf.cast(x, tf.float64) * 2.0, tf.float32),
         [(2, 3)], "float", dtypes=("float32",),
         note="float32 output: the numeric check (float64 only) sees no y"),

    # ----- Reductions and scans -----
    Spec("Sum", lambda x: tf.reduce_sum(x), [(2, 3)], "all", dtypes=FC),
    Spec("Sum", lambda x: tf.reduce_sum(x, axis=1), [(2, 3)], "axis1"),
    Spec("Sum", lambda x: tf.reduce_sum(x, axis=[0, -1], keepdims=True),
         [(2, 3, 4)], "keepdims"),
    Spec("Sum", lambda x: tf.reduce_sum(x, axis=[]), [(2, 3)], "no_axes"),
    Spec("Sum", lambda x: tf.reduce_sum(x), [()], "scalar"),
    Spec("Mean", lambda x: tf.reduce_mean(x), [(2, 3)], "all", dtypes=FC),
    Spec("Mean", lambda x: tf.reduce_mean(x, axis=-1), [(2, 3)], "axis"),
    Spec("Mean", lambda x: tf.reduce_mean(x, axis=[0, 2], keepdims=True),
         [(2, 3, 4)], "keepdims"),
    Spec("Max", lambda x: tf.reduce_max(x), [(2, 3)], "all",
         domain="distinct"),
    Spec("Max", lambda x: tf.reduce_max(x, axis=1), [(3, 4)], "axis1",
         domain="distinct"),
    Spec("Max", lambda x: tf.reduce_max(x, axis=[0, -1], keepdims=True),
         [(2, 3, 4)], "keepdims", domain="distinct"),
    Spec("Max", lambda x: tf.reduce_max(tf.minimum(x, 0.5), axis=1),
         [(3, 4)], "ties"),
    Spec("Min", lambda x: tf.reduce_min(x, axis=0), [(3, 4)], "axis0",
         domain="distinct"),
    Spec("Min", lambda x: tf.reduce_min(x, axis=-1, keepdims=True),
         [(2, 3, 4)], "keepdims", domain="distinct"),
    Spec("Min", lambda x: tf.reduce_min(tf.maximum(x, -0.5)), [(3, 4)],
         "ties"),
    Spec("Prod", lambda x: tf.reduce_prod(x), [(2, 3)], "all", dtypes=FC),
    Spec("Prod", lambda x: tf.reduce_prod(x, axis=1), [(3, 4)], "axis1"),
    Spec("Prod", lambda x: tf.reduce_prod(x, axis=[0, -1], keepdims=True),
         [(2, 3, 4)], "keepdims"),
    Spec("Prod", lambda x: tf.reduce_prod(x, axis=[2, 0]), [(2, 3, 2)],
         "axes_unsorted", dtypes=FC),
    Spec("Prod", lambda x: tf.reduce_prod(x, axis=0), [(3, 4)], "with_zero",
         domain=_with_zero, order=1,
         note="as in TF, the Cumprod rule divides by x, so the second "
              "derivative is not exact at x = 0"),
    Spec("EuclideanNorm", lambda x: tf.raw_ops.EuclideanNorm(
        input=x, axis=[1]), [(2, 3)], "axis1", domain="nonzero"),
    Spec("EuclideanNorm", lambda x: tf.raw_ops.EuclideanNorm(
        input=x, axis=[0, 1], keep_dims=True), [(2, 3)], "keepdims",
         domain="nonzero"),
    Spec("Cumsum", lambda x: tf.cumsum(x, axis=1), [(2, 3)], "axis1",
         dtypes=FC),
    Spec("Cumsum", lambda x: tf.cumsum(x, axis=0, exclusive=True,
                                       reverse=True), [(3, 2)], "excl_rev"),
    Spec("Cumprod", lambda x: tf.math.cumprod(x, axis=1), [(2, 3)], "axis1",
         domain="nonzero", dtypes=FC),
    Spec("Cumprod", lambda x: tf.math.cumprod(x, axis=0, exclusive=True,
                                              reverse=True), [(3, 2)],
         "excl_rev", domain="nonzero"),

    # ----- Matrix products -----
    Spec("MatMul", tf.matmul, [(2, 3), (3, 4)], "plain", dtypes=FC),
    Spec("MatMul", lambda a, b: tf.matmul(a, b, transpose_a=True),
         [(3, 2), (3, 4)], "ta", dtypes=FC),
    Spec("MatMul", lambda a, b: tf.matmul(a, b, transpose_b=True),
         [(2, 3), (4, 3)], "tb", dtypes=FC),
    Spec("MatMul", lambda a, b: tf.matmul(a, b, transpose_a=True,
                                          transpose_b=True),
         [(3, 2), (4, 3)], "ta_tb", dtypes=FC),
    Spec("MatMul", lambda a, b: tf.matmul(a, b, adjoint_b=True),
         [(2, 3), (4, 3)], "adjoint", dtypes=("complex128",)),
    Spec("BatchMatMul", lambda a, b: tf.raw_ops.BatchMatMul(x=a, y=b),
         [(2, 2, 3), (2, 3, 4)], "plain", dtypes=FC),
    Spec("BatchMatMul", lambda a, b: tf.raw_ops.BatchMatMul(
        x=a, y=b, adj_x=True, adj_y=True), [(2, 3, 2), (2, 4, 3)], "adj",
         dtypes=FC),
    Spec("BatchMatMulV2", tf.matmul, [(2, 2, 3), (2, 3, 4)], "plain",
         dtypes=FC),
    Spec("BatchMatMulV2", tf.matmul, [(2, 2, 3), (3, 4)], "bcast_rank"),
    Spec("BatchMatMulV2", tf.matmul, [(2, 1, 2, 3), (3, 3, 4)],
         "bcast_both", dtypes=FC),
    Spec("BatchMatMulV2", lambda a, b: tf.matmul(a, b, adjoint_a=True),
         [(2, 3, 2), (1, 3, 4)], "adj_x", dtypes=FC),
    Spec("BatchMatMulV2", lambda a, b: tf.matmul(a, b, adjoint_b=True),
         [(2, 2, 3), (4, 3)], "adj_y", dtypes=FC),
    Spec("BatchMatMulV2", lambda a, b: tf.matmul(
        a, b, adjoint_a=True, adjoint_b=True), [(2, 3, 2), (2, 4, 3)],
         "adj_xy"),
    Spec("BatchMatMulV3", lambda a, b: tf.raw_ops.BatchMatMulV3(
        x=a, y=b, Tout=a.dtype), [(2, 2, 3), (3, 4)], "bcast", dtypes=FC),
    Spec("BatchMatMulV3", lambda a, b: tf.raw_ops.BatchMatMulV3(
        x=a, y=b, Tout=a.dtype, adj_x=True, adj_y=True),
         [(1, 3, 2), (2, 4, 3)], "adj"),

    # ----- Einsum -----
    Spec("Einsum", lambda a, b: tf.einsum("ij,jk->ik", a, b),
         [(2, 3), (3, 4)], "matmul", dtypes=FC),
    Spec("Einsum", lambda a, b: tf.einsum("bij,bjk->bik", a, b),
         [(2, 2, 3), (2, 3, 2)], "batch"),
    Spec("Einsum", lambda a, b: tf.einsum("bi,bi->b", a, b),
         [(2, 3), (2, 3)], "dot"),
    Spec("Einsum", lambda a, b: tf.einsum("abc,cd->ad", a, b),
         [(2, 3, 4), (4, 2)], "reduced_label", dtypes=FC),
    Spec("Einsum", lambda a, b: tf.einsum("ab,cd->abcd", a, b),
         [(2, 3), (2, 2)], "outer"),
    Spec("Einsum", lambda a, b: tf.einsum("ii,i->i", a, b),
         [(3, 3), (3,)], "diag"),
    Spec("Einsum", lambda a, b: tf.einsum("aab,bc->ca", a, b),
         [(2, 2, 3), (3, 2)], "trace_transpose"),
    Spec("Einsum", lambda a, b: tf.einsum("...ij,...jk->...ik", a, b),
         [(2, 2, 3), (3, 2)], "ellipsis_bcast", dtypes=FC),
    Spec("Einsum", lambda a, b: tf.einsum("...ij,...jk->...ik", a, b),
         [(2, 1, 2, 3), (3, 3, 2)], "ellipsis_bcast_both"),
    Spec("Einsum", lambda a, b: tf.einsum("i...j,j->i...", a, b),
         [(2, 3, 4), (4,)], "ellipsis_middle"),
    Spec("Einsum", lambda a: tf.einsum("ij->ji", a), [(2, 3)], "transpose",
         dtypes=FC),
    Spec("Einsum", lambda a: tf.einsum("ij->", a), [(2, 3)], "sum_all"),
    Spec("Einsum", lambda a: tf.einsum("ijk->ki", a), [(2, 3, 4)],
         "reduce_transpose"),
    Spec("Einsum", lambda a: tf.einsum("ii->i", a), [(3, 3)], "diag_part"),
    Spec("Einsum", lambda a: tf.einsum("iij->", a), [(2, 2, 3)], "trace"),

    # ----- Special functions -----
    *[spec for name, fn, domain in [
        ("Dawsn", _SP.dawsn, "real"),
        ("Expint", _SP.expint, "positive"),
        ("FresnelCos", _SP.fresnel_cos, "real"),
        ("FresnelSin", _SP.fresnel_sin, "real"),
        ("Spence", _SP.spence, "positive"),
        ("BesselI0", _SP.bessel_i0, "real"),
        ("BesselI0e", _SP.bessel_i0e, "nonzero"),
        ("BesselI1", _SP.bessel_i1, "real"),
        ("BesselI1e", _SP.bessel_i1e, "nonzero"),
        ("BesselK0", _SP.bessel_k0, "positive"),
        ("BesselK0e", _SP.bessel_k0e, "positive"),
        ("BesselK1", _SP.bessel_k1, "positive"),
        ("BesselK1e", _SP.bessel_k1e, "positive"),
        ("BesselJ0", _SP.bessel_j0, "real"),
        ("BesselJ1", _SP.bessel_j1, "real"),
        ("BesselY0", _SP.bessel_y0, "positive"),
        ("BesselY1", _SP.bessel_y1, "positive"),
    ] for spec in _unary(name, fn, domain=domain, scalar=False)],
    Spec("BesselI1", tf.math.special.bessel_i1, [(3,)], "at_zero",
         domain=lambda rng, s: np.array([0.0, 0.5, -1.0]), order=0,
         note="TF imputes 1.0 as the derivative at x = 0 (the true value "
              "is 0.5); we match TF, so only the differential check runs"),
    Spec("BesselJ1", tf.math.special.bessel_j1, [(3,)], "at_zero",
         domain=lambda rng, s: np.array([0.0, 0.5, -1.0]), order=1,
         note="the rule imputes the limit at 0 through a where"),
    Spec("Igamma", tf.math.igamma, [(2, 3), (2, 3)], "same_shape",
         domain="positive", order=1, note=_IGAMMA_NOTE),
    Spec("Igamma", tf.math.igamma, [(2, 3), ()], "scalar", domain="positive",
         order=1, note=_IGAMMA_NOTE),
    Spec("Igammac", tf.math.igammac, [(2, 3), (2, 3)], domain="positive",
         order=1, note=_IGAMMA_NOTE),
    # a, b (Betainc) and x (Zeta) have no gradient in TF: held constant.
    Spec("Betainc", lambda x: tf.math.betainc(
        tf.constant(np.full((2, 3), 0.5), x.dtype),
        tf.constant(np.full((2, 3), 1.5), x.dtype), x),
         [(2, 3)], "x_only", domain="open_unit"),
    Spec("Betainc", tf.math.betainc, [(2, 3), (2, 3), (2, 3)], "all_inputs",
         domain="open_unit", order=0,
         note="TF gives a and b no gradient, so finite differences in them "
              "disagree by design; Betainc-x_only runs the numeric check"),
    Spec("Zeta", lambda q: tf.math.zeta(tf.constant([2.5, 3.0, 4.0],
                                                    q.dtype), q),
         [(2, 3)], domain=_above_one),
    Spec("Zeta", lambda q: tf.math.zeta(tf.constant(2.5, q.dtype), q),
         [()], "scalar", domain=_above_one),
    Spec("NextAfter", lambda x, y: tf.math.nextafter(x, y) * y,
         [(2, 3), (2, 3)], domain="distinct"),
    Spec("NextAfter", lambda x, y: tf.math.nextafter(x, y),
         [(2, 3), (3,)], "broadcast", domain="distinct"),
    Spec("Cross", tf.linalg.cross, [(2, 3), (2, 3)]),
    Spec("CumulativeLogsumexp",
         lambda x: tf.math.cumulative_logsumexp(x, axis=1), [(2, 3)]),
    Spec("CumulativeLogsumexp", lambda x: tf.math.cumulative_logsumexp(
        x, axis=0, reverse=True), [(3, 2)], "reverse"),
    Spec("CumulativeLogsumexp", lambda x: tf.math.cumulative_logsumexp(
        x, axis=0, exclusive=True, reverse=True), [(3, 2)], "excl_rev",
         order=0, note="an exclusive scan starts at log(0) = -inf, so "
                       "<f(x), v> is not finite for finite differences"),

    # ----- Not differentiable -----
    *[Spec(name, lambda x, y, f=f: tf.cast(f(x, y), x.dtype) * x * y,
           [(2, 3), (2, 3)], domain="distinct")
      for name, f in [
          ("Less", tf.less), ("LessEqual", tf.less_equal),
          ("Greater", tf.greater), ("GreaterEqual", tf.greater_equal),
          ("Equal", tf.equal), ("NotEqual", tf.not_equal),
          ("ApproximateEqual", lambda x, y: tf.raw_ops.ApproximateEqual(
              x=x, y=y, tolerance=0.5)),
          ("LogicalAnd", lambda x, y: tf.logical_and(x > 0, y > 0)),
          ("LogicalOr", lambda x, y: tf.logical_or(x > 0, y > 0)),
          ("LogicalNot", lambda x, y: tf.logical_not(x > y))]],
    Spec("ArgMax", lambda x: x * tf.reduce_sum(tf.cast(tf.argmax(x, axis=1),
                                                 x.dtype)),
         [(2, 3)], domain="distinct"),
    Spec("ArgMin", lambda x: x * tf.reduce_sum(tf.cast(tf.argmin(x, axis=0),
                                                       x.dtype)),
         [(2, 3)], domain="distinct"),
    Spec("Range", lambda x: x * tf.reduce_sum(
        tf.range(tf.constant(0.0, x.dtype), tf.reduce_max(x) + 3.5)),
         [(2, 3)], domain="distinct"),
    Spec("LinSpace", lambda x: x * tf.reduce_sum(
        tf.raw_ops.LinSpace(start=tf.reduce_min(x),
                               stop=tf.reduce_max(x), num=3)),
         [(2, 3)], domain="distinct", order=0,
         note="TF declares LinSpace not differentiable though it is smooth "
              "in start/stop; only the differential check applies"),
]

# ----- Segment reductions, accumulation, clipping -----

_IDS = [0, 0, 1, 2]
_UIDS = [1, -1, 0, 1]
_raw = tf.raw_ops


def _ids(values, dtype=tf.int32):
  return tf.constant(values, dtype)


def _one_zero_per_segment(rng, shape):
  """Nonzero values, except one zero in the first segment's first row."""
  values = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
  values.flat[0] = 0.0
  return values


def _clusters(rng, shape):
  """Values near -1.5, 0 or 1.5: clear of the clip bounds built below."""
  return rng.choice([-1.5, 0.0, 1.5], shape) + rng.uniform(-0.3, 0.3, shape)


def _clip(x, lo, hi):
  """clip_by_value with bounds in about [-1.2, -0.4] and [0.4, 1.2]."""
  return tf.clip_by_value(x, lo * 0.2 - 0.8, hi * 0.2 + 0.8)


def _pinned(y, rows):
  """y with its segment count fixed statically (shape inference leaves it
  unknown when the data is fed)."""
  return tf.ensure_shape(y, [rows] + y.shape.as_list()[1:])


def _segment_specs(op, fn, domain="real", dtypes=F, **kw):
  """A segmented reduction over rows (matrix data) and over a vector."""
  return [Spec(op, lambda x: _pinned(fn(x, _ids(_IDS)), 3), [(4, 3)],
               "matrix", dtypes=dtypes, domain=domain, **kw),
          Spec(op, lambda x: _pinned(fn(x, _ids(_IDS, tf.int64)), 3), [(4,)],
               "vector", domain=domain, **kw)]


def _unsorted_specs(op, fn, domain="real", dtypes=F, **kw):
  """An unsorted segmented reduction with a dropped (negative) id."""
  return [Spec(op, lambda x: fn(x, _ids(_UIDS), 2), [(4, 3)], "matrix",
               dtypes=dtypes, domain=domain, **kw),
          Spec(op, lambda x: fn(x, _ids([[0, 1], [1, -1]]), 2), [(2, 2, 3)],
               "ids_matrix", domain=domain, **kw)]


def _sparse_segment_specs(kind):
  """SparseSegment<kind>, with and without num_segments / sparse_gradient."""
  plain = getattr(_raw, f"SparseSegment{kind}")
  numbered = getattr(_raw, f"SparseSegment{kind}WithNumSegments")
  idx, seg = [0, 2, 2, 3], [0, 0, 1, 1]
  specs = []
  for sparse in (False, True):
    tag = "_sparse_grad" if sparse else ""
    specs.append(Spec(f"SparseSegment{kind}", lambda x, s=sparse: _pinned(
        plain(data=x, indices=_ids(idx), segment_ids=_ids(seg),
              sparse_gradient=s), 2), [(4, 3)], f"matrix{tag}"))
    specs.append(Spec(
        f"SparseSegment{kind}WithNumSegments", lambda x, s=sparse: numbered(
            data=x, indices=_ids(idx, tf.int64), segment_ids=_ids(seg),
            num_segments=3, sparse_gradient=s), [(5,)], f"vector{tag}"))
  return specs


def _sparse_matmul(ta, tb, sa, sb):
  return lambda a, b: _raw.SparseMatMul(a=a, b=b, transpose_a=ta,
                                        transpose_b=tb, a_is_sparse=sa,
                                        b_is_sparse=sb)


_SPARSE_MATMUL_NOTE = ("SparseMatMul has float32/bfloat16 kernels only, so "
                       "no float64 finite-difference check")

SPECS += [
    *_segment_specs("SegmentSum", tf.math.segment_sum, dtypes=FC),
    *_segment_specs("SegmentMean", tf.math.segment_mean, dtypes=FC),
    *_segment_specs("SegmentMax", tf.math.segment_max, domain="distinct"),
    *_segment_specs("SegmentMin", tf.math.segment_min, domain="distinct"),
    *_segment_specs("SegmentProd", tf.math.segment_prod, domain="nonzero"),
    Spec("SegmentProd", lambda x: _pinned(tf.math.segment_prod(
        x, _ids(_IDS)), 3), [(4, 3)], "one_zero",
         domain=_one_zero_per_segment),
    *_unsorted_specs("UnsortedSegmentSum", tf.math.unsorted_segment_sum,
                     dtypes=FC),
    *_unsorted_specs("UnsortedSegmentMax", tf.math.unsorted_segment_max,
                     domain="distinct"),
    *_unsorted_specs("UnsortedSegmentMin", tf.math.unsorted_segment_min,
                     domain="distinct"),
    *_unsorted_specs("UnsortedSegmentProd", tf.math.unsorted_segment_prod,
                     domain="nonzero"),
    Spec("UnsortedSegmentProd", lambda x: tf.math.unsorted_segment_prod(
        x, _ids([1, 1, -1, 0]), 2), [(4, 3)], "one_zero",
         domain=_one_zero_per_segment),
    *_sparse_segment_specs("Sum"),
    *_sparse_segment_specs("Mean"),
    *_sparse_segment_specs("SqrtN"),
    Spec("AccumulateNV2", lambda x, y: _raw.AccumulateNV2(
        inputs=[x, y, x], shape=[2, 3]), [(2, 3), (2, 3)], dtypes=FC),
    Spec("ClipByValue", _clip, [(2, 3), (), ()], "scalar_bounds",
         domain=_clusters),
    Spec("ClipByValue", _clip, [(2, 3), (2, 3), (2, 3)], "tensor_bounds",
         domain=_clusters),
    *[Spec("SparseMatMul", _sparse_matmul(ta, tb, sa, sb),
           [(3, 2) if ta else (2, 3), (4, 3) if tb else (3, 4)],
           f"t{int(ta)}{int(tb)}_s{int(sa)}{int(sb)}", dtypes=("float32",),
           order=0, note=_SPARSE_MATMUL_NOTE)
      for ta, tb, sa, sb in [(False, False, False, False),
                             (False, True, True, False),
                             (True, False, False, True),
                             (True, True, True, True)]],
]
