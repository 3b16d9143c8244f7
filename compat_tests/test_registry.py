"""The registry: explicit, loud on conflicts, a leaf module."""

import ast
import inspect

import pytest

import tfgrad
from tfgrad import registry


def test_registering_twice_names_both_places():
  reg = registry.Registry("gradient")
  reg.register("Foo", lambda op, g: g, "first.py:1")
  with pytest.raises(KeyError, match=r"first\.py:1.*second\.py:2"):
    reg.register("Foo", lambda op, g: g, "second.py:2")


def test_decorator_rejects_a_second_rule_for_a_type():
  name = "TfgradRegistryTestOp"

  @tfgrad.RegisterGradient(name)
  def _first(op, grad):
    del op
    return grad
  try:
    with pytest.raises(KeyError, match="test_registry.py"):
      @tfgrad.RegisterGradient(name)
      def _second(op, grad):
        del op
        return grad
  finally:
    registry.GRADIENTS.unregister(name)


def test_missing_type_is_a_lookup_error_naming_it():
  with pytest.raises(LookupError, match="NoSuchOpType"):
    registry.GRADIENTS.lookup("NoSuchOpType")


def test_keys_must_be_strings():
  with pytest.raises(TypeError):
    tfgrad.RegisterGradient(3)
  with pytest.raises(TypeError):
    tfgrad.NotDifferentiable(None)


def test_not_differentiable_is_stored_as_none():
  name = "TfgradRegistryTestConstantOp"
  tfgrad.NotDifferentiable(name)
  try:
    assert registry.GRADIENTS.lookup(name) is None
    assert name in registry.GRADIENTS.not_differentiable_keys()
  finally:
    registry.GRADIENTS.unregister(name)


def test_registry_imports_nothing_from_tfgrad():
  tree = ast.parse(inspect.getsource(registry))
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      assert not (node.module or "").startswith("tfgrad")
    if isinstance(node, ast.Import):
      assert not any(a.name.startswith("tfgrad") for a in node.names)


def test_rules_package_is_tfgrad_ops_not_bare_ops():
  import sys  # pylint: disable=g-import-not-at-top
  assert "tfgrad.ops" in sys.modules
  assert "ops" not in sys.modules or not hasattr(sys.modules["ops"],
                                                 "math_grad")
