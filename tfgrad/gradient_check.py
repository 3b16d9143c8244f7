"""`check_gradients`: tfgrad's symbolic Jacobian against finite differences.

The role of `tf.test.compute_gradient`, `torch.autograd.gradcheck` and
`jax.test_util.check_grads`, for graphs: it builds `fn` in a fresh
`tf.Graph` with float64 placeholders for the floating arguments, computes
the Jacobian of every floating output with respect to every floating
argument through tfgrad (`tfgrad.jacobian`, so any rule registered with
`tfgrad.RegisterGradient`, `gradient_override_map` or `tf.custom_gradient`
is what is checked), and compares it entry by entry with central
differences. order=2 checks the Jacobian of the first-order gradient
map x -> J(x)^T v for a fixed random v (the gradient's own gradient).

    report = tfgrad.check_gradients(lambda x: my_op(x), [np.ones((3, 2))])
    report = tfgrad.check_gradients(f, [x0, w0], order=2, raise_on_failure=False)
    print(report)
"""

import dataclasses
from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tfgrad import api
from tfgrad import higher_order


_KEEP_PER_BLOCK = 50   # mismatches kept per (output, argument) before trimming


class GradientCheckError(AssertionError):
  """Raised by `check_gradients` when an entry is out of tolerance; its
  `report` attribute holds the `GradientCheckReport`."""

  def __init__(self, report):
    super().__init__(str(report))
    self.report = report


@dataclasses.dataclass
class Mismatch:
  """One Jacobian entry out of tolerance: d output[out_index] /
  d args[arg][in_index]."""
  output: int
  arg: int
  out_index: Tuple[int, ...]
  in_index: Tuple[int, ...]
  symbolic: float
  numeric: float
  direction: Optional[int] = None   # the random projection, if directional

  @property
  def error(self):
    return abs(self.symbolic - self.numeric)

  def __str__(self):
    if self.direction is not None:
      return (f"direction {self.direction}: symbolic <u, J^T v> "
              f"{self.symbolic:.8g}, numeric d<f(x+eu), v>/de "
              f"{self.numeric:.8g} (error {self.error:.3g})")
    return (f"d out[{self.output}]{list(self.out_index)} / "
            f"d args[{self.arg}]{list(self.in_index)}: symbolic "
            f"{self.symbolic:.8g}, numeric {self.numeric:.8g} "
            f"(error {self.error:.3g})")


@dataclasses.dataclass
class GradientCheckReport:
  """What `check_gradients` compared and what it found."""
  order: int
  delta: float
  rtol: float
  atol: float
  checked: int = 0                  # Jacobian entries compared
  worst: List[Mismatch] = dataclasses.field(default_factory=list)
  failures: int = 0                 # entries out of tolerance
  max_error: float = 0.0
  missing: List[Tuple[int, int]] = dataclasses.field(default_factory=list)

  @property
  def ok(self):
    return not self.failures and not self.missing

  def __str__(self):
    head = (f"check_gradients (order {self.order}, delta {self.delta:g}, "
            f"rtol {self.rtol:g}, atol {self.atol:g}): {self.checked} "
            f"entries, {self.failures} out of tolerance, max error "
            f"{self.max_error:.3g}")
    lines = [head]
    for out, arg in self.missing:
      lines.append(f"  d out[{out}] / d args[{arg}]: no gradient (None), but "
                   "finite differences are not zero")
    lines += [f"  {m}" for m in self.worst]
    return "\n".join(lines)


def _is_float(value):
  return np.asarray(value).dtype.kind == "f"


def _flat_outputs(result):
  return [t for t in tf.nest.flatten(result)
          if isinstance(t, tf.Tensor) and t.dtype == tf.float64]


def check_gradients(fn, args, *, order=1, delta=1e-6, rtol=1e-5, atol=1e-6,
                    raise_on_failure=True, worst=5, seed=0, directions=None,
                    variables=False, strict=None):
  """Checks tfgrad's derivatives of `fn` at `args` by central differences.

  fn: called once, in a fresh `tf.Graph`, on one float64 placeholder per
    floating entry of `args` (other entries are passed as they are);
    returns a Tensor or a nested structure of them. Its float64 outputs
    are checked.
  args: the point: numpy arrays or numbers.
  order: 1 checks the Jacobian; 2 the Jacobian of x -> J(x)^T v for a
    random v (seeded by `seed`).
  delta, rtol, atol: step, and |symbolic - numeric| <= atol + rtol*|numeric|.
  directions: None compares the whole Jacobian, entry by entry (2 runs per
    argument entry); an int k compares k random projections instead,
    <u, J^T v> from one tfgrad pass against the central difference of
    <f, v> along u (2 runs each; for large inputs).
  variables: fn gets resource variables, initialised from the point, in
    place of the placeholders (derivatives are taken with respect to them);
    a callable makes them instead, from each placeholder (e.g. reference
    variables: `lambda p: tf.compat.v1.Variable(p, use_resource=False)`).
  strict: passed to every `tfgrad.gradients` call (see `strict_mode`).
  Returns a `GradientCheckReport` (its `worst` lists the `worst` entries
  farthest out of tolerance, naming output, argument and both indices, or
  the direction); raises `GradientCheckError` with it instead when
  raise_on_failure and an entry fails.
  """
  if order not in (1, 2):
    raise ValueError(f"order must be 1 or 2, not {order!r}")
  args = list(args)
  points = {i: np.asarray(a, np.float64) for i, a in enumerate(args)
            if _is_float(a)}
  if not points:
    raise ValueError("check_gradients needs at least one floating argument")
  report = GradientCheckReport(order, delta, rtol, atol)
  rng = np.random.default_rng(seed)
  graph = tf.Graph()
  with graph.as_default():
    feeds = {i: tf.compat.v1.placeholder(tf.float64, p.shape, f"arg{i}")
             for i, p in points.items()}
    make = (variables if callable(variables) else
            tf.Variable if variables else None)
    inputs = {i: make(f) if make else f for i, f in feeds.items()}
    call_args = [inputs.get(i, a) for i, a in enumerate(args)]
    outputs = _flat_outputs(fn(*call_args))
    xs = [inputs[i] for i in sorted(inputs)]
    if order == 2:
      outputs = _gradient_map(outputs, xs, rng, strict)
    init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session(graph=graph) as sess:
      def run(fetch, shifted=None):
        values = dict(points)
        for i, v in (shifted or {}).items():
          values[i] = v
        feed = {feeds[i]: v for i, v in values.items()}
        sess.run(init, feed)
        return sess.run(fetch, feed)
      if directions is None:
        _check_jacobians(report, run, outputs, xs, points)
      else:
        _check_directions(report, run, outputs, xs, points, directions, rng,
                          strict)
  report.worst.sort(key=lambda m: -(m.error - atol - rtol * abs(m.numeric)))
  del report.worst[worst:]
  if raise_on_failure and not report.ok:
    raise GradientCheckError(report)
  return report


def _check_jacobians(report, run, outputs, xs, points):
  """Every entry of every d output / d arg."""
  jacobians = [higher_order.jacobian(y, xs) for y in outputs]
  symbolic = run([[j for j in row if j is not None] for row in jacobians])
  numeric = _numeric_jacobians(run, outputs, points, report.delta)
  order_of_args = sorted(points)
  for k, row in enumerate(jacobians):
    values = iter(symbolic[k])
    for pos, j in enumerate(row):
      arg = order_of_args[pos]
      num = numeric[k][pos]
      if j is None:
        if np.any(np.abs(num) > report.atol):
          report.missing.append((k, arg))
        continue
      _compare(report, k, arg, points[arg].ndim, next(values), num)


def _check_directions(report, run, outputs, xs, points, count, rng, strict):
  """<u, J^T v> against d/de <f(x + e u), v>, for `count` random (u, v).
  Every gradient is built before the graph first runs (TF's While
  gradients add outputs to the forward loop)."""
  checks = []
  for _ in range(count):
    vs = [rng.standard_normal(y.shape.as_list()) for y in outputs]
    us = {i: rng.standard_normal(p.shape) for i, p in points.items()}
    grads = (api.gradients(outputs, xs, [tf.constant(v) for v in vs],
                           strict=strict) if outputs else [None] * len(xs))
    dense = [None if g is None else tf.convert_to_tensor(g) for g in grads]
    checks.append((vs, us, dense))
  for direction, (vs, us, dense) in enumerate(checks):
    values = run([g for g in dense if g is not None])
    symbolic = sum(float(np.sum(g * us[i])) for g, i in
                   zip(values, [i for g, i in zip(dense, sorted(points))
                                if g is not None]))

    def inner(sign, vs=vs, us=us):
      shifted = {i: p + sign * report.delta * us[i]
                 for i, p in points.items()}
      return sum(float(np.sum(y * v))
                 for y, v in zip(run(outputs, shifted), vs))
    numeric = (inner(1.0) - inner(-1.0)) / (2 * report.delta)
    report.checked += 1
    error = abs(symbolic - numeric)
    report.max_error = max(report.max_error, error)
    if error > report.atol + report.rtol * abs(numeric):
      report.failures += 1
      report.worst.append(Mismatch(-1, -1, (), (), symbolic, numeric,
                                   direction=direction))


def _gradient_map(outputs, xs, rng, strict):
  """The first-order gradient J(x)^T v, as outputs of the graph."""
  vs = [tf.constant(rng.standard_normal(y.shape.as_list())) for y in outputs]
  grads = api.gradients(outputs, xs, vs, strict=strict) if outputs else []
  return [tf.convert_to_tensor(g) for g in grads if g is not None]


def _numeric_jacobians(run, outputs, points, delta):
  """[output][arg] -> array of shape output.shape + arg.shape."""
  result = []
  base_shapes = [np.shape(v) for v in run(outputs)]
  per_arg = []
  for i in sorted(points):
    p = points[i]
    cols = [np.zeros(s + p.shape) for s in base_shapes]
    for j in range(p.size):
      step = np.zeros(p.size)
      step[j] = delta
      plus = run(outputs, {i: p + step.reshape(p.shape)})
      minus = run(outputs, {i: p - step.reshape(p.shape)})
      idx = np.unravel_index(j, p.shape) if p.shape else ()
      for k, (a, b) in enumerate(zip(plus, minus)):
        cols[k][(Ellipsis,) + tuple(idx)] = (a - b) / (2 * delta)
    per_arg.append(cols)
  for k in range(len(outputs)):
    result.append([per_arg[a][k] for a in range(len(points))])
  return result


def _compare(report, out, arg, in_rank, symbolic, numeric):
  """Adds d out / d args[arg] (arrays of out.shape + arg.shape) to report."""
  symbolic = np.asarray(symbolic, np.float64)
  report.checked += symbolic.size
  if not symbolic.size:
    return
  error = np.abs(symbolic - numeric)
  excess = error - (report.atol + report.rtol * np.abs(numeric))
  report.max_error = max(report.max_error, float(np.max(error)))
  bad = np.argwhere(excess > 0)
  report.failures += len(bad)
  if not len(bad):
    return
  for b in bad[np.argsort(-excess[tuple(bad.T)])][:_KEEP_PER_BLOCK]:
    index = tuple(int(v) for v in b)
    split = len(index) - in_rank
    report.worst.append(Mismatch(out, arg, index[:split], index[split:],
                                 float(symbolic[index]),
                                 float(numeric[index])))
