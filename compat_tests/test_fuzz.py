"""The differential fuzzer (tools/fuzz.py): a seeded slice of random
programs in both modes shows no unexplained mismatch; a deliberately wrong
rule is caught, shrunk and written as a failing repro script."""

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

import tfgrad
from tools import fuzz_lib
from tools import fuzz_programs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRONG_RULE_MODULE = "compat_tests.fuzz_wrong_rule"


def test_ci_slice_has_no_unexplained_mismatch(capsys):
  options = fuzz_lib.Options(shrink=False)
  report = fuzz_lib.fuzz(seed=0, cases=200, options=options)
  out = capsys.readouterr().out
  assert report.mismatches == [], out
  assert report.cases == 200 and report.runs == 400
  assert report.modes == {"graph", "function"}
  # every family's ops were drawn, and variables, placeholders and the
  # TF op types of the main families were built
  families = {fuzz_programs.OP_KINDS[k].family for k in report.kinds}
  assert families >= {"elementwise", "broadcast", "reduce", "linalg",
                      "gather", "complex", "stop"}
  assert {"VarHandleOp", "Placeholder", "ResourceGather", "GatherV2",
          "Conv2D", "BatchMatMulV2", "MatMul", "Prod", "Max",
          "Complex"} <= report.types


@pytest.fixture
def wrong_rule():
  """The test module with a wrong tfgrad rule under an override name of
  its own; its tfgrad registration is removed afterwards."""
  module = importlib.import_module(WRONG_RULE_MODULE)
  if module.OVERRIDE_NAME not in tfgrad.registry.GRADIENTS:
    tfgrad.RegisterGradient(module.OVERRIDE_NAME)(module.wrong_square_grad)
  fuzz_programs.add_user_ops(module.FUZZ_OPS)
  yield module
  tfgrad.registry.GRADIENTS.unregister(module.OVERRIDE_NAME)
  for spec in module.FUZZ_OPS:
    del fuzz_programs.OP_KINDS[spec["name"]]


def _node(op, dtype, shape, args=(), value=None, **attrs):
  return fuzz_programs.Node(op, dtype, shape, tuple(args), attrs,
                            value=value)


def test_shrinking_keeps_only_the_wrong_op(wrong_rule):
  value = np.array([[0.5, -1.25, 1.5], [2.0, 0.75, -0.5]], np.float32)
  nodes = [
      _node("variable", "float32", (2, 3), value=value),          # 0 x
      _node("sin", "float32", (2, 3), [0]),                       # 1
      _node("wrong_square", "float32", (2, 3), [1]),              # 2
      _node("tanh", "float32", (2, 3), [2]),                      # 3
      _node("mul", "float32", (2, 3), [3, 1]),                    # 4
      _node("reduce_sum", "float32", (3,), [4], axis=0, keepdims=False),
      _node("const", "float32", (3,), value=np.ones(3, np.float32)),  # 6
      _node("cos", "float32", (3,), [6]),                         # 7
  ]
  program = fuzz_programs.Program(
      nodes, ys=[5, 7], xs=[0, 6], stop=[3], aggregation="ADD_N",
      unconnected="ZERO", order=2)
  assert fuzz_lib.check(program, "graph", wrong_rule).unexplained
  small = fuzz_lib.shrink(
      program, fuzz_lib.same_mismatch("graph", {"values"}, wrong_rule),
      wrong_rule)
  assert small.op_kinds() == ["wrong_square"]
  assert len(small.nodes) == 2 and len(small.xs) == len(small.ys) == 1
  assert small.stop == [] and small.order == 1
  assert fuzz_lib.check(small, "graph", wrong_rule).unexplained
  # the program without the wrong op agrees with stock
  fixed = small.copy()
  fixed.nodes[1].op = "square"
  assert not fuzz_lib.check(fixed, "graph", wrong_rule).problems


def _python(*args, cwd):
  return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True,
                        text=True, timeout=300, check=False)


def test_wrong_rule_is_reported_with_a_failing_repro(tmp_path):
  repro_dir = tmp_path / "repros"
  summary = tmp_path / "summary.json"
  run = _python("-m", "tools.fuzz", f"--rules_module={WRONG_RULE_MODULE}",
                "--families=rules_module,elementwise,variables",
                "--modes=function", "--cases=40", "--stop_on_first",
                f"--repro_dir={repro_dir}", f"--json={summary}", cwd=ROOT)
  assert run.returncode == 1, run.stdout + run.stderr
  lines = [l for l in run.stdout.splitlines() if l.startswith("MISMATCH")]
  assert len(lines) == 1 and "wrong_square" in lines[0], run.stdout
  assert "1 unexplained mismatches" in run.stdout
  repros = list(repro_dir.iterdir())
  assert len(repros) == 1
  repro = _python(str(repros[0]), cwd=tmp_path)
  assert repro.returncode != 0, repro.stdout + repro.stderr
  assert "AssertionError" in repro.stderr
  assert "MISMATCH values" in repro.stdout
  assert "tfgrad.gradients:" in repro.stdout and "tf.gradients:" in repro.stdout
