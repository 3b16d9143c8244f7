"""Runs one fuzz program through one gradient engine, and compares outcomes.

A program is a namespace holding `INPUTS`, `build(inputs)` and `OPTIONS`
(see `tools/fuzz_programs.to_source`). `run(engine, program, mode)` builds
it in a fresh `tf.Graph` run by a Session ("graph"), or inside a fresh
`tf.function` ("function"), calls `engine` (`tfgrad.gradients` or
`tf.gradients`) and returns an `Outcome`. `compare(ours, stock)` lists the
differences. This module imports only numpy and TensorFlow: repro scripts
embed its source verbatim, so they check exactly what the fuzzer checked.
"""

import numpy as np
import tensorflow as tf

# rtol = atol per dtype of the gradient.
TOLERANCE = {"float32": 1e-4, "complex64": 1e-4, "float16": 1e-2,
             "float64": 1e-9, "complex128": 1e-9}


class Outcome:
  """What one engine did: raised (`error`: exception type name, `message`,
  `stage` "build" or "run"), or returned gradients (`structure`: one
  describe() per gradient; `values`: numpy arrays, None kept)."""

  def __init__(self, error=None, message="", stage="", structure=None,
               values=None):
    self.error, self.message, self.stage = error, message, stage
    self.structure, self.values = structure, values

  def __repr__(self):
    if self.error:
      return f"raised {self.error} at {self.stage}: {self.message[:200]}"
    return f"structure {self.structure}, values {self.values}"


def describe(g):
  """None, or (kind, dtype, static shape as a list or None)."""
  if g is None:
    return None
  kind = "IndexedSlices" if isinstance(g, tf.IndexedSlices) else "Tensor"
  t = g.values if kind == "IndexedSlices" else g
  shape = t.shape.as_list() if t.shape.rank is not None else None
  return (kind, g.dtype.name, shape)


def _dense(g):
  return tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g


def _scalar(g):
  """reduce_sum of a gradient (its real part if complex): the y of the
  second-order call."""
  s = tf.reduce_sum(_dense(g))
  return tf.math.real(s) if s.dtype.is_complex else s


def differentiate(engine, case, options):
  """The engine's gradients of the case at OPTIONS' order: order 2
  differentiates the reduce_sum of each first-order gradient again."""
  grads = engine(case["ys"], case["xs"], grad_ys=case["grad_ys"],
                 stop_gradients=case["stop_gradients"] or None,
                 aggregation_method=options["aggregation_method"],
                 unconnected_gradients=options["unconnected_gradients"])
  if options["order"] == 2:
    zs = [_scalar(g) for g in grads if g is not None]
    if zs:
      grads = engine(zs, case["xs"],
                     aggregation_method=options["aggregation_method"],
                     unconnected_gradients=options["unconnected_gradients"])
  return list(grads)


def _error(e, stage):
  return Outcome(error=type(e).__name__, message=str(e), stage=stage)


def run_graph(engine, program):
  """Builds and differentiates in a tf.Graph; runs it in a Session."""
  graph = tf.Graph()
  with graph.as_default():
    inputs, feed = {}, {}
    for name, (kind, value, static) in program["INPUTS"].items():
      if kind == "placeholder":
        inputs[name] = tf.compat.v1.placeholder(value.dtype, static)
        feed[inputs[name]] = value
      else:
        inputs[name] = tf.Variable(value)
    try:
      grads = differentiate(engine, program["build"](inputs),
                            program["OPTIONS"])
    except Exception as e:  # pylint: disable=broad-except
      return _error(e, "build")
    fetch = [_dense(g) for g in grads if g is not None]
    init = tf.compat.v1.global_variables_initializer()
    try:
      with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(init)
        values = iter(sess.run(fetch, feed))
    except Exception as e:  # pylint: disable=broad-except
      return _error(e, "run")
  return Outcome(structure=[describe(g) for g in grads],
                 values=[None if g is None else next(values) for g in grads])


def run_function(engine, program):
  """Builds and differentiates inside a tf.Function (variables made
  eagerly beforehand, placeholders as arguments with their static shapes)."""
  inputs, names, specs, args = {}, [], [], []
  for name, (kind, value, static) in program["INPUTS"].items():
    if kind == "placeholder":
      names.append(name)
      specs.append(tf.TensorSpec(static, value.dtype))
      args.append(value)
    else:
      inputs[name] = tf.Variable(value)
  structure = []

  @tf.function(input_signature=specs, autograph=False)
  def fn(*placeholders):
    grads = differentiate(engine, program["build"](
        dict(inputs, **dict(zip(names, placeholders)))), program["OPTIONS"])
    structure[:] = [describe(g) for g in grads]
    return [_dense(g) for g in grads if g is not None]

  try:
    concrete = fn.get_concrete_function()
  except Exception as e:  # pylint: disable=broad-except
    return _error(e, "build")
  try:
    values = iter(v.numpy() for v in concrete(*args))
  except Exception as e:  # pylint: disable=broad-except
    return _error(e, "run")
  return Outcome(structure=structure,
                 values=[None if s is None else next(values)
                         for s in structure])


def run(engine, program, mode):
  return (run_graph if mode == "graph" else run_function)(engine, program)


def _at_least_as_specific(ours, stock):
  """tfgrad's static shape must be compatible with stock's and know at
  least what stock knows."""
  if stock is None:
    return True
  if ours is None or len(ours) != len(stock):
    return False
  return all(s is None or o == s for o, s in zip(ours, stock))


def _compare_values(i, dtype, a, b):
  tol = TOLERANCE.get(dtype, 1e-6)
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    return [("value shape", f"gradient {i}: tfgrad {a.shape}, "
             f"stock {b.shape}")]
  if not np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True):
    diff = np.max(np.abs(a.astype(np.complex128) - b.astype(np.complex128)),
                  initial=0.0)
    return [("values", f"gradient {i}: max |tfgrad - stock| = {diff:.3g}")]
  return []


def _compare_one(i, a, b, a_value, b_value):
  if (a is None) != (b is None):
    return [("None pattern", f"gradient {i}: tfgrad {a}, stock {b}")]
  if a is None:
    return []
  problems = []
  if a[0] != b[0]:
    problems.append(("kind", f"gradient {i}: tfgrad {a[0]}, stock {b[0]}"))
  if a[1] != b[1]:
    problems.append(("dtype", f"gradient {i}: tfgrad {a[1]}, stock {b[1]}"))
  if not _at_least_as_specific(a[2], b[2]):
    problems.append(("static shape", f"gradient {i}: tfgrad {a[2]}, "
                     f"stock {b[2]}"))
  return problems + _compare_values(i, b[1], a_value, b_value)


def compare(ours, stock):
  """Differences of tfgrad's outcome from stock's: (category, detail)."""
  if ours.error or stock.error:
    if ours.error == stock.error:
      return []
    said = lambda o: (f"raised {o.error} ({o.stage})" if o.error
                      else "returned gradients")
    return [("exception", f"tfgrad {said(ours)}, stock {said(stock)}")]
  if len(ours.structure) != len(stock.structure):
    return [("count", f"tfgrad {len(ours.structure)} gradients, "
             f"stock {len(stock.structure)}")]
  problems = []
  for i, (a, b, av, bv) in enumerate(zip(ours.structure, stock.structure,
                                         ours.values, stock.values)):
    problems += _compare_one(i, a, b, av, bv)
  return problems
