"""Inference-time mitigation methods (METHODS.md 3.7-3.9): generation wrappers run by `scripts/evaluate.py --method ID`."""
