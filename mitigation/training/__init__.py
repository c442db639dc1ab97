"""Shared training layer: the pipeline, trainers built on TRL and their helpers."""
