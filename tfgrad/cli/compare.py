r"""Differentiates one model with tfgrad and with stock tf.gradients, on the
same graph, and compares the results x by x.

    tfgrad-compare                                # transformer, 2 blocks
    tfgrad-compare --model=mlp --depth=8 --width=128
    tfgrad-compare --model=cnn --strict           # which types lack rules?
    tfgrad-compare --saved_model=DIR --loss=mean_square --markdown=out.md
    tfgrad-compare --graphdef=g.pb --ys=loss:0 --xs=x:0 --explain
    tfgrad-compare --keras=model.keras --json=out.json
    tfgrad-compare --fn=my.module:build --tensorboard=/tmp/tb
    tfgrad-compare --keras=model.keras --checkpoints=memory
    tfgrad-compare --model=mlp --depth=64 --checkpoints=20MiB

(`python -m tfgrad.compare` and, in a checkout, `python tools/compare.py`
are the same tool.) Prints one row per x (max abs / rel difference, None
pattern, dense vs IndexedSlices for each engine), then ops added and
construction time for each engine; `--explain` says why each None
gradient is None; `--checkpoints` differentiates with tfgrad's
memory-saving gradients and says which tensors are kept, which ops are
recomputed, which loops are checkpointed, and the estimated peaks. Exit status: 0 when every gradient matches in structure
and within tolerance, 1 on a mismatch, 2 on a mistake in the command line
or the model files, or when --strict finds an op type without a native
rule.
"""

import os
import time

from absl import flags
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops

import tfgrad
from tfgrad import registry
from tfgrad import tf_compat
from tfgrad.cli import common
from tfgrad.cli import models
from tfgrad.cli import sources
from tfgrad.cli.common import UserError


def define_flags(fv):
  """Adds the tool's flags to `fv` (called by `main`, or by a caller that
  runs the tool in-process with its own FlagValues)."""
  flags.DEFINE_enum("model", "transformer", sorted(models.BUILDERS),
                    "Model to differentiate.", flag_values=fv)
  flags.DEFINE_integer("depth", None, "mlp/nested_function: number of layers.", flag_values=fv)
  flags.DEFINE_integer("width", None, "mlp/nested_function: layer width.", flag_values=fv)
  flags.DEFINE_integer("batch", None, "Batch size.", flag_values=fv)
  flags.DEFINE_integer("blocks", 2, "transformer: number of blocks.", flag_values=fv)
  flags.DEFINE_integer("seq", None, "transformer: sequence length.", flag_values=fv)
  flags.DEFINE_integer("d_model", None, "transformer: model width.", flag_values=fv)
  flags.DEFINE_integer("heads", None, "transformer: attention heads.", flag_values=fv)
  flags.DEFINE_integer("vocab", None, "transformer/embedding: vocabulary size.", flag_values=fv)
  flags.DEFINE_integer("size", None,
                       "cnn: image side; fanout/many_ys: length of each x.", flag_values=fv)
  flags.DEFINE_integer("channels", None, "cnn: channels of the first conv.", flag_values=fv)
  flags.DEFINE_integer("n", None, "fanout: number of consumers of x.", flag_values=fv)
  flags.DEFINE_integer("n_ys", None, "many_ys: number of ys.", flag_values=fv)
  flags.DEFINE_integer("n_xs", None, "many_ys: number of xs.", flag_values=fv)
  flags.DEFINE_integer("steps", None, "while_rnn: time steps.", flag_values=fv)
  flags.DEFINE_integer("hidden", None, "while_rnn: state size.", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "float64"],
                    "Floating dtype of the model.", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "numpy seed for parameters and data.", flag_values=fv)
  flags.DEFINE_enum("aggregation_method", None,
                    ["add_n", "tree", "accumulate_n"],
                    "Gradient aggregation method (both engines).", flag_values=fv)
  flags.DEFINE_bool("strict", False,
                    "Run tfgrad in strict mode: no fallback to TF's registry.", flag_values=fv)
  flags.DEFINE_float("rtol", None, "Relative tolerance (default by dtype).", flag_values=fv)
  flags.DEFINE_float("atol", None, "Absolute tolerance (default by dtype).", flag_values=fv)
  flags.DEFINE_bool("warmup", True,
                    "Differentiate a throwaway copy of the model with both "
                    "engines first, so neither pays one-off costs in timing.", flag_values=fv)
  flags.DEFINE_enum("unconnected_gradients", "none", ["none", "zero"],
                    "unconnected_gradients of both engines.", flag_values=fv)
  flags.DEFINE_bool("explain", False,
                    "Say why each x whose gradient is None (or zeros) gets "
                    "none.", flag_values=fv)
  flags.DEFINE_string("json", None, "Write the results as JSON here.",
                      flag_values=fv)
  flags.DEFINE_string("markdown", None,
                      "Write the results as a markdown table here.",
                      flag_values=fv)
  flags.DEFINE_string("tensorboard", None,
                      "Write the forward graph with both engines' gradient "
                      "graphs (scopes tfgrad_gradients, stock_gradients; "
                      "dead ops carry the attribute _dead) for TensorBoard.",
                      flag_values=fv)
  flags.DEFINE_string("checkpoints", None,
                      "tfgrad's gradient with checkpoints: memory, speed, "
                      "or a memory budget in bytes (suffixes K, M, G, KiB, "
                      "MiB, GiB: 200MiB). Reports what is kept and "
                      "recomputed, and the estimated peak before and "
                      "after.", flag_values=fv)
  flags.DEFINE_bool("progress", True,
                    "Progress bar on stderr (only when it is a terminal).",
                    flag_values=fv)
  sources.define_flags(fv)


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
_SCOPES = {"tfgrad": "tfgrad_gradients", "stock": "stock_gradients"}


def _builder(opts):
  source = sources.chosen(opts)
  if source and opts["model"].present:
    raise UserError(f"--model and --{source} are two model sources; give one")
  sizes = {k: getattr(opts, k) for k in _SIZE_FLAGS}
  return sources.builder(opts, lambda: models.build(
      opts.model, seed=opts.seed, dtype=opts.dtype, **sizes))


_BYTE_SUFFIXES = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9,
                  "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30}


def checkpoints_value(text):
  """The `checkpoints` argument a --checkpoints flag value names: None,
  "memory", "speed" or a `tfgrad.MemoryBudget` (UserError otherwise)."""
  if text is None or text in ("memory", "speed"):
    return text
  number = text.rstrip("kKmMgGiIbB ")
  suffix = text[len(number):].strip().lower()
  if suffix.endswith("b") and not suffix.endswith("ib"):
    suffix = suffix[:-1]
  try:
    size = float(number) * _BYTE_SUFFIXES[suffix]
  except (KeyError, ValueError):
    size = None
  if size is None or size <= 0:
    raise UserError(f"--checkpoints={text}: give memory, speed, or a "
                    "memory budget in bytes such as 200MiB")
  return tfgrad.MemoryBudget(int(size))


def _engines(opts):
  kwargs = dict(aggregation_method=_AGGREGATION[opts.aggregation_method],
                unconnected_gradients=opts.unconnected_gradients)
  checkpoints = checkpoints_value(opts.checkpoints)
  return {
      "tfgrad": lambda ys, xs: tfgrad.gradients(
          ys, xs, strict=opts.strict, name=_SCOPES["tfgrad"],
          checkpoints=checkpoints, **kwargs),
      "stock": lambda ys, xs: tf.gradients(
          ys, xs, name=_SCOPES["stock"], **kwargs),
  }


def _timed_gradients(fn, graph, ys, xs):
  """Calls fn(ys, xs) once; returns (grads, ops added, seconds)."""
  before = len(graph.get_operations())
  start = time.perf_counter()
  grads = fn(ys, xs)
  seconds = time.perf_counter() - start
  return grads, graph.get_operations()[before:], seconds


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

  pending = [name for op in ops
             for name in tf_compat.function_names(op.node_def.attr)]
  seen, types = set(), set()
  while pending:
    name = pending.pop()
    if name in seen or name not in library:
      continue
    seen.add(name)
    for node in library[name].node_def:
      types.add(node.op)
      pending.extend(tf_compat.function_names(node.attr))
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
  shape = (tf.TensorShape(x.op.get_attr("shape"))
           if x.dtype == tf.resource and x.op.type == "VarHandleOp"
           else x.shape)
  row = {"name": x.name, "shape": str(shape.as_list()
                                      if shape.rank is not None else "?"),
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
  widths = [max(len(title), *(len(str(r[key])) for r in rows))
            for title, key in columns]
  line = "  ".join(title.ljust(w) for (title, _), w in zip(columns, widths))
  print(line)
  print("-" * len(line))
  for row in rows:
    print("  ".join(str(row[key]).ljust(w)
                    for (_, key), w in zip(columns, widths)))


_MD_COLUMNS = [("x", "name"), ("shape", "shape"), ("max abs", "abs"),
               ("max rel", "rel"), ("None pattern", "pattern"),
               ("tfgrad", "kind_tfgrad"), ("stock", "kind_stock"),
               ("check", "check")]


def markdown(result):
  """The comparison as markdown: a summary line, the table per x, the
  totals and, with --explain, the reasons."""
  out = [f"**tfgrad-compare** on {result['model']} ({result['forward_ops']} "
         f"forward ops, {len(result['rows'])} xs; TF {result['tf_version']}, "
         f"tfgrad {result['tfgrad_version']}): **{result['verdict']}**", ""]
  out.append(common.markdown_table(
      [t for t, _ in _MD_COLUMNS],
      [[r[k] if r[k] != "" else "-" for _, k in _MD_COLUMNS]
       for r in result["rows"]]))
  e = result["engines"]
  out.append(common.markdown_table(
      ["", "stock", "tfgrad", "ratio"],
      [["ops added", e["stock"]["ops"], e["tfgrad"]["ops"],
        _fmt_ratio(e["tfgrad"]["ops"], e["stock"]["ops"])],
       ["dead ops", e["stock"]["dead_ops"], e["tfgrad"]["dead_ops"], ""],
       ["construction ms", f"{e['stock']['ms']:.1f}",
        f"{e['tfgrad']['ms']:.1f}",
        _fmt_ratio(e["tfgrad"]["ms"], e["stock"]["ms"])]]))
  if result.get("checkpoints"):
    out.append("Checkpoints:\n")
    out.append("```\n" + result["checkpoints"]["text"] + "\n```\n")
  if result.get("explanations"):
    out.append("Why gradients are None:\n")
    out.extend(f"- `{x['x']}`: {x['text']}" for x in result["explanations"])
    out.append("")
  return "\n".join(out)


def _fmt_ratio(a, b):
  return f"{a / b:.2f}" if b else "-"


def _ratio(a, b):
  return f"{a / b:.2f}x" if b else "n/a"


def _dead(added, grads):
  """Added ops from which no gradient tensor is reachable."""
  from tfgrad.cli import bench  # pylint: disable=g-import-not-at-top
  return bench.dead_op_set(added, grads)


def _write_tensorboard(logdir, graph, dead):
  """The graph with both engines' gradient scopes, dead ops marked."""
  graph_def = graph.as_graph_def()
  for node in graph_def.node:
    if node.name in dead:
      node.attr["_dead"].b = True
  try:
    os.makedirs(logdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"--tensorboard: cannot create {logdir}: {e.strerror}") \
        from None
  with graph.as_default():
    writer = tf.compat.v1.summary.FileWriter(logdir)
    writer.add_graph(None, graph_def=graph_def)
    writer.close()


def _warmup(builder, engines):
  graph = tf.Graph()
  with graph.as_default():
    built = builder.build()
    for fn in engines.values():
      _timed_gradients(fn, graph, built.ys, built.xs)


def _explanations(built, grads, values):
  """Reasons for the xs whose tfgrad gradient is None, or all zeros."""
  pick = []
  for i, (g, v) in enumerate(zip(grads, values)):
    if g is None or (v is not None and not np.any(_to_dense(v))):
      pick.append(i)
  if not pick:
    return []
  found = tfgrad.explain(built.ys, [built.xs[i] for i in pick])
  return [{"x": built.names[i], "reason": e.reason, "text": e.describe(),
           "blockers": [vars(b) for b in e.blockers]}
          for i, e in zip(pick, found)]


def _checkpointing(opts, ys, xs):
  """`explain_checkpoints` of the --checkpoints value as a dict (None
  without the flag). Raises the ValueError of a budget below the smallest
  feasible schedule as a UserError."""
  if opts.checkpoints is None:
    return None
  try:
    found = tfgrad.explain_checkpoints(
        ys, xs, checkpoints=checkpoints_value(opts.checkpoints))
  except NotImplementedError as e:
    return {"applies": False, "text": f"the plain gradient: {e}"}
  except ValueError as e:
    raise UserError(f"--checkpoints={opts.checkpoints}: {e}") from None
  return {"applies": True, "text": str(found), **found}


def run(opts):
  """Runs the comparison for parsed flags `opts`; returns the exit status
  (a user's mistake: one line on stderr, status 2)."""
  return common.run_reporting_user_errors("tfgrad-compare",
                                          lambda: _run(opts))


def _run(opts):
  if tf.gradients is tfgrad.gradients:
    raise UserError("tfgrad is installed over tf.gradients; the stock "
                    "engine is not reachable for comparison")
  rtol, atol = _TOLERANCE[opts.dtype]
  rtol = opts.rtol if opts.rtol is not None else rtol
  atol = opts.atol if opts.atol is not None else atol
  builder = _builder(opts)
  engines = _engines(opts)
  progress = common.Progress(4, "compare", enabled=opts.progress)
  if opts.warmup:
    try:
      _warmup(builder, engines)
    except LookupError:
      pass  # reported below, on the measured graph
  progress.step("warm-up")

  graph = tf.Graph()
  with graph.as_default():
    built = builder.build()
    ys, xs = built.ys, built.xs
    forward_ops = len(graph.get_operations())
    model = (f"{opts.model} ({opts.dtype})" if sources.chosen(opts) is None
             else builder.description)
    print(f"model: {model}: {forward_ops} forward ops, {len(ys)} ys, "
          f"{len(xs)} xs, aggregation: {opts.aggregation_method or 'default'}"
          f", strict: {opts.strict}")
    missing = _report_coverage(graph, ys, xs)
    checkpointing = _checkpointing(opts, ys, xs)
    try:
      ours, ours_ops, ours_s = _timed_gradients(engines["tfgrad"], graph, ys,
                                                xs)
    except LookupError as e:
      print(f"\nSTRICT MODE FAILURE: {e}")
      print(f"\nop types on the paths lacking a native rule "
            f"({len(missing)}): {', '.join(missing) or 'none'}")
      return 2
    stock, stock_ops, stock_s = _timed_gradients(engines["stock"], graph, ys,
                                                 xs)
    progress.step("built")
    with tf.compat.v1.Session(graph=graph) as sess:
      built.init(sess)
      fetch = [[g for g in grads if g is not None] for grads in (ours, stock)]
      ours_vals, stock_vals = sess.run(fetch, feed_dict=built.feed)
    progress.step("ran")
    dead = {"tfgrad": _dead(ours_ops, ours), "stock": _dead(stock_ops, stock)}

  ours_iter, stock_iter = iter(ours_vals), iter(stock_vals)
  rows, ours_by_x = [], []
  for x, name, a, b in zip(xs, built.names, ours, stock):
    a_val = next(ours_iter) if a is not None else None
    b_val = next(stock_iter) if b is not None else None
    ours_by_x.append(a_val)
    row = _compare_one(x, a, b, a_val, b_val, rtol, atol)
    row["name"] = name
    row["check"] = ", ".join(row["problems"]) or "ok"
    rows.append(row)
  explanations = []
  if opts.explain:
    with graph.as_default():
      explanations = _explanations(built, ours, ours_by_x)
  if opts.tensorboard:
    _write_tensorboard(opts.tensorboard, graph, dead["tfgrad"] | dead["stock"])
  progress.step("compared")
  progress.close()

  print()
  _print_table(rows)
  bad = [r["name"] for r in rows if r["problems"]]
  print()
  print(f"ops added:          tfgrad {len(ours_ops):7d}   stock "
        f"{len(stock_ops):7d}   ratio {_ratio(len(ours_ops), len(stock_ops))}")
  print(f"dead ops:           tfgrad {len(dead['tfgrad']):7d}   stock "
        f"{len(dead['stock']):7d}")
  print(f"construction ms:    tfgrad {ours_s * 1e3:7.1f}   stock "
        f"{stock_s * 1e3:7.1f}   ratio {_ratio(ours_s, stock_s)}")
  print(f"tolerance:          rtol {rtol:g}  atol {atol:g}  (max rel = "
        "max |a-b| / max(|b|, atol))")
  if bad:
    verdict = (f"MISMATCH in {len(bad)} of {len(rows)} gradients: "
               f"{', '.join(bad)}")
  else:
    verdict = f"all {len(rows)} gradients match"
  print(f"verdict:            {verdict}")
  if checkpointing is not None:
    print(f"\ncheckpoints={opts.checkpoints}: {checkpointing['text']}")
  if explanations:
    print("\nwhy gradients are None (or zero):")
    for e in explanations:
      print(f"  {e['x']}: {e['text']}")
  result = {
      "model": model, "source": sources.chosen(opts) or "model",
      "forward_ops": forward_ops, "tf_version": tf.__version__,
      "tfgrad_version": tfgrad.__version__, "rtol": rtol, "atol": atol,
      "rows": rows, "verdict": verdict, "ok": not bad,
      "engines": {
          "tfgrad": {"ops": len(ours_ops), "dead_ops": len(dead["tfgrad"]),
                     "ms": ours_s * 1e3},
          "stock": {"ops": len(stock_ops), "dead_ops": len(dead["stock"]),
                    "ms": stock_s * 1e3}},
      "explanations": explanations,
      "checkpoints": checkpointing,
  }
  if opts.json:
    common.write_json(opts.json, result)
  if opts.markdown:
    common.write_text(opts.markdown, markdown(result))
  return 1 if bad else 0


def main(argv=None):
  """Console entry point: defines the flags, parses argv, runs."""
  common.run_tool(__doc__, define_flags, run, argv)


if __name__ == "__main__":
  main()
