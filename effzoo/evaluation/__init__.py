"""Evaluation, benchmarking and listing of models and checkpoints."""
