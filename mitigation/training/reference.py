"""Full-parameter (VLM) DPO with no reference model in memory: the reference log-probs are computed once, before
training, cached on disk and read from the batch by TRL's own loss.

TRL 1.16 already has this path for text (`precompute_ref_log_probs=True`): `DPOTrainer.__init__` then builds no
reference model, calls `_precompute_ref_logps` on every dataset, and `_compute_loss` takes `ref_chosen_logps` /
`ref_rejected_logps` from the batch instead of running a reference forward. It refuses vision data, because
its precompute tokenizes up front (a VLM's collator works on the fly, so the columns would be dropped by the
vision signature columns and by `DataCollatorForVisionPreference`). Full-parameter VLM DPO therefore keeps a
second model on the device: the most reported VLM DPO out-of-memory cause.

`PrecomputedRefDPOTrainer` reuses that whole TRL path and replaces only what breaks on images:

- `_precompute_ref_logps` (the one method TRL calls to fill the columns, at init and in `evaluate`): batched
  forwards of the initial model in eval mode under `no_grad`, through the trainer's own collator (so images go
  through the processor exactly as in training), cached on disk under a key of (tensor hash of the model, hash
  of the dataset rows, every setting that changes a log-prob);
- the collator is wrapped so the columns reach the batch, under TRL's own key names (a subclass such as mDPO
  that adds reference terms lists them in `ref_columns` and returns them from `reference_terms`);
- `_set_signature_columns_if_needed` keeps the columns;
- the refusal itself, raised in `DPOTrainer.__init__` before `Trainer.__init__`: the flag is passed as False
  and turned on in `create_accelerator_and_postprocess`, the first `Trainer` hook after that check and before
  TRL reads the flag again to decide on the reference model (it then builds none).

Several processes: each rank computes the reference for its shard of the data (accelerate's prepared
dataloader), the shards are gathered, the main process writes the cache file and every rank attaches the same
gathered values. A cache hit is decided on the main process and broadcast.

With PEFT (a `peft_config`, or a `PeftModel`) or an explicit `ref_model`, the trainer is TRL's own, unchanged:
the adapter-disabled base (or the given model) is the reference.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from accelerate.utils import broadcast_object_list, is_peft_model
from datasets import Dataset, IterableDataset
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from trl import DPOConfig, DPOTrainer

from eval_bridge.files import write_atomically

log = logging.getLogger(__name__)

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")  # TRL's own names: `_compute_loss` reads them


def dataset_digest(dataset: Dataset) -> str:
    """sha256 of a dataset's rows in order (Arrow IPC bytes, images included) and of its features."""
    h = hashlib.sha256()
    h.update(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    h.update(str(len(dataset)).encode())
    for batch in dataset.with_format("arrow").iter(batch_size=1000):
        sink = pa.BufferOutputStream()
        table = batch.replace_schema_metadata(None)  # the features are hashed above
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def processor_digest(processing_class) -> str:
    """sha256 of what turns a row into token ids and pixels: tokenizer, chat template, image settings."""
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update((backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    h.update(str(getattr(processing_class, "chat_template", None) or tokenizer.chat_template).encode())
    if processing_class is not tokenizer:
        h.update(processing_class.to_json_string().encode())
    return h.hexdigest()


@dataclass
class RefColumnsCollator:
    """Wraps a collator so the precomputed reference columns reach the batch as float32 tensors of shape (B,)."""

    inner: Any
    columns: tuple[str, ...]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        present = [c for c in self.columns if c in examples[0]]
        values = {c: torch.tensor([ex[c] for ex in examples], dtype=torch.float32) for c in present}
        # The vision collator renders every key it is given; the reference values are not its business.
        batch = self.inner([{k: v for k, v in ex.items() if k not in present} for ex in examples])
        batch.update(values)
        return batch


class PrecomputedRefDPOTrainer(DPOTrainer):
    """TRL's `DPOTrainer`; a full model with no `ref_model` trains against precomputed, cached reference log-probs.

    Args:
        ref_cache_dir: where the reference log-probs are cached (default: `<output_dir>/ref_logps`).
        Everything else as `trl.DPOTrainer`.
    """

    ref_columns: tuple[str, ...] = REF_COLUMNS

    def __init__(
        self,
        model,
        ref_model=None,
        args: DPOConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        quantization_config=None,
        peft_config=None,
        *,
        ref_cache_dir: str | None = None,
    ):
        if args is None:  # TRL's default, made here because the flag below is set on it
            name = model if isinstance(model, str) else model.config._name_or_path
            args = DPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-DPO")
        self._precompute_ref = ref_model is None and peft_config is None and not is_peft_model(model)
        if self._precompute_ref and args.sync_ref_model:
            raise ValueError(
                "`sync_ref_model=True` updates the reference during training, so it cannot be precomputed. Use "
                "`trl.DPOTrainer` (which keeps the reference in memory) or set `sync_ref_model=False`."
            )
        if self._precompute_ref:
            args = copy.copy(args)  # the caller's config is left as it was
            args.precompute_ref_log_probs = False  # turned on once TRL's vision check is passed (see below)
        self.ref_cache_dir = Path(ref_cache_dir or Path(args.output_dir) / "ref_logps")
        super().__init__(
            model,
            ref_model=ref_model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
        )
        if self._precompute_ref:
            self.data_collator = RefColumnsCollator(self.data_collator, tuple(self.ref_columns))

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        if self._precompute_ref:
            # `Trainer.__init__` calls this after `DPOTrainer.__init__` has run its vision refusal and before it
            # reads the flag again to build (or not) the reference model, hash the model and precompute.
            self.args.precompute_ref_log_probs = True
            self.precompute_ref_logps = True

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._precompute_ref:
            self._signature_columns = list(dict.fromkeys([*self._signature_columns, *self.ref_columns]))

    def reference_terms(self, model, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The reference values of one collated batch, one (B,) tensor per name in `ref_columns`.

        Subclasses that need more reference terms (mDPO's chosen-on-corrupted-image) extend both.
        """
        chosen, rejected = self.compute_ref_log_probs(model, batch)
        return {"ref_chosen_logps": chosen, "ref_rejected_logps": rejected}

    def ref_cache_key(self, dataset: Dataset) -> str:
        """Key of a dataset's reference values: model tensors, data rows and every setting that changes them."""
        import transformers
        import trl

        a = self.args
        parts = {
            "model": self._precompute_model_hash,  # TRL's sha256 of the state dict, taken before any sharding
            "data": dataset_digest(dataset),
            "processor": processor_digest(self.processing_class),
            "collator": type(getattr(self.data_collator, "inner", self.data_collator)).__qualname__,
            "columns": list(self.ref_columns),
            "trainer": type(self).__qualname__,
            "settings": [a.max_length, a.truncation_mode, a.pad_to_multiple_of, a.ld_alpha, a.bf16, a.fp16],
            "versions": [torch.__version__, transformers.__version__, trl.__version__],
        }
        key = [hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]]
        broadcast_object_list(key, from_process=0)  # ZeRO-3 shards make the model hash rank-dependent
        return key[0]

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        if isinstance(dataset, IterableDataset):
            raise ValueError(
                "Precomputed reference log-probs need a map-style `Dataset` (its rows are indexed); got an "
                "`IterableDataset`. Pass a `Dataset`, or a `ref_model` to keep the reference in memory."
            )
        path = self.ref_cache_dir / f"{name}-{self.ref_cache_key(dataset)}.safetensors"
        hit = [path.is_file()]
        broadcast_object_list(hit, from_process=0)
        if hit[0]:
            log.info("reference log-probs for %s: cache hit %s", name, path)
            values = load_file(str(path))
        else:
            values = self._compute_reference(dataset, name, batch_size)
            if self.accelerator.is_main_process:
                write_atomically(path, lambda tmp: save_file(values, str(tmp), metadata={"rows": str(len(dataset))}))
            self.accelerator.wait_for_everyone()
        for column in self.ref_columns:
            if len(values[column]) != len(dataset):
                raise ValueError(f"{path} holds {len(values[column])} rows for {len(dataset)}; delete it")
            if column in dataset.column_names:
                dataset = dataset.remove_columns(column)
            dataset = dataset.add_column(column, values[column].tolist())
        return dataset

    def _compute_reference(self, dataset: Dataset, name: str, batch_size: int) -> dict[str, torch.Tensor]:
        """Batched reference values of every row: the initial model, eval mode, no grad; each rank its shard."""
        if self.ref_model is None and self.is_deepspeed_enabled:  # as TRL: parameters are not placed yet
            from trl.models import prepare_deepspeed

            if self._precompute_engine is None:
                self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
            model = self._precompute_engine
        else:
            model = self.ref_model or self.model
        collator = getattr(self.data_collator, "inner", self.data_collator)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=collator,
            shuffle=False,
            num_workers=self.args.dataloader_num_workers,
        )
        loader = self.accelerator.prepare(loader)
        was_training = model.training
        model.eval()
        parts: dict[str, list[torch.Tensor]] = {c: [] for c in self.ref_columns}
        log.info("reference log-probs for %s: %d rows in %d batches", name, len(dataset), len(loader))
        try:
            for batch in loader:
                terms = self.reference_terms(model, batch)
                # gather_for_metrics drops the rows the sampler repeated to even out the last shard
                terms = self.accelerator.gather_for_metrics({c: terms[c].float() for c in self.ref_columns})
                for c in self.ref_columns:
                    parts[c].append(terms[c].cpu())
        finally:
            model.train(was_training)
        return {c: torch.cat(v).contiguous() for c, v in parts.items()}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        # TRL precomputes a dataset handed to `evaluate` for text only; do it for vision data too.
        datasets = eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]
        missing = any(isinstance(d, Dataset) and not set(self.ref_columns) <= set(d.column_names) for d in datasets)
        if self._precompute_ref and self._is_vision_dataset and missing:
            if self.state.global_step > 0:
                raise ValueError(
                    "After training has started the initial model (the reference) is gone, so a new dataset cannot "
                    "be scored against it. Pass it as `eval_dataset` when building the trainer."
                )
            batch = self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size
            if isinstance(eval_dataset, dict):
                eval_dataset = {k: self._precompute_ref_logps(d, k, batch) for k, d in eval_dataset.items()}
            else:
                eval_dataset = self._precompute_ref_logps(eval_dataset, "eval", batch)
        return super().evaluate(eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
