"""Gradient rules for array ops (TF's array_grad.py family)."""

from tfgrad.ops.registrars import def_linear

def_linear("Identity")
