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


def _complex_xlogy_program(extra_op=None):
  x = np.array([1.5 + 0.5j, -0.7 + 1.2j], np.complex64)
  y = np.array([0.8 + 0.3j, 1.1 + 0.4j], np.complex64)
  nodes = [_node("const", "complex64", (2,), value=x),
           _node("const", "complex64", (2,), value=y),
           _node("xlogy", "complex64", (2,), [0, 1])]
  if extra_op:
    nodes += [_node("real", "float32", (2,), [2]),
              _node(extra_op, "float32", (2,), [3])]
  grad_ys = [np.ones(nodes[-1].shape, np.dtype(nodes[-1].dtype))]
  return fuzz_programs.Program(nodes, ys=[len(nodes) - 1], xs=[0, 1],
                               grad_ys=grad_ys)


@pytest.mark.parametrize("mode", ["graph", "function"])
def test_complex_xlogy_difference_is_explained(mode):
  result = fuzz_lib.check(_complex_xlogy_program(), mode)
  assert {c for c, _ in result.problems} == {"values"}
  assert result.explained.name == "complex_xlogy_xdivy"
  x, y = [n.value for n in _complex_xlogy_program().nodes[:2]]
  # TF's convention for complex gradients: grad * conj(d xlogy / dx)
  np.testing.assert_allclose(result.ours.values[0], np.conj(np.log(y)),
                             rtol=1e-5)
  np.testing.assert_allclose(result.ours.values[1], np.conj(x / y),
                             rtol=1e-5)


def test_explanation_does_not_cover_another_mismatch(wrong_rule):
  # the wrong rule behind a complex Xlogy: the variant without Xlogy still
  # mismatches, so the mismatch is not the explained one
  result = fuzz_lib.check(_complex_xlogy_program("wrong_square"), "graph",
                          wrong_rule)
  assert result.problems and result.unexplained
  fixed = _complex_xlogy_program("square")
  assert fuzz_lib.check(fixed, "graph").explained.name == (
      "complex_xlogy_xdivy")


def test_invalid_aggregation_method_difference_is_explained():
  value = np.array([1.0, 2.0], np.float32)
  nodes = [_node("const", "float32", (2,), value=value),
           _node("const", "float32", (2,), value=value),
           _node("sin", "float32", (2,), [0])]
  # y does not depend on x: stock TF never aggregates, so never checks
  program = fuzz_programs.Program(nodes, ys=[2], xs=[1],
                                  aggregation="INVALID")
  result = fuzz_lib.check(program, "graph")
  assert result.ours.error == "ValueError" and result.stock.error is None
  assert result.explained.name == "invalid_aggregation_method"
  # once a gradient flows, both raise ValueError: no mismatch
  program.xs = [0]
  assert not fuzz_lib.check(program, "graph").problems
