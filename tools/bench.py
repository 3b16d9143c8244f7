r"""Benchmarks gradient construction with tfgrad against stock tf.gradients.

    python tools/bench.py                         # every model, 5 repeats
    python tools/bench.py --quick --repeats=3     # small sizes, a minute
    python tools/bench.py --models=mlp_100,fanout_1000 --json=bench.json

For each model and engine, every repeat builds the model in a fresh graph,
calls the engine once and measures: construction time, ops added, dead ops
(added ops from which no returned gradient is reachable), and, over
--run_repeats Session runs after a warm-up (the two engines' runs
interleaved), the run time and peak CPU allocator memory of each run of the
gradient tensors (TF's BFC CPU allocator is switched on for this, unless
TF_CPU_ALLOCATOR_USE_BFC is set). Engines alternate which goes first.
Reported: medians over repeats of ops, build time and dead ops; medians over
all runs of run time and peak memory; the build-time and run-time ratios as
medians of paired ratios (the two engines' builds of one repeat, and
back-to-back runs), which cancel the machine's drift in speed; the cost of
one trivial op created through the graph's own constructor (the floor) and
each engine's cost per added op against it; and scaling exponents between
model sizes.
The JSON output adds the quartiles of run time, peak memory and the two
ratios.
"""

import gc
import json
import math
import os
import statistics
import sys
import time

# TF's default CPU allocator keeps no statistics; its BFC allocator does, so
# peak memory is measurable. Both engines run under the same allocator.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import tensorflow as tf

import tfgrad
from tfgrad import tf_compat
from tools import models

FLAGS = flags.FLAGS
flags.DEFINE_list("models", None,
                  "Subset of model configurations to run (default: all).")
flags.DEFINE_bool("quick", False, "Smaller sizes of the large models.")
flags.DEFINE_integer("repeats", 5, "Measurements per model and engine.")
flags.DEFINE_integer("run_repeats", 20,
                     "Timed Session runs per repeat and engine (after a "
                     "warm-up), interleaved between the engines.")
flags.DEFINE_bool("run", True,
                  "Measure the gradient graph's run time and peak memory "
                  "(on every repeat, the engines' runs interleaved).")
flags.DEFINE_enum("clock", "thread", ["thread", "wall", "cpu"],
                  "Construction timer: thread = time.thread_time, the CPU "
                  "time of the building thread alone (construction is "
                  "single-threaded; TF's thread pools, which keep spinning "
                  "for a while after a Session run, are not charged to it); "
                  "wall = time.perf_counter; cpu = time.process_time (all "
                  "threads of the process).")
flags.DEFINE_bool("strict", False, "tfgrad in strict mode (no TF fallback).")
flags.DEFINE_string("json", None, "Write the results to this path.")

# name -> (builder, sizes, quick sizes; None = same as full)
_CONFIGS = {
    "mlp_10": ("mlp", dict(depth=10, width=64), None),
    "mlp_100": ("mlp", dict(depth=100, width=32, batch=16), None),
    "mlp_1000": ("mlp", dict(depth=1000, width=16, batch=8),
                 dict(depth=300, width=16, batch=8)),
    "cnn": ("cnn", dict(), None),
    "transformer_1": ("transformer", dict(blocks=1), None),
    "transformer_16": ("transformer", dict(blocks=16),
                       dict(blocks=4)),
    "embedding": ("embedding", dict(), None),
    "fanout_100": ("fanout", dict(n=100), None),
    "fanout_1000": ("fanout", dict(n=1000), dict(n=300)),
    "many_ys_1000x1000": ("many_ys", dict(n_ys=1000, n_xs=1000),
                          dict(n_ys=200, n_xs=200)),
    "while_rnn": ("while_rnn", dict(steps=16), None),
    "nested_function": ("nested_function", dict(), None),
}
# (family, size parameter, smaller config, larger config)
_SCALING = (("mlp", "depth", "mlp_100", "mlp_1000"),
            ("fanout", "n", "fanout_100", "fanout_1000"))


def _sizes(config):
  _, sizes, quick = _CONFIGS[config]
  return quick if FLAGS.quick and quick is not None else sizes


def _tfgrad(ys, xs):
  return tfgrad.gradients(ys, xs, strict=FLAGS.strict)


def _stock(ys, xs):
  return tf.gradients(ys, xs)


ENGINES = {"tfgrad": _tfgrad, "stock": _stock}


def _log(message):
  print(message, file=sys.stderr, flush=True)


# ----- One measurement -----


def _tensors_of(grads):
  """Graph tensors making up the gradients (IndexedSlices components)."""
  out = []
  for g in grads:
    if isinstance(g, tf.IndexedSlices):
      out.extend(t for t in (g.values, g.indices, g.dense_shape)
                 if t is not None)
    elif g is not None:
      out.append(g)
  return out


def dead_ops(added, grads):
  """Ops in `added` from which no tensor of `grads` is reachable. The walk
  goes through ops that were there before, too: a gradient may feed the
  forward graph (the accumulators a While gradient adds as inputs to the
  forward loop, whose outputs it reads)."""
  reached, stack = set(), [t.op for t in _tensors_of(grads)]
  while stack:
    op = stack.pop()
    if op in reached:
      continue
    reached.add(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return len(set(added) - reached)


def _session(graph, fetches):
  with graph.as_default():
    init = tf.compat.v1.global_variables_initializer()
  sess = tf.compat.v1.Session(graph=graph)
  sess.run(init)
  sess.run(fetches)  # warm-up: kernels and constants are created here
  return sess


def run_both(built):
  """Run time and peak memory of each engine's gradient graph. `built` maps
  engine -> (graph, grads); returns engine -> dict with, per timed run,
  `run_s` (seconds) and `peaks` (peak allocator bytes, reset just before
  the run), the engines' runs interleaved (one of each in turn,
  --run_repeats times after a warm-up, so that both see the same machine
  load and entry i of one ran right beside entry i of the other).

  One run's peak depends on the order in which the executor happens to run
  independent ops: it moves by tens of percent from run to run, and from
  session to session even with one inter-op thread (loop bodies run on
  their own), so only a median over many runs and sessions compares two
  graphs."""
  sessions = {}
  for engine, (graph, grads) in built.items():
    fetches = _tensors_of(grads)
    if not fetches:
      return {engine: {} for engine in built}
    sessions[engine] = (_session(graph, fetches), fetches)
  stats = {engine: {"run_s": [], "peaks": []} for engine in sessions}
  for _ in range(FLAGS.run_repeats):
    for engine, (sess, fetches) in sessions.items():
      tf.config.experimental.reset_memory_stats("CPU:0")
      start = time.perf_counter()
      sess.run(fetches)
      stats[engine]["run_s"].append(time.perf_counter() - start)
      stats[engine]["peaks"].append(
          tf.config.experimental.get_memory_info("CPU:0")["peak"])
  for sess, _ in sessions.values():
    sess.close()
  return stats


_CLOCKS = {"thread": time.thread_time, "wall": time.perf_counter,
           "cpu": time.process_time}


def _clock():
  return _CLOCKS[FLAGS.clock]()


def measure(config, engine):
  """Builds `config` in a fresh graph and differentiates it once; returns
  the measurements and (graph, grads) for `run_both`."""
  family, _, _ = _CONFIGS[config]
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = models.build(family, **_sizes(config))
    before = len(graph.get_operations())
    gc.collect()  # earlier graphs' garbage is not charged to this build
    start = _clock()
    grads = ENGINES[engine](ys, xs)
    build_s = _clock() - start
    added = graph.get_operations()[before:]
  result = {"ops": len(added), "build_ms": 1e3 * build_s,
            "dead_ops": dead_ops(added, grads), "forward_ops": before}
  return result, (graph, grads)


def floor_us(count=2000):
  """Microseconds to create one trivial op (Identity) through the graph's
  own op constructor, the lowest-level path TF offers in Python."""
  best = math.inf
  for _ in range(3):
    graph = tf.Graph()
    with graph.as_default():
      c = tf.constant(1.0)
      gc.collect()
      start = _clock()
      for _ in range(count):
        tf_compat.create_op(graph, "Identity", [c], None, None, None)
      best = min(best, _clock() - start)
  return 1e6 * best / count


# ----- Aggregation and report -----


def _median(samples, key):
  values = [s[key] for s in samples if s.get(key) is not None]
  return statistics.median(values) if values else None


def _ratio(a, b):
  return a / b if a is not None and b else None


def _pooled(samples, key):
  """One engine's per-run readings over all repeats, in round order."""
  return [v for s in samples for v in s.get(key, ())]


def _quartiles(values):
  if len(values) < 2:
    return None
  q1, _, q3 = statistics.quantiles(values, n=4)
  return [q1, q3]


def summarise(config, samples):
  """Medians over repeats of ops, build time and dead ops; run time and peak
  memory pooled over every timed run of every repeat. The build-time and
  run-time ratios are medians of paired ratios (tfgrad's build over stock's
  build of the same repeat, tfgrad's run over stock's run right beside
  it): this machine's speed drifts by tens of percent within a minute, for
  both engines alike, and pairing cancels that drift."""
  quick = FLAGS.quick and _CONFIGS[config][2] is not None
  row = {"model": config, "label": config + ("*" if quick else ""),
         "sizes": _sizes(config)}
  for engine in ENGINES:
    for key in ("ops", "build_ms", "dead_ops", "forward_ops"):
      row[f"{key}_{engine}"] = _median(samples[engine], key)
    run_ms = [1e3 * t for t in _pooled(samples[engine], "run_s")]
    peaks = _pooled(samples[engine], "peaks")
    row[f"run_ms_{engine}"] = statistics.median(run_ms) if run_ms else None
    row[f"run_ms_quartiles_{engine}"] = _quartiles(run_ms)
    row[f"peak_bytes_{engine}"] = statistics.median(peaks) if peaks else None
    row[f"peak_bytes_quartiles_{engine}"] = _quartiles(peaks)
    row[f"run_count_{engine}"] = len(run_ms)
  for key in ("ops", "peak_bytes"):
    row[f"{key}_ratio"] = _ratio(row[f"{key}_tfgrad"], row[f"{key}_stock"])
  builds = [(a["build_ms"], b["build_ms"])
            for a, b in zip(samples["tfgrad"], samples["stock"])]
  runs = zip(_pooled(samples["tfgrad"], "run_s"),
             _pooled(samples["stock"], "run_s"))
  for key, pairs in (("build_ms", builds), ("run_ms", runs)):
    ratios = [a / b for a, b in pairs if b]
    row[f"{key}_ratio"] = statistics.median(ratios) if ratios else None
    row[f"{key}_ratio_quartiles"] = _quartiles(ratios)
  return row


def scaling(rows):
  """log(t2/t1)/log(n2/n1) between the two configs of each _SCALING entry
  (both must have been run), per engine, for build time and ops."""
  by_name = {r["model"]: r for r in rows}
  out = {}
  for family, param, small, large in _SCALING:
    if small not in by_name or large not in by_name:
      continue
    r1, r2 = by_name[small], by_name[large]
    n1, n2 = r1["sizes"][param], r2["sizes"][param]
    entry = {"from": f"{small} ({param}={n1})", "to": f"{large} ({param}={n2})"}
    for engine in ENGINES:
      for key in ("build_ms", "ops"):
        a, b = r1[f"{key}_{engine}"], r2[f"{key}_{engine}"]
        entry[f"{key}_{engine}"] = (math.log(b / a) / math.log(n2 / n1)
                                    if a and b else None)
    out[family] = entry
  return out


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def print_table(rows, floor):
  print(f"construction timer: {FLAGS.clock} clock; medians over "
        f"{FLAGS.repeats} repeats (build ratio: median of the repeats' "
        "ratios); run time: median over "
        f"{FLAGS.repeats}x{FLAGS.run_repeats} interleaved runs (ratio: median "
        "of back-to-back ratios); peak mem: median of the same runs' peaks")
  header = ["model", "ops stock", "ops tfgrad", "ratio", "build ms stock",
            "build ms tfgrad", "ratio", "dead stock", "dead tfgrad",
            "run ms stock", "run ms tfgrad", "ratio", "peak mem ratio",
            "us/op stock", "us/op tfgrad"]
  lines = []
  for r in rows:
    per_op = {e: (1e3 * r[f"build_ms_{e}"] / r[f"ops_{e}"]
                  if r[f"ops_{e}"] else None) for e in ENGINES}
    lines.append([
        r["label"], _fmt(r["ops_stock"], ".0f"), _fmt(r["ops_tfgrad"], ".0f"),
        _fmt(r["ops_ratio"], ".2f"), _fmt(r["build_ms_stock"], ".1f"),
        _fmt(r["build_ms_tfgrad"], ".1f"), _fmt(r["build_ms_ratio"], ".2f"),
        _fmt(r["dead_ops_stock"], ".0f"), _fmt(r["dead_ops_tfgrad"], ".0f"),
        _fmt(r["run_ms_stock"], ".2f"), _fmt(r["run_ms_tfgrad"], ".2f"),
        _fmt(r["run_ms_ratio"], ".2f"), _fmt(r["peak_bytes_ratio"], ".2f"),
        _fmt(per_op["stock"], ".0f"),
        _fmt(per_op["tfgrad"], ".0f")])
  widths = [max(len(x[i]) for x in [header, *lines])
            for i in range(len(header))]
  fmt = lambda cells: "  ".join(  # pylint: disable=g-long-lambda
      [cells[0].ljust(widths[0])] +
      [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])
  print(fmt(header))
  print("-" * len(fmt(header)))
  for cells in lines:
    print(fmt(cells))
  quick = [r for r in rows if r["label"] != r["model"]]
  if quick:
    print("* --quick sizes: " + "; ".join(
        f"{r['model']} " + ", ".join(f"{k}={v}" for k, v in r["sizes"].items())
        for r in quick))
  print()
  print(f"floor: {floor:.1f} us per trivial op (Identity through the graph's "
        "op constructor); "
        "per-added-op cost in floors:")
  for r in rows:
    costs = []
    for e in ENGINES:
      if r[f"ops_{e}"]:
        costs.append(f"{e} {1e3 * r[f'build_ms_{e}'] / r[f'ops_{e}'] / floor:.1f}x")
    print(f"  {r['label']:<20} " + "   ".join(costs))


def print_scaling(exponents):
  if not exponents:
    return
  print()
  print("scaling exponents, log(t2/t1)/log(n2/n1) (1.0 = linear):")
  for family, e in exponents.items():
    print(f"  {family:<8} {e['from']} -> {e['to']}:  build ms: stock "
          f"{_fmt(e['build_ms_stock'], '.2f')}, tfgrad "
          f"{_fmt(e['build_ms_tfgrad'], '.2f')};  ops: stock "
          f"{_fmt(e['ops_stock'], '.2f')}, tfgrad "
          f"{_fmt(e['ops_tfgrad'], '.2f')}")


def main(argv):
  del argv
  configs = FLAGS.models or list(_CONFIGS)
  unknown = [c for c in configs if c not in _CONFIGS]
  if unknown:
    raise app.UsageError(f"unknown --models {unknown}; choose from "
                         f"{', '.join(_CONFIGS)}")
  if tf.gradients is tfgrad.gradients:
    raise app.UsageError("tfgrad is installed over tf.gradients; the stock "
                         "engine is not reachable")
  _log("warming up")
  for engine in ENGINES:
    measure("mlp_10", engine)  # warm-up
  floor = floor_us()
  rows = []
  for config in configs:
    samples = {engine: [] for engine in ENGINES}
    for r in range(FLAGS.repeats):
      order = list(ENGINES) if r % 2 == 0 else list(reversed(ENGINES))
      built = {}
      for engine in order:
        result, built[engine] = measure(config, engine)
        samples[engine].append(result)
      if FLAGS.run:
        for engine, stats in run_both(built).items():
          samples[engine][-1].update(stats)
      del built
      _log(f"{config}: repeat {r + 1}/{FLAGS.repeats}: " + ", ".join(
          f"{e} {samples[e][-1]['build_ms']:.1f} ms" for e in ENGINES))
    rows.append(summarise(config, samples))
  exponents = scaling(rows)
  print_table(rows, floor)
  print_scaling(exponents)
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump({"tf_version": tf.__version__,
                 "tfgrad_version": tfgrad.__version__,
                 "quick": FLAGS.quick, "repeats": FLAGS.repeats,
                 "strict": FLAGS.strict, "floor_us": floor,
                 "models": rows, "scaling": exponents}, f, indent=1)
    _log(f"wrote {FLAGS.json}")
  return 0


if __name__ == "__main__":
  app.run(main)
