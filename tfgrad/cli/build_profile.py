"""Where the construction time of one gradient call goes, per added op.

`profile(build, grad_fn)` builds a model in a fresh graph, calls `grad_fn`
once under `cProfile` and sorts every function's own time (not counting
the functions it calls) into the parts of building an op:

    C API          the TF C API calls (TF_NewOperation, TF_AddInput, ...,
                   TF_FinishOperation) and the creation stack trace
    wrapping       Python Operation and Tensor objects for new ops
                   (Operation._from_c_op, Tensor construction, ...)
    names          unique_name and name-scope string work
    scopes         name scopes, control dependencies, attribute scopes,
                   the engine's per-op scope objects
    colocation     colocation stacks and `_class`/device placement
    op assembly    emit's argument and attribute handling and the lean
                   create_op path around the C API calls (for stock: TF's
                   generated op wrappers and op_def_library)
    TF reads       reading existing ops (inputs, outputs, attributes,
                   shapes, dtypes, NodeDefs)
    rules          the gradient rules' own Python (tfgrad's ops/, TF's
                   *_grad.py)
    walk           the engine: reachability, pending counts, the queue,
                   handing gradients on, rule look-up, aggregation
                   (tfgrad/, or stock's gradients_util)
    other          the rest (TF's generated wrappers and stock's engine,
                   for the stock column)

Built-in functions (isinstance, dict.get, ...) other than the C API are
charged to the parts that called them, in proportion to their calls'
time. cProfile slows Python code more than C code, so the shares are of
profiled time; `per_op_us` scales them to the unprofiled build time the
caller measured.
"""

import cProfile
import collections
import gc
import pstats

import tensorflow as tf

PARTS = ("C API", "wrapping", "names", "scopes", "colocation", "op assembly",
         "TF reads", "rules", "walk", "other")

# (part, file suffix or None, function names or None = any), first match
_TF_FRAMEWORK = "tensorflow/python/framework/"
_RULES = (
    ("C API", "~", ("TF_", "_tf_stack", "GetOperationInputs",
                    "_pywrap_tf_session", "extract_stack")),
    ("names", None, ("unique_name", "name_from_scope_name", "_name_stack",
                     "get_name_scope")),
    ("colocation", None, ("colocation_groups", "_colocate_with_for_gradient",
                          "colocate_with", "_snapshot_colocation_stack_metadata",
                          "_ColocationTarget", "placement", "_lean_placement",
                          "colocation_device", "_colocation_dict",
                          "_apply_device_functions", "_add_device_to_stack")),
    ("wrapping", _TF_FRAMEWORK, ("_from_c_op", "_init", "__init__",
                                 "_create_op_from_tf_operation",
                                 "_create_op_helper", "_add_new_tf_operations",
                                 "_record_op_seen_by_control_dependencies",
                                 "_set_device_from_string",
                                 "_add_op", "_create_op_internal",
                                 "_get_tensor_by_tf_output",
                                 "_create_with_tf_output", "__new__")),
    ("wrapping", "tfgrad/tf_compat.py", ("_wrap_c_op",)),
    ("scopes", None, ("name_scope", "control_dependencies",
                      "_control_dependencies_for_inputs", "_attr_scope",
                      "__enter__", "__exit__", "_mutation_lock", "helper",
                      "xla_attr_scope", "op_grad_scope", "_original_op",
                      "colocated", "nullcontext", "_get_control_flow_context",
                      "acquire", "release", "_another_group_active",
                      "_check_not_finalized", "building_in", "get")),
    ("walk", "tensorflow/python/ops/gradients_util.py", None),
    ("walk", "tensorflow/python/ops/control_flow_state.py", None),
    ("rules", "_grad.py", None),
    ("op assembly", "tensorflow/python/ops/", None),
    ("op assembly", "tensorflow/python/framework/op_def_library", None),
    ("op assembly", "tfgrad/emit.py", None),
    ("op assembly", "tfgrad/tf_compat.py", ("create_op", "_create_op_lean",
                                            "_serialized", "_lean_path_applies",
                                            "attr_value", "keep_serialized")),
    ("TF reads", _TF_FRAMEWORK, None),
    ("rules", "ops/", None),
    ("walk", "tfgrad/", None),
)


def part_of(filename, function):
  """The part (one of PARTS) charged with a function's own time."""
  for part, where, names in _RULES:
    if where == "~":
      if filename != "~" or not any(n in function for n in names):
        continue
      return part
    if where is not None and where not in filename:
      continue
    if names is None or any(function == n or function.startswith(n + " ")
                            or (n[0].isupper() and n in function)
                            for n in names):
      return part
  return "other"


def _key_part(key):
  filename, _, function = key
  if filename == "~":
    return part_of("~", function)
  return part_of(filename.replace("\\", "/"), function)


def breakdown(stats):
  """Seconds per part from a `pstats.Stats`: own time of each function,
  builtins other than the C API split among their callers' parts."""
  seconds = collections.Counter()
  raw = stats.stats  # key -> (cc, nc, tt, ct, callers)
  for key, (_, _, tt, _, callers) in raw.items():
    part = _key_part(key)
    if key[0] != "~" or part == "C API" or not callers:
      seconds[part] += tt
      continue
    # a builtin: split its time by the time each caller spent in it
    shares = {c: v[2] for c, v in callers.items()}
    total = sum(shares.values())
    for caller, share in shares.items():
      caller_part = _key_part(caller)
      seconds[caller_part] += tt * (share / total if total else
                                    1 / len(shares))
  return {p: seconds.get(p, 0.0) for p in PARTS}


def profile(build, grad_fn):
  """Builds `build()` -> (ys, xs) in a fresh graph and calls
  `grad_fn(ys, xs)` under cProfile; returns (seconds per part, ops
  added)."""
  graph = tf.Graph()
  with graph.as_default():
    ys, xs = build()
    before = len(graph.get_operations())
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    grad_fn(ys, xs)
    profiler.disable()
    added = len(graph.get_operations()) - before
  return breakdown(pstats.Stats(profiler)), added


def per_op_us(seconds, build_ms, ops):
  """`seconds` per part as microseconds per added op of an unprofiled
  build of `build_ms` milliseconds (shares of the profiled total)."""
  total = sum(seconds.values())
  if not total or not ops:
    return {p: None for p in seconds}
  return {p: 1e3 * build_ms * (s / total) / ops for p, s in seconds.items()}
