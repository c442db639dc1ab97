"""CPU speed-ups of TRL's fused LM head, scoped to one `trainer.train()` call.

TRL (1.16) computes per-token log-probs of SFT and DPO through a fused LM head (`trl.trainer.utils`). Two of its
choices cost a lot on CPU and nothing is lost by changing them there:

- off CUDA/XPU it scores *every* position (to keep tile shapes fixed for compilers such as Neuron's) and masks
  afterwards, so the 49k-word projection, its backward and the metrics run on prompt and padding tokens;
- its chunked kernel's torch fallback makes ~10 elementwise passes over each vocabulary tile, forward and back.

`cpu_lm_head_speedups()` replaces the two private names for the duration of a `with` block and restores TRL's
originals afterwards, so nothing outside the block (other trainers, other tests) sees them. They are written for
TRL 1.16: another version is left alone (only slower), and the block says so. The plain path materialises the
full-vocabulary logits, so beyond `MAX_PLAIN_ELEMENTS` (rows x vocabulary) it hands over to TRL's tiled kernel,
which bounds memory. The losses and gradients equal TRL's (tests/mitigation/training/test_trl_hooks.py).
"""

from __future__ import annotations

import contextlib
import logging

log = logging.getLogger(__name__)

WRITTEN_FOR_TRL = "1.16"
# 2**27 float32 logits = 512 MiB, plus as much again for the log-softmax kept for the backward pass.
MAX_PLAIN_ELEMENTS = 2**27


def plain_log_probs(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs):
    """TRL's fused-LM-head outputs `(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1)` from one
    projection and torch's fused log-softmax, with plain autograd (`chunk_size` is ignored).

    Same arguments and results as TRL's `ChunkedLogProbFunction.apply`.
    """
    import torch

    z = torch.nn.functional.linear(hidden, weight, bias).float()
    if logit_scale != 1.0:
        z = z * logit_scale
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    if temperature != 1.0:
        z = z / temperature
    log_p = torch.log_softmax(z, dim=-1)
    log_probs = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1) if "entropy" in outputs else None
    with torch.no_grad():
        log_sum_sq_probs = torch.logsumexp(2 * log_p, dim=-1) if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1) if "mean_logits" in outputs else None
        is_top1 = z.argmax(-1) == targets if "is_top1" in outputs else None  # the first maximum, as TRL counts
    return log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1


def _dispatch(original):
    """A stand-in for TRL's `_ChunkedLogProbFunction`: the plain path on CPU while the logits stay small."""

    class Dispatch:
        @staticmethod
        def apply(hidden, weight, *args):
            small = hidden.shape[0] * weight.shape[0] <= MAX_PLAIN_ELEMENTS
            if hidden.device.type == "cpu" and small:
                return plain_log_probs(hidden, weight, *args)
            return original.apply(hidden, weight, *args)

    return Dispatch


def _compact(original):
    """A stand-in for TRL's `_use_triton`: score labelled positions only, on CPU too."""

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    return compact


@contextlib.contextmanager
def cpu_lm_head_speedups(enabled: bool = True):
    """Within the block, TRL's fused LM head scores only labelled positions and, on CPU, projects in one pass.

    Yields the list of hooks that were installed (empty when disabled, or when TRL is not the version they were
    written for); TRL's functions are the originals again when the block exits, even on an error.
    """
    import trl
    import trl.trainer.utils as trl_utils

    if not enabled:
        yield []
        return
    if not trl.__version__.startswith(WRITTEN_FOR_TRL):
        log.info(
            "TRL %s: the CPU LM-head speed-ups were written for TRL %s and are not applied (training is unchanged, "
            "only slower on CPU)",
            trl.__version__,
            WRITTEN_FOR_TRL,
        )
        yield []
        return
    originals = {}
    for name, wrap in (("_use_triton", _compact), ("_ChunkedLogProbFunction", _dispatch)):
        current = getattr(trl_utils, name, None)
        if current is not None:
            originals[name] = current
            setattr(trl_utils, name, wrap(current))
    try:
        yield sorted(originals)
    finally:
        for name, original in originals.items():
            setattr(trl_utils, name, original)
