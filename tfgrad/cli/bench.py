r"""Benchmarks gradient construction with tfgrad against stock tf.gradients.

    tfgrad-bench                                  # every model, 5 repeats
    tfgrad-bench --quick --repeats=3              # small sizes, a minute
    tfgrad-bench --models=mlp_100,fanout_1000 --json=bench.json
    tfgrad-bench --saved_model=DIR --markdown=bench.md   # your own model
    tfgrad-bench --quick --plot=scaling.png       # needs tfgrad[plot]
    tfgrad-bench --models=mlp_1000 --creation_floor   # engine vs op creation

(`python -m tfgrad.bench` and, in a checkout, `python tools/bench.py` are
the same tool; the model sources are those of tfgrad-compare.)

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

# pylint: disable=g-import-not-at-top,wrong-import-position
import contextlib
import dataclasses

from absl import flags
import tensorflow as tf

import tfgrad
from tfgrad import tf_compat
from tfgrad.cli import common
from tfgrad.cli import models
from tfgrad.cli import sources
from tfgrad.cli.common import UserError


def define_flags(fv):
  """Adds the tool's flags to `fv` (called by `main`, or by a caller that
  runs the tool in-process with its own FlagValues)."""
  flags.DEFINE_list("models", None,
                    "Subset of model configurations to run (default: all).",
                    flag_values=fv)
  flags.DEFINE_bool("quick", False, "Smaller sizes of the large models.",
                    flag_values=fv)
  flags.DEFINE_integer("repeats", 5, "Measurements per model and engine.",
                       flag_values=fv)
  flags.DEFINE_integer("run_repeats", 20,
                       "Timed Session runs per repeat and engine (after a "
                       "warm-up), interleaved between the engines.",
                       flag_values=fv)
  flags.DEFINE_bool("run", True,
                    "Measure the gradient graph's run time and peak memory "
                    "(on every repeat, the engines' runs interleaved).",
                    flag_values=fv)
  flags.DEFINE_enum("clock", "thread", ["thread", "wall", "cpu"],
                    "Construction timer: thread = time.thread_time, the CPU "
                    "time of the building thread alone (construction is "
                    "single-threaded; TF's thread pools, which keep "
                    "spinning for a while after a Session run, are not "
                    "charged to it); wall = time.perf_counter; cpu = "
                    "time.process_time (all threads of the process).",
                    flag_values=fv)
  flags.DEFINE_bool("strict", False,
                    "tfgrad in strict mode (no TF fallback).", flag_values=fv)
  flags.DEFINE_string("json", None, "Write the results to this path.",
                      flag_values=fv)
  flags.DEFINE_string("markdown", None,
                      "Write the table as markdown to this path.",
                      flag_values=fv)
  flags.DEFINE_string("plot", None,
                      "Write a figure (.png or .svg; needs matplotlib, the "
                      "extra tfgrad[plot]): build time and ops against "
                      "model size, log-log, with fitted exponents; peak "
                      "memory per model.", flag_values=fv)
  flags.DEFINE_bool("profile", False,
                    "Also print where each engine's construction time goes, "
                    "in microseconds and floors per added op (one extra "
                    "build per model and engine under cProfile; see "
                    "tfgrad/cli/build_profile.py).", flag_values=fv)
  flags.DEFINE_bool("creation_floor", False,
                    "Also report what making each engine's added ops alone "
                    "costs, per op: the same ops made again in a fresh "
                    "build of the model, one by one through tfgrad's lean "
                    "op creation and in one GraphDef import, with nothing "
                    "to walk or decide (see tfgrad/cli/creation_floor.py); "
                    "an engine's build time less that is its own work.",
                    flag_values=fv)
  flags.DEFINE_bool("heap", False,
                    "Also report the Python heap growth per added op of "
                    "each engine's build (tracemalloc: memory allocated "
                    "during the call and still held after it, over ops "
                    "added; one extra build per model and engine).",
                    flag_values=fv)
  flags.DEFINE_bool("progress", True,
                    "Progress bar on stderr (only when it is a terminal).",
                    flag_values=fv)
  sources.define_flags(fv)

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
    "dynamic_rnn_v1": ("dynamic_rnn_v1", dict(steps=100), dict(steps=20)),
    "nested_scan_v1": ("nested_scan_v1", dict(), None),
    "mlp_10000": ("mlp", dict(depth=10000, width=16, batch=8),
                  dict(depth=3000, width=16, batch=8)),
    "fanout_10000": ("fanout", dict(n=10000), dict(n=3000)),
}
# Sizes 10x the largest defaults: run only when named in --models; stock
# is built on the first repeat only (its build takes tens of seconds).
_LARGE = frozenset(["mlp_10000", "fanout_10000"])
# (family, size parameter, smaller config, larger config)
_SCALING = (("mlp", "depth", "mlp_100", "mlp_1000"),
            ("fanout", "n", "fanout_100", "fanout_1000"),
            ("mlp", "depth", "mlp_100", "mlp_10000"),
            ("fanout", "n", "fanout_100", "fanout_10000"))




@dataclasses.dataclass
class Config:
  """One model to measure: its name, how to build it, its sizes."""
  name: str
  builder: sources.Builder
  sizes: dict
  quick: bool = False   # built at --quick sizes smaller than the full ones


def builtin_config(name, quick=False):
  """The Config of built-in model `name` (a key of _CONFIGS)."""
  family, sizes, quick_sizes = _CONFIGS[name]
  smaller = quick and quick_sizes is not None
  sizes = quick_sizes if smaller else sizes
  return Config(name, sources.builtin_builder(family, sizes), sizes, smaller)


def configs(opts):
  """The Configs the flags ask for."""
  source = sources.chosen(opts)
  if source:
    if opts.models:
      raise UserError(f"--models and --{source} are two model sources; "
                      "give one")
    builder = sources.builder(opts)
    return [Config(source, builder, {})]
  names = opts.models or [n for n in _CONFIGS if n not in _LARGE]
  for name in names:
    if name not in _CONFIGS:
      raise common.unknown("model", name, _CONFIGS)
  return [builtin_config(name, opts.quick) for name in names]


def engines(strict=False):
  return {"tfgrad": lambda ys, xs: tfgrad.gradients(ys, xs, strict=strict),
          "stock": tf.gradients}


ENGINES = ("tfgrad", "stock")


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
  """How many ops in `added` no tensor of `grads` depends on."""
  return len(dead_op_set(added, grads))


def dead_op_set(added, grads):
  """Names of the ops in `added` from which no tensor of `grads` is
  reachable. The walk goes through ops that were there before, too: a
  gradient may feed the forward graph (the accumulators a While gradient
  adds as inputs to the forward loop, whose outputs it reads)."""
  reached, stack = set(), [t.op for t in _tensors_of(grads)]
  while stack:
    op = stack.pop()
    if op in reached:
      continue
    reached.add(op)
    stack.extend(t.op for t in op.inputs)
    stack.extend(op.control_inputs)
  return {op.name for op in set(added) - reached}


def _session(graph, fetches, built):
  sess = tf.compat.v1.Session(graph=graph)
  built.init(sess)
  sess.run(fetches, feed_dict=built.feed)  # warm-up: kernels, constants
  return sess


def run_both(built, run_repeats):
  """Run time and peak memory of each engine's gradient graph. `built` maps
  engine -> (graph, grads, sources.Built); returns engine -> dict with, per timed run,
  `run_s` (seconds) and `peaks` (peak allocator bytes, reset just before
  the run), the engines' runs interleaved (one of each in turn,
  `run_repeats` times after a warm-up, so that both see the same machine
  load and entry i of one ran right beside entry i of the other).

  One run's peak depends on the order in which the executor happens to run
  independent ops: it moves by tens of percent from run to run, and from
  session to session even with one inter-op thread (loop bodies run on
  their own), so only a median over many runs and sessions compares two
  graphs."""
  sessions = {}
  for engine, (graph, grads, model) in built.items():
    fetches = _tensors_of(grads)
    if not fetches:
      return {engine: {} for engine in built}
    sessions[engine] = (_session(graph, fetches, model), fetches, model.feed)
  stats = {engine: {"run_s": [], "peaks": []} for engine in sessions}
  for _ in range(run_repeats):
    for engine, (sess, fetches, feed) in sessions.items():
      tf.config.experimental.reset_memory_stats("CPU:0")
      start = time.perf_counter()
      sess.run(fetches, feed_dict=feed)
      stats[engine]["run_s"].append(time.perf_counter() - start)
      stats[engine]["peaks"].append(
          tf.config.experimental.get_memory_info("CPU:0")["peak"])
  for sess, _, _ in sessions.values():
    sess.close()
  return stats


_CLOCKS = {"thread": time.thread_time, "wall": time.perf_counter,
           "cpu": time.process_time}


def measure(config, engine, clock="thread", strict=False):
  """Builds `config` in a fresh graph and differentiates it once with
  `engine`; returns the measurements and (graph, grads, built) for
  `run_both`."""
  graph = tf.Graph()
  family = _CONFIGS.get(config.name, (None,))[0]
  with graph.as_default(), (models.v1_control_flow()
                            if family in models.V1_MODELS
                            else contextlib.nullcontext()):
    built = config.builder.build()
    before = len(graph.get_operations())
    functions_before = tf_compat.library_node_counts(graph)
    gc.collect()  # earlier graphs' garbage is not charged to this build
    start = _CLOCKS[clock]()
    grads = engines(strict)[engine](built.ys, built.xs)
    build_s = _CLOCKS[clock]() - start
    added = graph.get_operations()[before:]
    function_ops = sum(
        n for name, n in tf_compat.library_node_counts(graph).items()
        if name not in functions_before)
  result = {"ops": len(added), "build_ms": 1e3 * build_s,
            "dead_ops": dead_ops(added, grads), "forward_ops": before,
            "function_ops": function_ops}
  return result, (graph, grads, built)


def floor_us(clock="thread", count=2000):
  """Microseconds to create one trivial op (Identity) through the graph's
  own op constructor, the lowest-level path TF offers in Python."""
  best = math.inf
  for _ in range(3):
    graph = tf.Graph()
    with graph.as_default():
      c = tf.constant(1.0)
      gc.collect()
      start = _CLOCKS[clock]()
      for _ in range(count):
        tf_compat.create_op(graph, "Identity", [c], None, None, None)
      best = min(best, _CLOCKS[clock]() - start)
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
  row = {"model": config.name,
         "label": config.name + ("*" if config.quick else ""),
         "sizes": config.sizes}
  for engine in ENGINES:
    for key in ("ops", "build_ms", "dead_ops", "forward_ops",
                "function_ops"):
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
    out[f"{family} {n1}->{n2}"] = entry
  return out


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def print_table(rows, floor, opts):
  print(f"construction timer: {opts.clock} clock; medians over "
        f"{opts.repeats} repeats (build ratio: median of the repeats' "
        "ratios); run time: median over "
        f"{opts.repeats}x{opts.run_repeats} interleaved runs (ratio: median "
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
        cost = f"{e} {1e3 * r[f'build_ms_{e}'] / r[f'ops_{e}'] / floor:.1f}x"
        inner = r.get(f"function_ops_{e}")
        if inner:
          total = r[f"ops_{e}"] + inner
          cost += (f" ({1e3 * r[f'build_ms_{e}'] / total / floor:.1f}x "
                   f"counting the {inner:.0f} ops of new functions)")
        costs.append(cost)
    print(f"  {r['label']:<20} " + "   ".join(costs))


def print_scaling(exponents):
  if not exponents:
    return
  print()
  print("scaling exponents, log(t2/t1)/log(n2/n1) (1.0 = linear):")
  for e in exponents.values():
    print(f"  {e['from']} -> {e['to']}:  build ms: stock "
          f"{_fmt(e['build_ms_stock'], '.2f')}, tfgrad "
          f"{_fmt(e['build_ms_tfgrad'], '.2f')};  ops: stock "
          f"{_fmt(e['ops_stock'], '.2f')}, tfgrad "
          f"{_fmt(e['ops_tfgrad'], '.2f')}")


_MD_HEADER = ["model", "forward ops", "ops stock", "ops tfgrad", "ops ratio",
              "build ms stock", "build ms tfgrad", "build ratio",
              "dead stock", "dead tfgrad", "run ratio", "peak mem ratio"]


def markdown(report):
  """The results as a markdown table, with the run's settings above it."""
  rows = []
  for r in report["models"]:
    rows.append([
        r["label"], _fmt(r["forward_ops_stock"], ".0f"),
        _fmt(r["ops_stock"], ".0f"), _fmt(r["ops_tfgrad"], ".0f"),
        _fmt(r["ops_ratio"], ".2f"), _fmt(r["build_ms_stock"], ".1f"),
        _fmt(r["build_ms_tfgrad"], ".1f"), _fmt(r["build_ms_ratio"], ".2f"),
        _fmt(r["dead_ops_stock"], ".0f"), _fmt(r["dead_ops_tfgrad"], ".0f"),
        _fmt(r["run_ms_ratio"], ".2f"), _fmt(r["peak_bytes_ratio"], ".2f")])
  head = (f"**tfgrad-bench** (TF {report['tf_version']}, tfgrad "
          f"{report['tfgrad_version']}; {report['repeats']} repeats, "
          f"{report['clock']} clock; ratios tfgrad/stock, build and run "
          "ratios as medians of paired ratios)\n\n")
  fits = report.get("fits") or {}
  tail = ""
  if fits:
    tail = "\nFitted exponents against forward ops (log-log): " + "; ".join(
        f"{key.replace('_', ' ')} {_fmt(value, '.2f')}"
        for key, value in fits.items()) + "\n"
  return head + common.markdown_table(_MD_HEADER, rows) + tail


def fit_exponent(sizes, values):
  """Least-squares slope of log(values) against log(sizes); None with
  fewer than two distinct sizes."""
  points = [(math.log(s), math.log(v)) for s, v in zip(sizes, values)
            if s and v]
  if len({p[0] for p in points}) < 2:
    return None
  mx = statistics.fmean(p[0] for p in points)
  my = statistics.fmean(p[1] for p in points)
  num = sum((x - mx) * (y - my) for x, y in points)
  den = sum((x - mx) ** 2 for x, _ in points)
  return num / den


def fits(rows):
  """Exponents of build time and ops against forward ops, per engine."""
  out = {}
  for key in ("build_ms", "ops"):
    for engine in ENGINES:
      usable = [r for r in rows if r[f"forward_ops_{engine}"]
                and r[f"{key}_{engine}"]]
      out[f"{key}_{engine}"] = fit_exponent(
          [r[f"forward_ops_{engine}"] for r in usable],
          [r[f"{key}_{engine}"] for r in usable])
  return out


def plot(report, path):
  """Log-log build time and ops against forward ops, both engines, with
  the fitted exponents in the legends; peak memory per model as bars."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError("--plot needs matplotlib: pip install 'tfgrad[plot]'") \
        from None
  rows, exponents = report["models"], report["fits"]
  figure, axes = pyplot.subplots(1, 3, figsize=(16, 4.8))
  styles = {"stock": ("tab:gray", "s"), "tfgrad": ("tab:blue", "o")}
  for ax, key, title in ((axes[0], "build_ms", "construction time (ms)"),
                         (axes[1], "ops", "ops added")):
    for engine in ENGINES:
      points = sorted((r[f"forward_ops_{engine}"], r[f"{key}_{engine}"])
                      for r in rows if r[f"{key}_{engine}"])
      if not points:
        continue
      color, marker = styles[engine]
      exponent = exponents.get(f"{key}_{engine}")
      label = engine + (f" (exponent {exponent:.2f})"
                        if exponent is not None else "")
      ax.loglog([p[0] for p in points], [p[1] for p in points], marker,
                color=color, label=label)
      if exponent is not None:
        xs = [p[0] for p in points]
        logs = [math.log(p[1]) - exponent * math.log(p[0]) for p in points]
        c = math.exp(statistics.fmean(logs))
        ax.loglog([min(xs), max(xs)], [c * min(xs) ** exponent,
                                       c * max(xs) ** exponent],
                  "-", color=color, alpha=0.6)
    ax.set_xlabel("model size (forward ops)")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
  names = [r["label"] for r in rows]
  width = 0.4
  positions = range(len(names))
  for i, engine in enumerate(("stock", "tfgrad")):
    peaks = [(r[f"peak_bytes_{engine}"] or 0) / 2**20 for r in rows]
    axes[2].bar([p + (i - 0.5) * width for p in positions], peaks, width,
                label=engine, color=styles[engine][0])
  axes[2].set_xticks(list(positions))
  axes[2].set_xticklabels(names, rotation=45, ha="right")
  axes[2].set_ylabel("MiB")
  axes[2].set_title("peak memory of a run (median)")
  axes[2].legend()
  figure.tight_layout()
  try:
    figure.savefig(path)
  except (OSError, ValueError) as e:
    raise UserError(f"--plot: cannot write {path}: {e}") from None
  finally:
    pyplot.close(figure)


def run(opts):
  """Runs the benchmark for parsed flags `opts`; returns the exit status
  (a user's mistake: one line on stderr, status 2)."""
  return common.run_reporting_user_errors("tfgrad-bench", lambda: _run(opts))


def _run(opts):
  if tf.gradients is tfgrad.gradients:
    raise UserError("tfgrad is installed over tf.gradients; the stock "
                    "engine is not reachable")
  if opts.plot and not opts.plot.endswith((".png", ".svg")):
    raise UserError(f"--plot={opts.plot}: the file must end in .png or .svg")
  chosen = configs(opts)
  for engine in ENGINES:
    measure(builtin_config("mlp_10"), engine, opts.clock, opts.strict)
    measure(chosen[0], engine, opts.clock, opts.strict)
  floor = floor_us(opts.clock)
  rows = []
  progress = common.Progress(len(chosen) * opts.repeats, "bench",
                             enabled=opts.progress)
  for config in chosen:
    samples = {engine: [] for engine in ENGINES}
    for r in range(opts.repeats):
      order = list(ENGINES) if r % 2 == 0 else list(reversed(ENGINES))
      built = {}
      for engine in order:
        if engine == "stock" and config.name in _LARGE and r > 0:
          continue
        result, built[engine] = measure(config, engine, opts.clock,
                                        opts.strict)
        samples[engine].append(result)
      if opts.run and len(built) == len(ENGINES):
        for engine, stats in run_both(built, opts.run_repeats).items():
          samples[engine][-1].update(stats)
      done = list(built)
      del built
      progress.step(f"{config.name} " + ", ".join(
          f"{e} {samples[e][-1]['build_ms']:.1f} ms" for e in done))
    rows.append(summarise(config, samples))
  progress.close()
  exponents = scaling(rows)
  print_table(rows, floor, opts)
  print_scaling(exponents)
  profiles = _profiles(chosen, rows, floor, opts) if opts.profile else None
  heap = _heap_growth(chosen, opts) if opts.heap else None
  creation = (_creation_floors(chosen, rows, floor, opts)
              if opts.creation_floor else None)
  report = {"tf_version": tf.__version__, "tfgrad_version": tfgrad.__version__,
            "quick": opts.quick, "repeats": opts.repeats, "clock": opts.clock,
            "strict": opts.strict, "floor_us": floor,
            "source": sources.chosen(opts) or "models",
            "models": rows, "scaling": exponents, "fits": fits(rows)}
  if profiles:
    report["profiles"] = profiles
  if heap:
    report["heap_bytes_per_op"] = heap
  if creation:
    report["creation_floor"] = creation
  if opts.json:
    common.write_json(opts.json, report)
    _log(f"wrote {opts.json}")
  if opts.markdown:
    common.write_text(opts.markdown, markdown(report))
    _log(f"wrote {opts.markdown}")
  if opts.plot:
    plot(report, opts.plot)
    _log(f"wrote {opts.plot}")
  return 0


def heap_bytes_per_op(config, engine, strict=False):
  """Python heap (tracemalloc) allocated during one gradient call on
  `config` and still held after it, per added op."""
  import tracemalloc  # pylint: disable=g-import-not-at-top
  graph = tf.Graph()
  with graph.as_default():
    built = config.builder.build()
    before = len(graph.get_operations())
    gc.collect()
    tracemalloc.start()
    try:
      start = tracemalloc.get_traced_memory()[0]
      grads = engines(strict)[engine](built.ys, built.xs)
      gc.collect()
      held = tracemalloc.get_traced_memory()[0] - start
    finally:
      tracemalloc.stop()
    added = len(graph.get_operations()) - before
  del grads
  return held / added if added else None


def _heap_growth(chosen, opts):
  """--heap: bytes of Python heap per added op, per model and engine."""
  out = {}
  for config in chosen:
    out[config.name] = {e: heap_bytes_per_op(config, e, opts.strict)
                        for e in ENGINES}
  print()
  print("Python heap growth per added op (tracemalloc, held after the "
        "call):")
  for name, per_engine in out.items():
    print(f"  {name:<20} " + "   ".join(
        f"{e} {_fmt(v, '.0f')} B" for e, v in per_engine.items()))
  return out


def _pair_builder(config):
  """(`build()` -> (ys, xs) of `config`'s model, the scope to build and
  differentiate it in): v1 control flow for a v1 model, as in `measure`
  (with v2 on, its loops would be While ops)."""
  def build():
    built = config.builder.build()
    return built.ys, built.xs

  family = _CONFIGS.get(config.name, (None,))[0]
  return build, (models.v1_control_flow() if family in models.V1_MODELS
                 else contextlib.nullcontext())


def creation_floor(config, engine, clock="thread", strict=False):
  """`creation_floor.measure` for `config` and `engine` (a v1 model built
  and differentiated with v1 control flow, as in `measure`): a dict of
  ops and microseconds per op, or the reason the ops cannot be made
  again."""
  from tfgrad.cli import creation_floor as floors  # pylint: disable=g-import-not-at-top
  build, scope = _pair_builder(config)
  with scope:
    try:
      found = floors.measure(build, engines(strict)[engine], _CLOCKS[clock])
    except floors.NotReplayable as e:
      return {"not_replayable": str(e)}
  return {"ops": found.ops, "one_by_one_us": found.one_by_one_us,
          "batch_us": found.batch_us}


def _creation_floors(chosen, rows, floor, opts):
  """--creation_floor: per model and engine, what making the added ops
  alone costs against the engine's median build; printed, and returned
  for the JSON report."""
  out = {}
  print()
  print("creation floor, us per added op: the engine's median build; its "
        "ops made again one by one (lean op creation) and in one GraphDef "
        "import, nothing to decide; the build less the one-by-one floor "
        "(the engine's own work); floors in brackets:")
  width = max(len(f"{c.name}/{e}") for c in chosen for e in ENGINES) + 2
  for config, row in zip(chosen, rows):
    out[config.name] = {}
    for engine in ENGINES:
      found = creation_floor(config, engine, opts.clock, opts.strict)
      ops = row[f"ops_{engine}"]
      build_us = (1e3 * row[f"build_ms_{engine}"] / ops if ops else None)
      found["build_us"] = build_us
      out[config.name][engine] = found
      label = "  " + f"{config.name}/{engine}".ljust(width)
      if "not_replayable" in found:
        print(f"{label}build {_fmt(build_us, '7.1f')}; not replayable: "
              f"{found['not_replayable']}")
        continue
      found["engine_us"] = (build_us - found["one_by_one_us"]
                            if build_us is not None else None)
      cells = [("build", build_us), ("one by one", found["one_by_one_us"]),
               ("batch", found["batch_us"]), ("engine", found["engine_us"])]
      print(label + "  ".join(
          f"{k} {_fmt(v, '7.1f')} "
          f"({_fmt(v / floor if v is not None else None, '.2f')})"
          for k, v in cells))
  return out


def profile_build(config, engine, strict=False):
  """One build of `config` differentiated by `engine` under cProfile
  (`build_profile.profile`): (seconds per part, ops added). A v1 model is
  built and differentiated with v1 control flow, as in `measure` (with v2
  on, its loops would be While ops)."""
  from tfgrad.cli import build_profile  # pylint: disable=g-import-not-at-top
  build, scope = _pair_builder(config)
  with scope:
    return build_profile.profile(build, engines(strict)[engine])


def _profiles(chosen, rows, floor, opts):
  """--profile: per model and engine, microseconds per added op in each
  part of construction (build_profile.PARTS), scaled to the row's median
  unprofiled build time; printed, and returned for the JSON report."""
  from tfgrad.cli import build_profile  # pylint: disable=g-import-not-at-top
  out = {}
  for config, row in zip(chosen, rows):
    for engine in ENGINES:
      seconds, ops = profile_build(config, engine, opts.strict)
      out[f"{config.name}/{engine}"] = build_profile.per_op_us(
          seconds, row[f"build_ms_{engine}"], ops)
  print()
  print("where construction time goes, us per added op (cProfile shares "
        "of each engine's median build; floors in brackets):")
  width = max(len(k) for k in out)
  print(" " * width + "".join(f"{p:>13}" for p in build_profile.PARTS)
        + f"{'total':>13}")
  for key, parts in out.items():
    cells = [f"{v:7.1f} ({v / floor:.2f})" if v is not None else "-"
             for v in parts.values()]
    total = sum(v for v in parts.values() if v is not None)
    print(key.ljust(width) + "".join(f"{c:>13}" for c in cells)
          + f"{total:7.1f} ({total / floor:.2f})".rjust(13))
  return out


def main(argv=None):
  """Console entry point: defines the flags, parses argv, runs."""
  common.run_tool(__doc__, define_flags, run, argv)


if __name__ == "__main__":
  main()
