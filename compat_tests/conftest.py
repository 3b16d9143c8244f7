"""Fixtures shared by the test modules."""

import pytest

import tfgrad
from tfgrad import backprop


@pytest.fixture
def backprop_passes(monkeypatch):
  """A list that grows by one for each tfgrad backprop pass (outer calls,
  and the re-entrant ones TF's control-flow rules make); tfgrad is
  uninstalled afterwards in case the test installed it."""
  calls = []
  real_run = backprop.run

  def counting_run(*args, **kwargs):
    calls.append(1)
    return real_run(*args, **kwargs)
  monkeypatch.setattr(backprop, "run", counting_run)
  yield calls
  tfgrad.uninstall()
