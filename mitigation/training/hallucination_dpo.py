"""`hallucination_dpo`: mDPO (Wang et al., EMNLP 2024, arXiv 2406.11839), with RLHF-V's token-weighted DPO (DDPO,
Yu et al., CVPR 2024, arXiv 2312.00849) as an option. Targets truthfulness: plain multimodal DPO can learn
preferences that ignore the image; mDPO also asks the chosen response to be likelier with the real image than with
a corrupted one. Every l below is a log-probability summed over the response's tokens (METHODS.md 3.6):

    L_DPO = -log s(b * [(l_p(yw|m) - l_p(yl|m)) - (l_r(yw|m) - l_r(yl|m))])
    L_img = -log s(b * [(l_p(yw|m) - l_p(yw|m')) - (l_r(yw|m) - l_r(yw|m'))])     m' = a corrupted copy of m
    L_anc = -log s(b * (l_p(yw|m) - l_r(yw|m)))                                  keeps the chosen reward above 0
    L = L_DPO + L_img + L_anc, averaged over the batch

`MdpoTrainer` is TRL 1.16's `DPOTrainer` with one hook replaced: `_compute_loss`, the method that runs the policy and
the reference on a collated [chosen; rejected] batch (TRL has no separate concatenated-forward hook). It appends the
chosen rows again with corrupted pixels, so one policy forward and one reference forward give all six terms.
Corruption (`corrupt_images`): a RandomResizedCrop of area share (0.01, 0.2) resized back to the original size, on
the processed pixel tensor, re-drawn every step; the policy and the reference share it by default.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from trl import DPOTrainer

from mitigation.training.hallucination_dpo_config import HallucinationDpoConfig
from mitigation.training.method_recipe import RecipePlan, heldout_eval_files, run_recipe, shared_sources

log = logging.getLogger(__name__)

ROW_KEYS = ("input_ids", "attention_mask", "completion_mask", "token_type_ids", "mm_token_type_ids")
# Per-image (or, for Idefics3, per-row) tensors: the chosen rows' share is the first half, as TRL's collator lists
# the images of the chosen rows and then the same images again for the rejected rows.
IMAGE_KEYS = ("pixel_values", "image_sizes", "pixel_attention_mask")
TRUTHFULNESS_WEIGHTS = {"truthfulness": 1.0}  # the best checkpoint of a run that scores truthfulness tasks


# ---------------------------------------------------------------- the loss


@dataclass
class SequenceLogps:
    """Summed log-probabilities of one model, shape (B,) each: l(yw|m), l(yl|m), l(yw|m').

    `chosen_dpo` / `rejected_dpo`: the token-weighted sums the DPO term uses under DDPO (None: the plain sums)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    corrupted: torch.Tensor
    chosen_dpo: torch.Tensor | None = None
    rejected_dpo: torch.Tensor | None = None


def mdpo_loss(
    policy: SequenceLogps, reference: SequenceLogps, beta: float, *, image_term: bool = True, anchor_term: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The mDPO loss (module docstring) and its per-pair parts.

    Worked example (METHODS 3.6, beta 0.1): policy (l(yw|m), l(yl|m), l(yw|m')) = (-10, -14, -13), reference
    (-11, -12, -12): margins 3 (DPO: 4 - 1), 2 (image: 3 - 1), 1 (anchor); terms -log s(0.3) = 0.5544,
    -log s(0.2) = 0.5981, -log s(0.1) = 0.6444; loss 1.7969. With policy = reference every margin is 0: 3 log 2.

    Returns:
        (scalar loss, {"dpo", "image", "anchor": per-pair terms; "chosen_rewards", "rejected_rewards",
        "imageless_rewards": beta * log-ratios, detached})
    """
    pc = policy.chosen_dpo if policy.chosen_dpo is not None else policy.chosen
    pr = policy.rejected_dpo if policy.rejected_dpo is not None else policy.rejected
    rc = reference.chosen_dpo if reference.chosen_dpo is not None else reference.chosen
    rr = reference.rejected_dpo if reference.rejected_dpo is not None else reference.rejected
    chosen_ratio = policy.chosen - reference.chosen
    corrupted_ratio = policy.corrupted - reference.corrupted
    parts = {"dpo": -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))}
    zero = torch.zeros_like(parts["dpo"])
    parts["image"] = -F.logsigmoid(beta * (chosen_ratio - corrupted_ratio)) if image_term else zero
    parts["anchor"] = -F.logsigmoid(beta * chosen_ratio) if anchor_term else zero
    loss = (parts["dpo"] + parts["image"] + parts["anchor"]).mean()
    parts["chosen_rewards"] = beta * chosen_ratio.detach()
    parts["rejected_rewards"] = beta * (policy.rejected - reference.rejected).detach()
    parts["imageless_rewards"] = beta * corrupted_ratio.detach()
    return loss, parts


def summed_logps(per_token: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_t w_t * mask_t * log p_t per row (weights None: all 1), as RLHF-V's weighted log-prob without averaging."""
    per_token = per_token * mask
    return (per_token if weights is None else per_token * weights).sum(dim=1)


# ---------------------------------------------------------------- DDPO: which tokens were edited


def changed_tokens(a: Sequence[int], b: Sequence[int], min_match: int = 3) -> tuple[list[bool], list[bool]]:
    """For two token sequences, which tokens of each lie outside the runs they share.

    Runs come from `difflib.SequenceMatcher` (no junk heuristic); a shared run shorter than `min_match` tokens
    counts as changed (RLHF-V's `get_diff_ids` uses 3), so a stray common token inside an edit is not kept.
    """
    changed_a, changed_b = [True] * len(a), [True] * len(b)
    for block in difflib.SequenceMatcher(None, list(a), list(b), autojunk=False).get_matching_blocks():
        if block.size >= min_match:
            changed_a[block.a : block.a + block.size] = [False] * block.size
            changed_b[block.b : block.b + block.size] = [False] * block.size
    return changed_a, changed_b


def ddpo_weights(
    input_ids: torch.Tensor, completion_mask: torch.Tensor, gamma: float, min_match: int = 3
) -> torch.Tensor:
    """Per-token weights aligned with TRL's shifted log-probs (shape (2B, L - 1)) of a [chosen; rejected] batch:
    `gamma` on the tokens where chosen and rejected differ (`changed_tokens`), 1 elsewhere."""
    ids, mask = input_ids[:, 1:], completion_mask[:, 1:].bool()
    weights = torch.ones(ids.shape, dtype=torch.float32, device=ids.device)
    n = ids.shape[0] // 2
    for i in range(n):
        pos_c, pos_r = mask[i].nonzero().squeeze(1), mask[n + i].nonzero().squeeze(1)
        changed_c, changed_r = changed_tokens(ids[i, pos_c].tolist(), ids[n + i, pos_r].tolist(), min_match)
        for row, pos, changed in ((i, pos_c, changed_c), (n + i, pos_r, changed_r)):
            flags = torch.tensor(changed, dtype=torch.bool, device=ids.device)
            weights[row, pos] = torch.where(flags, gamma, 1.0)
    return weights


# ---------------------------------------------------------------- corruption


def crop_box(
    height: int, width: int, scale: tuple[float, float], generator: torch.Generator, ratio=(3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering a share in `scale` of the area, aspect ratio in `ratio`
    (RandomResizedCrop's sampling: 10 tries, then the largest centred crop within `ratio`)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=generator).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    w, h = width, height
    if width / height < ratio[0]:
        h = round(width / ratio[0])
    elif width / height > ratio[1]:
        w = round(height * ratio[1])
    return (height - h) // 2, (width - w) // 2, h, w


def check_corruptible(pixel_values: torch.Tensor) -> None:
    """A ValueError saying what to do if `pixel_values` are not images of shape (..., C, H, W)."""
    if pixel_values.dim() < 4:
        raise ValueError(
            f"hallucination_dpo corrupts processed images of shape (..., C, H, W) (LLaVA-style models); this "
            f"processor returns pixel_values of shape {tuple(pixel_values.shape)} (flattened patches, as Qwen2-VL's), "
            "whose crop would have to be taken on the PIL image before processing, which is not implemented. Train "
            "a LLaVA-style model (LLaVA-1.5, LLaVA-NeXT, Idefics3/SmolVLM, the embedded default), or use safety_dpo/"
            "plain DPO for this family"
        )


def corrupt_images(pixel_values: torch.Tensor, scale: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """Each image of `pixel_values` (..., C, H, W) replaced by a random crop (`crop_box`) resized back to H x W
    (bilinear): the same shape, so the image-token count and the processor's layout are unchanged."""
    check_corruptible(pixel_values)
    *lead, c, h, w = pixel_values.shape
    flat = pixel_values.reshape(-1, c, h, w)
    out = torch.empty_like(flat)
    for k in range(flat.shape[0]):
        top, left, ch, cw = crop_box(h, w, scale, generator)
        crop = flat[k : k + 1, :, top : top + ch, left : left + cw].float()
        out[k] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0].to(flat.dtype)
    return out.reshape(*lead, c, h, w)


def with_corrupted_chosen(batch: dict, corrupted_pixels: torch.Tensor | None) -> dict:
    """The collated [chosen; rejected] batch extended to [chosen; rejected; chosen on m'] (3B rows): row tensors
    get the chosen rows again, per-image tensors the chosen rows' images again (pixels replaced by `corrupted_pixels`,
    the corruption of the first half of `pixel_values`)."""
    n = batch["input_ids"].shape[0] // 2
    out = {}
    for key, value in batch.items():
        if key in ROW_KEYS:
            out[key] = torch.cat([value, value[:n]])
        elif key in IMAGE_KEYS:
            half = value.shape[0] // 2
            extra = corrupted_pixels if key == "pixel_values" else value[:half]
            out[key] = torch.cat([value, extra])
        else:
            raise ValueError(
                f"hallucination_dpo does not know how to repeat the batch field {key!r} for the corrupted-image rows "
                f"(known: {', '.join(ROW_KEYS + IMAGE_KEYS)}); this model family is not supported yet"
            )
    return out


# ---------------------------------------------------------------- the trainer


@dataclass(frozen=True)
class MdpoSettings:
    """What `MdpoTrainer` adds to a `DPOConfig` (beta is DPOConfig's)."""

    image_term: bool = True
    anchor_term: bool = True
    crop_scale: tuple[float, float] = (0.01, 0.2)
    share_corruption: bool = True
    ddpo_weight: float = 1.0
    ddpo_min_match: int = 3


class MdpoTrainer(DPOTrainer):
    """TRL's `DPOTrainer` with the mDPO loss (`_compute_loss` replaced; everything else is TRL's).

    Settings are the class attribute `settings`; `MdpoTrainer.configured(settings)` makes a subclass carrying
    them (the shared pipeline builds trainers from a class and TRL's arguments only). Logs TRL's reward metrics
    plus `rewards/imageless_chosen` (beta * the chosen log-ratio on m'), `rewards/imageless_margins` (chosen reward
    minus that) and the three loss terms.
    """

    settings = MdpoSettings()

    @classmethod
    def configured(cls, settings: MdpoSettings) -> type[MdpoTrainer]:
        """A subclass of this trainer with `settings`."""
        return type(cls.__name__, (cls,), {"settings": settings})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        a = self.args
        unsupported = {
            "loss_type": (list(self.loss_types) != ["sigmoid"], "['sigmoid']"),
            "precompute_ref_log_probs": (
                bool(self.precompute_ref_logps),
                "False: the reference must score the corrupted image drawn each step",
            ),
            "ld_alpha": (self.ld_alpha is not None, "None"),
            "use_weighting": (bool(self.use_weighting), "False"),
            "f_divergence_type": (str(self.f_divergence_type) != "reverse_kl", "reverse_kl"),
            "sync_ref_model": (bool(a.sync_ref_model), "False"),
        }
        for name, (bad, want) in unsupported.items():
            if bad:
                raise ValueError(f"MdpoTrainer (hallucination_dpo) supports {name}={want} only")
        self._corruption_rng = torch.Generator().manual_seed(a.seed + a.process_index)
        if self.train_dataset is not None and len(self.train_dataset):
            probe = self.data_collator([dict(self.train_dataset[0])])  # fail now, not at step 1, on a family we
            if "pixel_values" in probe:  # cannot corrupt
                check_corruptible(probe["pixel_values"])

    def corrupted_pixels(self, batch: dict) -> torch.Tensor | None:
        """A fresh corruption of the chosen rows' images (None for a text-only batch)."""
        pixels = batch.get("pixel_values")
        if pixels is None:
            return None
        return corrupt_images(pixels[: pixels.shape[0] // 2], self.settings.crop_scale, self._corruption_rng)

    def _per_token_logps(self, model, rows: dict, *, reference: bool) -> torch.Tensor:
        """Per-token log-probs (3B, L - 1) of the completion tokens, from the policy or (no grad) the reference."""
        kwargs = {k: v for k, v in rows.items() if k != "completion_mask"}
        kwargs["use_cache"] = False
        labels = rows["input_ids"].masked_fill(rows["completion_mask"] == 0, -100)
        seq_len = rows["completion_mask"].shape[1] - 1
        if not reference:
            return model(**kwargs, labels=labels, fused_lm_head=True).log_probs[:, -seq_len:]
        from accelerate.utils import is_peft_model
        from trl.models.utils import disable_gradient_checkpointing
        from trl.trainer.utils import use_adapter

        context, ref = contextlib.nullcontext(), self.ref_model
        if ref is None:
            if not is_peft_model(self.model):
                raise ValueError("MdpoTrainer needs a reference: LoRA (the adapter-disabled base) or a ref_model")
            # As TRL: the adapter-disabled base is the reference (or the initial copy of a re-trained adapter, "ref").
            unwrapped = self.accelerator.unwrap_model(self.model)
            context = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
            ref = self.model
        checkpointing = disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)
        with torch.no_grad(), checkpointing, context:
            return ref(**kwargs, labels=labels, fused_lm_head=True).log_probs[:, -seq_len:]

    def sequence_logps(self, per_token: torch.Tensor, rows: dict, weights: torch.Tensor | None) -> SequenceLogps:
        """Split the 3B rows' per-token log-probs into the summed l(yw|m), l(yl|m), l(yw|m') (+ DDPO's sums)."""
        mask = rows["completion_mask"][:, 1:].to(per_token.dtype)
        sums = summed_logps(per_token, mask)
        chosen, rejected, corrupted = sums.chunk(3)
        out = SequenceLogps(chosen, rejected, corrupted)
        if weights is not None:
            n = chosen.shape[0]
            out.chosen_dpo, out.rejected_dpo = summed_logps(per_token[: 2 * n], mask[: 2 * n], weights).chunk(2)
        return out

    def _compute_loss(self, model, inputs, return_outputs):
        if return_outputs:
            raise ValueError("MdpoTrainer returns losses only: evaluate checkpoints through the eval bridge")
        mode = "train" if self.model.training else "eval"
        s = self.settings
        pixels = self.corrupted_pixels(inputs)
        rows = with_corrupted_chosen(inputs, pixels)
        ref_rows = rows if s.share_corruption else with_corrupted_chosen(inputs, self.corrupted_pixels(inputs))
        weights = None
        if s.ddpo_weight != 1.0:
            weights = ddpo_weights(inputs["input_ids"], inputs["completion_mask"], s.ddpo_weight, s.ddpo_min_match)
        policy = self.sequence_logps(self._per_token_logps(model, rows, reference=False), rows, weights)
        reference = self.sequence_logps(self._per_token_logps(model, ref_rows, reference=True), ref_rows, weights)
        loss, parts = mdpo_loss(policy, reference, self.beta, image_term=s.image_term, anchor_term=s.anchor_term)
        self._log_mdpo(mode, policy, parts)
        return loss

    def _log_mdpo(self, mode: str, policy: SequenceLogps, parts: dict[str, torch.Tensor]) -> None:
        def mean(t: torch.Tensor) -> float:
            return self.accelerator.gather_for_metrics(t.detach().float()).mean().item()

        chosen, rejected, imageless = parts["chosen_rewards"], parts["rejected_rewards"], parts["imageless_rewards"]
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(mean(chosen))
        metrics["rewards/rejected"].append(mean(rejected))
        metrics["rewards/margins"].append(mean(chosen - rejected))
        metrics["rewards/accuracies"].append(mean((chosen > rejected).float()))
        metrics["rewards/imageless_chosen"].append(mean(imageless))
        metrics["rewards/imageless_margins"].append(mean(chosen - imageless))
        metrics["logps/chosen"].append(mean(policy.chosen))
        metrics["logps/rejected"].append(mean(policy.rejected))
        metrics["logps/imageless_chosen"].append(mean(policy.corrupted))
        for term in ("dpo", "image", "anchor"):
            metrics[f"loss/{term}"].append(mean(parts[term]))


# ---------------------------------------------------------------- the recipe


def training_pairs(cfg: HallucinationDpoConfig, splits) -> list:
    """The pairs the run trains on: `pairs_file` (capped at `max_pairs`) and/or the offline pairs, which are written
    in mDPO's schema under the cache and read back through the same loader."""
    from mitigation.training.hallucination_dpo_data import load_preference_pairs, write_offline_pairs

    pairs = []
    if cfg.pairs_file:
        pairs = load_preference_pairs(
            cfg.pairs_file, cfg.pairs_image_root, image_dir=Path(cfg.cache_dir) / "pair-images"
        )
        pairs = pairs[: cfg.max_pairs] if cfg.max_pairs >= 0 else pairs
    if (not cfg.pairs_file or cfg.mix_offline) and cfg.offline_pairs > 0:
        path = write_offline_pairs(splits.train, Path(cfg.cache_dir) / "pairs", cfg.offline_pairs, seed=cfg.seed)
        pairs += load_preference_pairs(path)
    if not pairs:
        raise ValueError("no training pairs: give pairs_file, or offline_pairs > 0")
    return pairs


def plan(cfg: HallucinationDpoConfig, base: str) -> RecipePlan:
    """One mDPO stage on the pairs; checkpoints evaluated on the shared held-out tracks and `eval_tasks`."""
    from mitigation.training.hallucination_dpo_data import pair_rows
    from mitigation.training.pipeline import Stage

    splits = shared_sources(cfg)
    pairs = training_pairs(cfg, splits)
    log.info("hallucination_dpo: %d pairs (%s)", len(pairs), ", ".join(sorted({p.source for p in pairs})))
    settings = MdpoSettings(
        image_term=cfg.image_term,
        anchor_term=cfg.anchor_term,
        crop_scale=(cfg.crop_scale_min, cfg.crop_scale_max),
        share_corruption=cfg.share_corruption,
        ddpo_weight=cfg.ddpo_weight,
    )
    stage = Stage.from_config(
        "mdpo",
        "dpo",
        pair_rows(pairs),
        cfg,
        max_steps=-1,  # its epochs decide, under the run-wide cap `max_steps`
        trainer_cls=MdpoTrainer.configured(settings),
        args=dict(
            beta=cfg.beta,
            weight_decay=cfg.weight_decay,
            adam_beta2=cfg.adam_beta2,
            warmup_steps=cfg.warmup_ratio,  # below 1: a ratio of the total steps
        ),
    )
    tracks_only = str(cfg.eval_tasks).strip().lower() == "none"
    weights = None if tracks_only else TRUTHFULNESS_WEIGHTS
    return RecipePlan([stage], heldout_eval_files(cfg, splits), report_weights=weights)


def run_hallucination_dpo(cfg: HallucinationDpoConfig) -> str | None:
    """Run the method: base model -> pairs -> mDPO -> every checkpoint through the bridge -> the trade-off table."""
    return run_recipe(cfg, plan)
