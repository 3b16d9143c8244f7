r"""Differential fuzzer: random TF programs through tfgrad and stock TF.

    python -m tools.fuzz --cases=5000 --seed=1000
    python tools/fuzz.py --cases=200 --modes=function --families=reduce,gather
    python -m tools.fuzz --rules_module=my_pkg.my_rules --families=rules_module

Each case is a seeded random program (`tools/fuzz_programs.py`): a few ops
from several families (elementwise math with domains, broadcasting,
reductions, matmul/batch matmul/conv2d, gathers, resource variables as xs,
placeholders with unknown dims, complex dtypes with explicit grad_ys,
stop_gradients), differentiated with a random aggregation method and
unconnected mode, at order 1 or 2 (the gradient of the reduce_sum of the
first gradients). For each mode (`--modes`: a `tf.Graph` run by a Session,
or inside a `tf.function`) the program is built twice, in separate graphs,
and differentiated once by `tfgrad.gradients` and once by `tf.gradients`.
Compared (`tools/fuzz_runner.py`): exception type, None pattern, Tensor vs
IndexedSlices, dtype, static shape (tfgrad's must be at least as specific
as stock's) and values (tolerance by dtype).

A mismatch is shrunk (drop ys/xs/options, replace ops by constants or by
their operand, turn inputs into constants, lower ranks) to a small program
that still mismatches, and written to --repro_dir as a standalone script
that builds the graph, runs both engines, prints both and asserts. One line
per mismatch, then a summary line (cases, op kinds and TF op types covered,
mismatches). Mismatches in `fuzz_lib.EXPLAINED` (deliberate differences
listed in the README, each with its reason) are reported but do not fail;
exit status 1 when any other mismatch is found.

Fuzzing your own rules: `--rules_module=pkg.mod` imports the module before
fuzzing, so its `tfgrad.RegisterGradient` rules are in effect for tfgrad
while stock TF keeps its own registered gradients for the same op types
(or names given to `gradient_override_map`). So that programs contain the
op types, the module may define `FUZZ_OPS`, a list of dicts describing
shape-preserving elementwise ops:

    FUZZ_OPS = [dict(name="my_square", template="rules.my_square({0})",
                     arity=1, dtypes=("float32", "float64"), positive=False)]

`template` is Python source with `{0}`, `{1}` for the operands, where
`rules` is the module itself; `positive=True` asks for positive operands
(the last operand, for arity 2). These ops form the family `rules_module`,
which is enabled by default when the module defines FUZZ_OPS. Repro scripts
import the module too.
"""

import json
import os
import sys
import time

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import tensorflow as tf

import tfgrad
from tools import fuzz_lib
from tools import fuzz_programs

FLAGS = flags.FLAGS
flags.DEFINE_integer("seed", 0, "Seed of the first case; case k uses seed+k.")
flags.DEFINE_integer("cases", 100, "Number of programs.")
flags.DEFINE_list("modes", ["graph", "function"],
                  "graph (tf.Graph + Session) and/or function (tf.function).")
flags.DEFINE_bool("rotate_modes", False,
                  "Run each case in one mode only, taking --modes in turn "
                  "(halves the time of a mixed slice).")
flags.DEFINE_list("families", None, "Program families to draw from "
                  f"(default: all): {', '.join(fuzz_programs.FAMILIES)}, "
                  "and rules_module with --rules_module.")
flags.DEFINE_list("order", ["1", "2"], "Gradient orders to draw from.")
flags.DEFINE_integer("max_ops", 5, "Most ops a program starts with.")
flags.DEFINE_string("repro_dir", None,
                    "Where shrunk repro scripts go (default: none written).")
flags.DEFINE_bool("shrink", True, "Shrink mismatching programs.")
flags.DEFINE_bool("stop_on_first", False,
                  "Stop at the first unexplained mismatch.")
flags.DEFINE_string("json", None, "Write a JSON summary to this path.")
flags.DEFINE_string("rules_module", None,
                    "Module imported before fuzzing (its tfgrad rules are "
                    "fuzzed against TF's; see the docstring for FUZZ_OPS).")


def _validate_flags():
  bad_modes = set(FLAGS.modes) - {"graph", "function"}
  if bad_modes:
    raise app.UsageError(f"unknown --modes {sorted(bad_modes)}")
  orders = [int(o) for o in FLAGS.order]
  if set(orders) - {1, 2}:
    raise app.UsageError("--order takes 1 and/or 2")
  return orders


def main(argv):
  del argv
  if tf.gradients is tfgrad.gradients:
    raise app.UsageError("tfgrad is installed over tf.gradients; the stock "
                         "engine is not reachable")
  orders = _validate_flags()
  rules = fuzz_lib.load_rules(FLAGS.rules_module)
  known = fuzz_lib.default_families(rules)
  families = FLAGS.families or known
  unknown = set(families) - set(known)
  if unknown:
    raise app.UsageError(f"unknown --families {sorted(unknown)}; choose "
                         f"from {', '.join(known)}")
  options = fuzz_lib.Options(
      modes=tuple(FLAGS.modes), families=tuple(families), orders=orders,
      max_ops=FLAGS.max_ops, rotate_modes=FLAGS.rotate_modes,
      shrink=FLAGS.shrink, repro_dir=FLAGS.repro_dir,
      stop_on_first=FLAGS.stop_on_first, rules=rules,
      rules_name=FLAGS.rules_module)
  start = time.perf_counter()
  report = fuzz_lib.fuzz(FLAGS.seed, FLAGS.cases, options)
  seconds = time.perf_counter() - start
  print(report.summary() + f" ({seconds:.1f} s)")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(dict(seed=FLAGS.seed, cases=report.cases, runs=report.runs,
                     modes=FLAGS.modes, families=families, seconds=seconds,
                     op_kinds=sorted(report.kinds),
                     op_types=sorted(report.types),
                     mismatches=report.mismatches,
                     explained=report.explained), f, indent=1)
  return 1 if report.mismatches else 0


if __name__ == "__main__":
  app.run(main)
