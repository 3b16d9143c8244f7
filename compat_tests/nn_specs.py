"""Specs for ops/nn_grad.py rules."""

SPECS = []
