"""Gradient rules for neural-network ops (TF's nn_grad.py family)."""
