"""The differential fuzzer's machinery, without flags (`tools/fuzz.py` is
the command line): checking one program with both engines, the list of
explained (deliberate) differences, shrinking, repro scripts and the
fuzzing loop.
"""

import dataclasses
import importlib
import inspect
import os

import numpy as np
import tensorflow as tf

import tfgrad
from tools import fuzz_programs
from tools import fuzz_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----- Explained mismatches -----


@dataclasses.dataclass
class Explained:
  """A deliberate difference from stock TF (README, "Differences from
  stock TF"): `applies(program, mode, rules, ours, stock, problems)` says
  whether a mismatch is this one."""
  name: str
  reason: str
  applies: object


def _complex_xlogy_xdivy_only(program, mode, rules, ours, stock, problems):
  """Only values differ, the program has a complex Xlogy or Xdivy, and the
  same program with each of them written as x * log(y) or x / y (equal
  values for x != 0, which generated inputs are) shows no mismatch."""
  del ours, stock
  swaps = {"xlogy": "xlogy_as_mul_log", "xdivy": "xdivy_as_div"}
  complex_ops = [i for i, n in enumerate(program.nodes)
                 if n.op in swaps and n.dtype.startswith("complex")]
  if not complex_ops or {c for c, _ in problems} != {"values"}:
    return False
  variant = program.copy()
  for i in complex_ops:
    variant.nodes[i].op = swaps[variant.nodes[i].op]
  return not check(variant, mode, rules).problems


EXPLAINED = [
    Explained(
        "complex_xlogy_xdivy",
        "for complex inputs stock TF's Xlogy/Xdivy rules return grad * "
        "df/dx where TF's convention (and its Mul, Log and RealDiv rules) "
        "is grad * conj(df/dx); tfgrad conjugates",
        _complex_xlogy_xdivy_only),
    Explained(
        "invalid_aggregation_method",
        "tfgrad raises ValueError for an invalid aggregation_method always; "
        "TF raises only once some gradient actually needs aggregating",
        lambda p, mode, rules, ours, stock, problems: (
            p.aggregation == "INVALID" and ours.error == "ValueError"
            and stock.error is None)),
]


def explain(program, mode, rules, ours, stock, problems):
  """The Explained entry covering this mismatch, or None."""
  for entry in EXPLAINED:
    if entry.applies(program, mode, rules, ours, stock, problems):
      return entry
  return None


# ----- Running one program -----


@dataclasses.dataclass
class Result:
  ours: fuzz_runner.Outcome
  stock: fuzz_runner.Outcome
  problems: list
  explained: object = None

  @property
  def unexplained(self):
    return bool(self.problems) and self.explained is None


def namespace(program, rules=None):
  """Executes the program's source: INPUTS, build and OPTIONS."""
  ns = {"tf": tf, "np": np, "rules": rules}
  exec(compile(fuzz_programs.to_source(program), "<fuzz program>", "exec"),
       ns)  # pylint: disable=exec-used
  return ns


def check(program, mode, rules=None):
  """Both engines on the program (separate graphs), compared."""
  ns = namespace(program, rules)
  ours = fuzz_runner.run(tfgrad.gradients, ns, mode)
  stock = fuzz_runner.run(tf.gradients, ns, mode)
  problems = fuzz_runner.compare(ours, stock)
  result = Result(ours, stock, problems)
  if problems:
    result.explained = explain(program, mode, rules, ours, stock, problems)
  return result


def forward_op_types(program, rules=None):
  """TF op types of the program's forward graph (for the coverage line);
  None if it does not build."""
  graph = tf.Graph()
  with graph.as_default():
    try:
      _evaluate_nodes(program, rules, constant_inputs=False)
    except Exception:  # pylint: disable=broad-except
      return None
    return {op.type for op in graph.get_operations()}


def _evaluate_nodes(program, rules, constant_inputs=True):
  """Builds every node in the current graph (inputs as constants, or as
  the program has them); returns the tensors. Used for static shapes after
  a shrinking step changes a shape, and for the op types of a program."""
  ns = {"tf": tf, "np": np, "rules": rules}
  tensors = []
  for i, node in enumerate(program.nodes):
    if node.op == "variable" and not constant_inputs:
      ns[f"v{i}"] = tf.Variable(node.value)
    elif node.op == "placeholder" and not constant_inputs:
      ns[f"v{i}"] = tf.compat.v1.placeholder(node.value.dtype, node.static)
    elif node.is_input:
      ns[f"v{i}"] = tf.constant(node.value)
    else:
      ns[f"v{i}"] = eval(fuzz_programs.op_source(node), ns)  # pylint: disable=eval-used
    tensors.append(ns[f"v{i}"])
  return tensors


# ----- Shrinking -----


def prune(program):
  """Drops nodes that no y, x or stop entry depends on; renumbers."""
  keep, stack = set(), list(program.ys + program.xs + program.stop)
  while stack:
    i = stack.pop()
    if i not in keep:
      keep.add(i)
      stack.extend(program.nodes[i].args)
  order = sorted(keep)
  new = {old: k for k, old in enumerate(order)}
  p = program.copy()
  p.nodes = [p.nodes[i] for i in order]
  for node in p.nodes:
    node.args = tuple(new[a] for a in node.args)
  p.ys = [new[i] for i in p.ys]
  p.xs = [new[i] for i in p.xs]
  p.stop = [new[i] for i in p.stop]
  return p


def _as_constant(node, rng):
  """A constant input standing in for `node` (same dtype and shape;
  positive values where the node was known positive)."""
  value = fuzz_programs.sample(rng, node.dtype, node.shape,
                               low=1.0 if node.low > 0 else 0.0)
  return fuzz_programs.Node("const", node.dtype, node.shape, value=value,
                            low=0.5 if node.low > 0 else 0.0)


def _option_candidates(p):
  """Simpler call options: fewer ys and xs, no stop_gradients, default
  aggregation and unconnected mode, first order, no grad_ys."""
  for k in range(len(p.ys) if len(p.ys) > 1 else 0):
    c = p.copy()
    del c.ys[k]
    if c.grad_ys is not None:
      del c.grad_ys[k]
    yield c
  for k in range(len(p.xs) if len(p.xs) > 1 else 0):
    c = p.copy()
    del c.xs[k]
    yield c
  for field, simple in (("stop", []), ("aggregation", "None"),
                        ("unconnected", "NONE"), ("order", 1),
                        ("grad_ys", None)):
    if getattr(p, field) != simple:
      c = p.copy()
      setattr(c, field, simple)
      yield c


def _node_candidates(p, rng, rules):
  """Each op replaced by a constant, then by one of its operands of the
  same dtype (later shapes re-derived if its shape differs); each variable
  or placeholder made a constant."""
  for i in reversed(range(len(p.nodes))):
    node = p.nodes[i]
    if node.is_input:
      continue
    c = p.copy()
    c.nodes[i] = _as_constant(node, rng)
    yield c
    for a in node.args:
      if p.nodes[a].dtype != node.dtype:
        continue
      c = _bypass(p, i, a)
      if p.nodes[a].shape != node.shape:
        c = _refresh_shapes(c, rules)
      if c is not None:
        yield c
  for i, node in enumerate(p.nodes):
    if node.op in ("variable", "placeholder"):
      c = p.copy()
      c.nodes[i].op, c.nodes[i].static = "const", None
      yield c


def _bypass(p, i, a):
  """Node i removed: its users (and ys/xs/stop entries) take operand a."""
  c = p.copy()
  c.nodes[i] = _as_constant(c.nodes[i], np.random.default_rng(0))
  swap = lambda k: a if k == i else k
  for node in c.nodes:
    node.args = tuple(swap(k) for k in node.args)
  c.ys, c.xs = [swap(k) for k in c.ys], [swap(k) for k in c.xs]
  c.stop = [swap(k) for k in c.stop]
  if len(set(c.xs)) != len(c.xs):
    c.xs = list(dict.fromkeys(c.xs))
  return c


def _rank_candidates(p, rules):
  """Each input of rank >= 1 with its leading dim dropped, then with all
  dims cut to 1; later shapes re-derived (None when the program no longer
  builds)."""
  for i, node in enumerate(p.nodes):
    if not node.is_input or not node.shape:
      continue
    for value in (node.value[0], node.value[tuple(slice(0, 1)
                                                  for _ in node.shape)]):
      if value.shape == node.value.shape:
        continue
      c = p.copy()
      c.nodes[i].value, c.nodes[i].shape = value, value.shape
      if c.nodes[i].static is not None:
        c.nodes[i].static = [None] * value.ndim
      c = _refresh_shapes(c, rules)
      if c is not None:
        yield c


def _refresh_shapes(p, rules):
  """Static shapes of every node (all inputs constant), and grad_ys of the
  ys' new shapes; None if the program no longer builds."""
  with tf.Graph().as_default():
    try:
      tensors = _evaluate_nodes(p, rules)
    except Exception:  # pylint: disable=broad-except
      return None
  for node, t in zip(p.nodes, tensors):
    node.shape = tuple(t.shape.as_list())
  if p.grad_ys is not None:
    rng = np.random.default_rng(0)
    p.grad_ys = [fuzz_programs.sample(rng, p.nodes[y].dtype, p.nodes[y].shape)
                 for y in p.ys]
  return p


def candidates(p, rules):
  """Smaller variants of p, the biggest cuts first."""
  rng = np.random.default_rng(len(p.nodes))
  yield from _option_candidates(p)
  yield from _node_candidates(p, rng, rules)
  yield from _rank_candidates(p, rules)


def shrink(program, still_fails, rules=None, budget=150):
  """Greedy delta debugging: take the first smaller variant that still
  fails, prune, repeat until none does (or `budget` checks are spent)."""
  current = prune(program)
  progress = True
  while progress and budget > 0:
    progress = False
    for candidate in candidates(current, rules):
      budget -= 1
      if still_fails(candidate):
        current, progress = prune(candidate), True
        break
      if budget <= 0:
        break
  return current


def same_mismatch(mode, categories, rules):
  """Predicate for shrinking: the program still shows an unexplained
  mismatch of one of the original categories, in the same mode."""
  def still_fails(program):
    result = check(program, mode, rules)
    return result.unexplained and any(
        c in categories for c, _ in result.problems)
  return still_fails


# ----- Repro scripts -----


_REPRO_MAIN = '''

if __name__ == "__main__":
  program = dict(INPUTS=INPUTS, build=build, OPTIONS=OPTIONS)
  ours = run(tfgrad.gradients, program, MODE)
  stock = run(tf.gradients, program, MODE)
  print("tfgrad.gradients:", ours)
  print("tf.gradients:    ", stock)
  problems = compare(ours, stock)
  for category, detail in problems:
    print(f"MISMATCH {category}: {detail}")
  assert not problems, problems
  print("no mismatch")
'''


def repro_source(program, mode, seed, problems, rules_name=None):
  """A standalone script: the program's source, the runner's source, and a
  main that runs both engines, prints both, and asserts they agree."""
  header = [
      "#!/usr/bin/env python",
      f'"""tfgrad.gradients differs from tf.gradients (tools/fuzz.py, '
      f'seed {seed}, mode {mode}):',
      *(f"  {c}: {d}" for c, d in problems),
      '"""', "",
      "import sys",
      f"sys.path[:0] = {list(dict.fromkeys([ROOT, os.getcwd()]))!r}", "",
      "import numpy as np",
      "import tensorflow as tf",
      "import tfgrad",
  ]
  if rules_name:
    header.append(f"import {rules_name} as rules")
  header += ["", f"MODE = {mode!r}", ""]
  runner = inspect.getsource(fuzz_runner)
  return ("\n".join(header) + "\n" + fuzz_programs.to_source(program)
          + "\n\n# ----- tools/fuzz_runner.py -----\n\n" + runner
          + _REPRO_MAIN)


def write_repro(directory, program, mode, seed, problems, rules_name=None):
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f"repro_seed{seed}_{mode}.py")
  with open(path, "w") as f:
    f.write(repro_source(program, mode, seed, problems, rules_name))
  return path


# ----- The fuzzing loop -----


def load_rules(name):
  """Imports --rules_module; adds its FUZZ_OPS to the program space."""
  if not name:
    return None
  module = importlib.import_module(name)
  fuzz_programs.add_user_ops(getattr(module, "FUZZ_OPS", []))
  return module


def default_families(rules):
  families = list(fuzz_programs.FAMILIES)
  if rules is not None and getattr(rules, "FUZZ_OPS", None):
    families.append("rules_module")
  return families


@dataclasses.dataclass
class Report:
  """What a fuzzing run saw: counts, coverage and mismatches."""
  cases: int = 0
  runs: int = 0
  modes: set = dataclasses.field(default_factory=set)
  kinds: set = dataclasses.field(default_factory=set)
  types: set = dataclasses.field(default_factory=set)
  mismatches: list = dataclasses.field(default_factory=list)
  explained: list = dataclasses.field(default_factory=list)

  def summary(self):
    return (f"fuzz: {self.cases} cases, {self.runs} runs, "
            f"{len(self.kinds)} op kinds / {len(self.types)} TF op types "
            f"covered, {len(self.mismatches)} unexplained mismatches, "
            f"{len(self.explained)} explained")


@dataclasses.dataclass
class Options:
  """What a fuzzing run draws from and does with mismatches."""
  modes: tuple = ("graph", "function")
  families: tuple = fuzz_programs.FAMILIES
  orders: tuple = (1, 2)
  max_ops: int = 5
  rotate_modes: bool = False    # each case in one mode, taking modes in turn
  shrink: bool = True
  repro_dir: str = None
  stop_on_first: bool = False
  rules: object = None          # the imported --rules_module
  rules_name: str = None


def _handle_mismatch(report, program, mode, seed, result, options):
  """Records one mismatch: explained ones as such; others shrunk and
  written as a repro script."""
  line = "; ".join(f"{c}: {d}" for c, d in result.problems)
  if result.explained is not None:
    report.explained.append(dict(seed=seed, mode=mode,
                                 entry=result.explained.name))
    print(f"explained seed={seed} mode={mode} "
          f"[{result.explained.name}]: {line}")
    return
  small = program
  if options.shrink:
    categories = {c for c, _ in result.problems}
    small = shrink(program, same_mismatch(mode, categories, options.rules),
                   options.rules)
    result = check(small, mode, options.rules)
    line = "; ".join(f"{c}: {d}" for c, d in result.problems) or line
  path = None
  if options.repro_dir:
    path = write_repro(options.repro_dir, small, mode, seed,
                       result.problems, options.rules_name)
  report.mismatches.append(dict(seed=seed, mode=mode, problems=line,
                                ops=small.op_kinds(), repro=path))
  print(f"MISMATCH seed={seed} mode={mode} ops={small.op_kinds()}: {line}"
        + (f" -> {path}" if path else ""), flush=True)


def fuzz(seed, cases, options):
  """Runs `cases` programs from `seed` (case k: seed + k); returns a
  Report."""
  report = Report()
  modes = list(options.modes)
  for k in range(cases):
    case_seed = seed + k
    program = fuzz_programs.generate(case_seed, options.families,
                                     options.orders, options.max_ops)
    report.cases += 1
    report.kinds.update(program.op_kinds())
    report.types.update(forward_op_types(program, options.rules) or ())
    case_modes = [modes[k % len(modes)]] if options.rotate_modes else modes
    for mode in case_modes:
      report.runs += 1
      report.modes.add(mode)
      result = check(program, mode, options.rules)
      if result.problems:
        _handle_mismatch(report, program, mode, case_seed, result, options)
        if report.mismatches and options.stop_on_first:
          return report
  return report
