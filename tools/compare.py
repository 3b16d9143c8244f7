r"""Differentiates one model with tfgrad and with stock tf.gradients, on the
same graph, and compares the results x by x.

    python tools/compare.py                       # transformer, 2 blocks
    python tools/compare.py --model=mlp --depth=8 --width=128
    python tools/compare.py --model=cnn --strict  # which types lack rules?

Prints one row per x (max abs / rel difference, None pattern, dense vs
IndexedSlices for each engine), then ops added and construction time for
each engine. Exit status: 0 when every gradient matches in structure and
within tolerance, 1 on a mismatch, 2 when --strict finds an op type without
a native rule.
"""

import os
import sys
import time

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

import tfgrad
from tfgrad import registry
from tools import models

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "transformer", sorted(models.BUILDERS),
                  "Model to differentiate.")
flags.DEFINE_integer("depth", None, "mlp/nested_function: number of layers.")
flags.DEFINE_integer("width", None, "mlp/nested_function: layer width.")
flags.DEFINE_integer("batch", None, "Batch size.")
flags.DEFINE_integer("blocks", 2, "transformer: number of blocks.")
flags.DEFINE_integer("seq", None, "transformer: sequence length.")
flags.DEFINE_integer("d_model", None, "transformer: model width.")
flags.DEFINE_integer("heads", None, "transformer: attention heads.")
flags.DEFINE_integer("vocab", None, "transformer/embedding: vocabulary size.")
flags.DEFINE_integer("size", None,
                     "cnn: image side; fanout/many_ys: length of each x.")
flags.DEFINE_integer("channels", None, "cnn: channels of the first conv.")
flags.DEFINE_integer("n", None, "fanout: number of consumers of x.")
flags.DEFINE_integer("n_ys", None, "many_ys: number of ys.")
flags.DEFINE_integer("n_xs", None, "many_ys: number of xs.")
flags.DEFINE_integer("steps", None, "while_rnn: time steps.")
flags.DEFINE_integer("hidden", None, "while_rnn: state size.")
flags.DEFINE_enum("dtype", "float32", ["float32", "float64"],
                  "Floating dtype of the model.")
flags.DEFINE_integer("seed", 0, "numpy seed for parameters and data.")
flags.DEFINE_enum("aggregation_method", None,
                  ["add_n", "tree", "accumulate_n"],
                  "Gradient aggregation method (both engines).")
flags.DEFINE_bool("strict", False,
                  "Run tfgrad in strict mode: no fallback to TF's registry.")
flags.DEFINE_float("rtol", None, "Relative tolerance (default by dtype).")
flags.DEFINE_float("atol", None, "Absolute tolerance (default by dtype).")
flags.DEFINE_bool("warmup", True,
                  "Differentiate a throwaway copy of the model with both "
                  "engines first, so neither pays one-off costs in timing.")

_SIZE_FLAGS = ("depth", "width", "batch", "blocks", "seq", "d_model", "heads",
               "vocab", "size", "channels", "n", "n_ys", "n_xs", "steps",
               "hidden")
_AGGREGATION = {
    None: None,
    "add_n": tf.AggregationMethod.ADD_N,
    "tree": tf.AggregationMethod.EXPERIMENTAL_TREE,
    "accumulate_n": tf.AggregationMethod.EXPERIMENTAL_ACCUMULATE_N,
}
_TOLERANCE = {"float32": (1e-4, 1e-6), "float64": (1e-9, 1e-12)}


def _build_model():
  sizes = {k: getattr(FLAGS, k) for k in _SIZE_FLAGS}
  return models.build(FLAGS.model, seed=FLAGS.seed, dtype=FLAGS.dtype,
                      **sizes)


def _timed_gradients(fn, graph, ys, xs):
  """Calls fn(ys, xs, ...) once; returns (grads, ops added, seconds)."""
  before = len(graph.get_operations())
  start = time.perf_counter()
  grads = fn(ys, xs, aggregation_method=_AGGREGATION[FLAGS.aggregation_method])
  seconds = time.perf_counter() - start
  return grads, len(graph.get_operations()) - before, seconds


def _tfgrad(ys, xs, **kwargs):
  return tfgrad.gradients(ys, xs, strict=FLAGS.strict, **kwargs)


# ----- Coverage of the model's op types -----


def _path_ops(ys, xs):
  """Ops on some path from an x to a y (data edges only)."""
  backward, stack = set(), [y.op for y in ys]
  while stack:
    op = stack.pop()
    if op not in backward:
      backward.add(op)
      stack.extend(t.op for t in op.inputs)
  forward = set()
  stack = [x.handle.op if hasattr(x, "handle") else x.op for x in xs]
  while stack:
    op = stack.pop()
    if op not in forward:
      forward.add(op)
      stack.extend(c for t in op.outputs for c in t.consumers())
  return backward & forward


def _function_body_types(graph, ops):
  """Op types inside the functions that `ops` call, recursively."""
  library = {f.signature.name: f
             for f in graph.as_graph_def().library.function}

  def called(attrs):
    for value in attrs.values():
      if value.HasField("func"):
        yield value.func.name
      if value.HasField("list"):
        yield from (f.name for f in value.list.func)

  pending = [name for op in ops for name in called(op.node_def.attr)]
  seen, types = set(), set()
  while pending:
    name = pending.pop()
    if name in seen or name not in library:
      continue
    seen.add(name)
    for node in library[name].node_def:
      types.add(node.op)
      pending.extend(called(node.attr))
  return types


def _missing_native(types):
  """Differentiable-looking types with no tfgrad entry."""
  return sorted(t for t in types if t not in registry.GRADIENTS
                and _tf_gradient_known(t))


def _tf_gradient_known(op_type):
  return op_type in tf_ops.gradient_registry.list()


def _report_coverage(graph, ys, xs):
  path = _path_ops(ys, xs)
  types = {op.type for op in path}
  body = _function_body_types(graph, path) - types
  missing, missing_body = _missing_native(types), _missing_native(body)
  native = sum(t in registry.GRADIENTS for t in types)
  print(f"op types on the x->y paths: {len(types)} ({native} with a tfgrad "
        f"entry, {len(missing)} falling back to TF, "
        f"{len(types) - native - len(missing)} in neither registry)")
  print("  falling back to TF: " + (", ".join(missing) or "none"))
  if body:
    print("  inside called function bodies, without a native rule: "
          + (", ".join(missing_body) or "none"))
  return missing


# ----- Comparison -----


def _to_dense(value):
  if hasattr(value, "indices") and hasattr(value, "dense_shape"):
    dense = np.zeros(value.dense_shape, value.values.dtype)
    np.add.at(dense, value.indices, value.values)
    return dense
  return np.asarray(value)


def _static_shape(g):
  t = g.values if isinstance(g, tf.IndexedSlices) else g
  return t.shape.as_list() if t.shape.rank is not None else None


def _kind(g):
  if g is None:
    return "None"
  return "slices" if isinstance(g, tf.IndexedSlices) else "dense"


def _compare_one(x, a, b, a_val, b_val, rtol, atol):
  """One table row (a dict) for x: tfgrad (a) against stock (b)."""
  row = {"name": x.name, "shape": str(x.shape.as_list()),
         "kind_tfgrad": _kind(a), "kind_stock": _kind(b),
         "abs": "", "rel": "", "problems": []}
  if (a is None) != (b is None):
    row["pattern"] = "MISMATCH"
    row["problems"].append("None pattern")
    return row
  row["pattern"] = "both None" if a is None else "both set"
  if a is None:
    return row
  if row["kind_tfgrad"] != row["kind_stock"]:
    row["problems"].append("kind")
  if a.dtype != b.dtype:
    row["problems"].append(f"dtype {a.dtype.name}/{b.dtype.name}")
  a_static, b_static = (_static_shape(a), _static_shape(b))
  if a_static != b_static:
    row["problems"].append(f"static shape {a_static}/{b_static}")
  a_dense, b_dense = _to_dense(a_val), _to_dense(b_val)
  if a_dense.shape != b_dense.shape:
    row["problems"].append(f"value shape {a_dense.shape}/{b_dense.shape}")
    return row
  diff = np.abs(a_dense.astype(np.float64) - b_dense.astype(np.float64))
  scale = np.abs(b_dense.astype(np.float64))
  row["abs"] = f"{diff.max():.2e}" if diff.size else "0"
  row["rel"] = (f"{(diff / np.maximum(scale, atol)).max():.2e}"
                if diff.size else "0")
  if not np.allclose(a_dense, b_dense, rtol=rtol, atol=atol):
    row["problems"].append("values")
  return row


def _print_table(rows):
  columns = [("x", "name"), ("shape", "shape"), ("max abs", "abs"),
             ("max rel", "rel"), ("None pattern", "pattern"),
             ("tfgrad", "kind_tfgrad"), ("stock", "kind_stock"),
             ("check", "check")]
  for row in rows:
    row["check"] = ", ".join(row["problems"]) or "ok"
  widths = [max(len(title), *(len(str(r[key])) for r in rows))
            for title, key in columns]
  line = "  ".join(title.ljust(w) for (title, _), w in zip(columns, widths))
  print(line)
  print("-" * len(line))
  for row in rows:
    print("  ".join(str(row[key]).ljust(w)
                    for (_, key), w in zip(columns, widths)))


def _ratio(a, b):
  return f"{a / b:.2f}x" if b else "n/a"


def _warmup():
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _build_model()
    _timed_gradients(_tfgrad, graph, ys, xs)
    _timed_gradients(tf.gradients, graph, ys, xs)


def main(argv):
  del argv
  if tf.gradients is tfgrad.gradients:
    sys.exit("tfgrad is installed over tf.gradients; the stock engine is "
             "not reachable for comparison")
  rtol, atol = _TOLERANCE[FLAGS.dtype]
  rtol = FLAGS.rtol if FLAGS.rtol is not None else rtol
  atol = FLAGS.atol if FLAGS.atol is not None else atol
  if FLAGS.warmup:
    try:
      _warmup()
    except LookupError:
      pass  # reported below, on the measured graph

  graph = tf.Graph()
  with graph.as_default():
    ys, xs = _build_model()
    print(f"model: {FLAGS.model} ({len(graph.get_operations())} forward ops, "
          f"{len(ys)} ys, {len(xs)} xs, {FLAGS.dtype}), aggregation: "
          f"{FLAGS.aggregation_method or 'default'}, "
          f"strict: {FLAGS.strict}")
    missing = _report_coverage(graph, ys, xs)
    try:
      ours, ours_ops, ours_s = _timed_gradients(_tfgrad, graph, ys, xs)
    except LookupError as e:
      print(f"\nSTRICT MODE FAILURE: {e}")
      print(f"\nop types on the paths lacking a native rule "
            f"({len(missing)}): {', '.join(missing) or 'none'}")
      return 2
    stock, stock_ops, stock_s = _timed_gradients(tf.gradients, graph, ys, xs)
    with tf.compat.v1.Session(graph=graph) as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      fetch = [[g for g in grads if g is not None] for grads in (ours, stock)]
      ours_vals, stock_vals = sess.run(fetch)

  ours_iter, stock_iter = iter(ours_vals), iter(stock_vals)
  rows = []
  for x, a, b in zip(xs, ours, stock):
    a_val = next(ours_iter) if a is not None else None
    b_val = next(stock_iter) if b is not None else None
    rows.append(_compare_one(x, a, b, a_val, b_val, rtol, atol))
  print()
  _print_table(rows)
  bad = [r["name"] for r in rows if r["problems"]]
  print()
  print(f"ops added:          tfgrad {ours_ops:7d}   stock {stock_ops:7d}   "
        f"ratio {_ratio(ours_ops, stock_ops)}")
  print(f"construction ms:    tfgrad {ours_s * 1e3:7.1f}   stock "
        f"{stock_s * 1e3:7.1f}   ratio {_ratio(ours_s, stock_s)}")
  print(f"tolerance:          rtol {rtol:g}  atol {atol:g}  (max rel = "
        "max |a-b| / max(|b|, atol))")
  if bad:
    print(f"verdict:            MISMATCH in {len(bad)} of {len(rows)} "
          f"gradients: {', '.join(bad)}")
    return 1
  print(f"verdict:            all {len(rows)} gradients match")
  return 0


if __name__ == "__main__":
  app.run(main)
