"""Scorers that turn model responses into MultiTrust per-sample and per-task scores."""
