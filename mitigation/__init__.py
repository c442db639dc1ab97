"""Mitigation methods for VLM trustworthiness, by axis (data, architecture, training, inference).

Built on `eval_bridge` (model loading, generation, the checkpoint callback); see shared METHODS.md for the specs.
"""
