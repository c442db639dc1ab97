"""RESA, Reasoning-Enhanced Safety Alignment: reasoning-trace SFT, then DPO, with the eval bridge on every checkpoint.

Built on `mitigation`'s trainers and data tools.
"""
