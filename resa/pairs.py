"""RESA DPO preference pairs (METHODS.md section 5(d)): they fight compliance and over-refusal at once.

| prompt  | chosen                                   | rejected                                            |
|---------|------------------------------------------|-----------------------------------------------------|
| harmful | reasoned refusal (the record's trace)    | compliance: the non-operational placeholder          |
| benign  | reasoned helpful answer (its trace)      | over-refusal: reasoning wrongly finds risk, declines |

With `inconsistent_share` > 0, that share of each kind's pairs instead rejects an answer that does not follow its
own reasoning (benign: no risk found, "answer", then a refusal; harmful: harm found, "decline", then compliance),
so preference training teaches that the answer follows the decision, not only what to refuse.

Chosen responses are always well formed. Pairs differ at the level of whole traces (no per-step MCTS).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from eval_bridge.reasoning import DEFAULT_FORMAT, ReasoningFormat
from mitigation.data import rows
from mitigation.data.offline import OfflineRecord
from resa.traces import compliance_response, inconsistent_trace, over_refusal_trace, template_trace


@dataclass(frozen=True)
class PreferencePair:
    """One DPO pair; `kind` is "harmful" (refusal over compliance) or "benign" (answer over over-refusal);
    `inconsistent` marks a rejected response whose answer contradicts its own Step 4."""

    record: OfflineRecord
    chosen: str
    rejected: str
    kind: str
    inconsistent: bool = False


def _counts(n_harmful: int, n_benign: int, ratio: float) -> tuple[int, int]:
    """The largest (harmful, benign) counts available at harmful share `ratio`."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"harmful_ratio must be in [0, 1], got {ratio}")
    if ratio == 0.0:
        return 0, n_benign
    if ratio == 1.0:
        return n_harmful, 0
    total = int(min(n_harmful / ratio, n_benign / (1.0 - ratio)) + 1e-9)
    harmful = min(n_harmful, round(total * ratio))
    return harmful, min(n_benign, total - harmful)


def build_pairs(
    records: Sequence[OfflineRecord],
    traces: dict[str, str],
    *,
    harmful_ratio: float = 0.5,
    seed: int = 0,
    fmt: ReasoningFormat = DEFAULT_FORMAT,
    inconsistent_share: float = 0.0,
) -> list[PreferencePair]:
    """Preference pairs at the harmful share `harmful_ratio` (default 1:1), as many as the records allow.

    Args:
        traces: kept traces by record id (from `resa.traces.build_traces`); a record without one gets its
            template trace as chosen.
        inconsistent_share: the share of each kind's pairs (rounded) whose rejected is `inconsistent_trace`.
    Raises:
        ValueError: if a chosen trace is not well formed.
    """
    if not 0.0 <= inconsistent_share <= 1.0:
        raise ValueError(f"inconsistent_share must be in [0, 1], got {inconsistent_share}")
    rng = random.Random(f"resa-pairs:{seed}")
    harmful = [r for r in records if r.harmful]
    benign = [r for r in records if not r.harmful]
    n_h, n_b = _counts(len(harmful), len(benign), harmful_ratio)
    pairs = []
    for picked in (rng.sample(harmful, n_h), rng.sample(benign, n_b)):
        n_inconsistent = round(len(picked) * inconsistent_share)
        for k, record in enumerate(picked):
            chosen = traces.get(record.id) or template_trace(record, fmt, rng=rng)
            if not fmt.parse(chosen).well_formed:
                raise ValueError(f"chosen trace of {record.id!r} is not well formed")
            kind = "harmful" if record.harmful else "benign"
            if k < n_inconsistent:
                rejected = inconsistent_trace(record, fmt, rng=rng)
            elif record.harmful:
                rejected = compliance_response(record, fmt, rng=rng)
            else:
                rejected = over_refusal_trace(record, fmt, rng=rng)
            pairs.append(PreferencePair(record, chosen, rejected, kind, inconsistent=k < n_inconsistent))
    rng.shuffle(pairs)
    return pairs


def dpo_rows(pairs: Sequence[PreferencePair]) -> list[dict]:
    """Conversational rows for TRL's `DPOTrainer` on a VLM (`mitigation.data.rows.dpo_row`).

    Each row: {"prompt": [user turn: image placeholders + text], "chosen": [assistant turn],
    "rejected": [assistant turn], "images": [PIL images]} (empty list for text-only prompts).
    """
    return [
        rows.dpo_row(p.record.prompt, p.record.images, p.chosen, p.rejected, source=p.record.source, row=p.record.id)
        for p in pairs
    ]
