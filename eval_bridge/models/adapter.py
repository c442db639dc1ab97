"""One adapter over Hugging Face VLMs: load (base, optional PEFT adapter), build chat inputs, generate in batches.

Every component of the toolkit that runs a model goes through `VLM`: the trust suite, the eval bridge, the
inference-time mitigations and RESA's trace sampling. Generation runs through one continuous-batching decode
loop (`eval_bridge.models.decode`): prompts are left-padded (decoder-only models continue from the right edge),
finished rows leave the batch and waiting samples join it, so a batch of prompts of different lengths, with and
without images, gives the same greedy text as generating each alone. Families the loop does not support use
transformers' `generate` in fixed batches.
"""

from __future__ import annotations

import copy
import logging
import math
import pickle
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from eval_bridge.models import decode
from eval_bridge.models.checked_loading import adapter_base, load_adapter_checked, unsafe_pickle_error
from eval_bridge.models.fingerprint import fingerprint
from eval_bridge.samples import Sample, SampleError, load_image

# model_type -> class name in transformers. Anything else falls back to AutoModelForImageTextToText.
FAMILY_CLASSES = {
    "llava": "LlavaForConditionalGeneration",
    "llava_next": "LlavaNextForConditionalGeneration",
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "smolvlm": "SmolVLMForConditionalGeneration",
}

log = logging.getLogger(__name__)
_FALLBACKS_LOGGED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. Greedy by default, as MultiTrust evaluates.

    Sampled outputs are reproducible for the same seed and samples: the decode loop seeds each sample's generator
    with `seed` + the sample's position in the list, whatever else shares its batch (plain `generate` seeds each
    batch, so there they also depend on the batch size).

    `batch_size` caps the rows decoding at once (plain `generate`: the rows of each batch); `token_budget` caps
    the decode loop's running rows x their padded length (prompt + generated), so short prompts run in wide
    batches and long ones in narrow ones. Neither changes greedy text.
    """

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int = 0
    batch_size: int = 8
    token_budget: int = 8192

    def cache_key(self) -> dict:
        """The fields that change generated text (batch size and token budget do not, for greedy decoding)."""
        key = asdict(self)
        key.pop("batch_size")
        key.pop("token_budget")
        if not self.do_sample:
            for name in ("temperature", "top_p", "top_k", "seed"):
                key.pop(name)
        return key


@dataclass
class Generation:
    """One generated response.

    Attributes:
        text: decoded response, special tokens removed.
        token_ids: generated token ids up to and including the end-of-sequence token, without padding.
        logprobs: per generated token, log p(token | prefix) under the model's raw (untempered) distribution,
            when requested.
        error: why no response came back (an API request that failed after its retries), else None. A failed
            generation's `text` is empty and is never cached or scored.
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    error: str | None = None


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _model_class(model_type: str):
    """The class that loads `model_type`: a known VLM family, any image-text-to-text model, or a text-only LM."""
    import transformers
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    name = FAMILY_CLASSES.get(model_type)
    cls = getattr(transformers, name, None) if name else None
    if cls is not None:
        return cls
    if model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return transformers.AutoModelForCausalLM  # text-only LMs: judges, the language side of a VLM
    return transformers.AutoModelForImageTextToText


def load_pretrained(
    model: str,
    adapter: str | None = None,
    *,
    trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
    revision: str | None = None,
):
    """The toolkit's one loader of saved models: `(model, processor)` from a local directory or hub id, plus an
    optional PEFT adapter on top. Evaluation (`VLM.load`) and training (`mitigation.training`) load through it,
    so a family that loads here works in both. (The base-model build starts from SmolLM2's GGUF file instead.)

    Weights load through `from_pretrained`: safetensors, or a `.bin` pickle weights-only (a pickle holding
    anything but tensors is refused with a `ValueError`, never unpickled). Code shipped with a checkpoint runs
    only with `trust_remote_code=True`. An adapter whose weights do not all fit the base is a `ValueError`
    naming the base it was trained on.
    """
    from transformers import AutoConfig, AutoProcessor

    from eval_bridge.models import dense_connector  # noqa: F401  (registers model_type "llava_dense_connector")

    common = dict(trust_remote_code=trust_remote_code, revision=revision)
    if (Path(model) / "adapter_config.json").is_file() and not (Path(model) / "config.json").is_file():
        # Not loaded on its recorded base behind the user's back: that path is often another machine's or gone.
        base = adapter_base(model) or "<its base model>"
        raise ValueError(
            f"{model} is a PEFT adapter directory, not a model: pass its base model as --model and this directory "
            f"as --adapter, e.g. --model {base} --adapter {model} (the base recorded in its adapter_config.json)"
        )
    try:
        config = AutoConfig.from_pretrained(model, **common)
    except OSError as err:
        raise OSError(
            f"cannot load model {model!r}: {err}. Pass a local directory saved with "
            "save_pretrained, or a hub id already in the local Hugging Face cache."
        ) from err
    model_cls = _model_class(config.model_type)
    try:
        net = model_cls.from_pretrained(model, config=config, dtype=dtype, **common)
    except pickle.UnpicklingError as err:
        raise unsafe_pickle_error(model, err) from None
    except ValueError as err:
        raise ValueError(
            f"{model!r} (model_type {config.model_type!r}) is neither an image-text-to-text model nor a "
            f"causal LM that transformers knows: {err}. Supported families: "
            f"{', '.join(FAMILY_CLASSES)}, any AutoModelForImageTextToText or AutoModelForCausalLM model."
        ) from err
    processor_source = model
    if adapter is not None:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"{adapter} has no adapter_config.json; pass a PEFT adapter directory "
                "(e.g. a LoRA checkpoint saved by the trainer) as --adapter"
            )
        net = load_adapter_checked(net, adapter, model)
        if any((Path(adapter) / f).is_file() for f in ("processor_config.json", "tokenizer_config.json")):
            processor_source = adapter
    processor = AutoProcessor.from_pretrained(processor_source, **common)
    return net, processor


class VLM:
    """A vision-language model with its processor, ready for batched chat generation.

    Build with `VLM.load(...)` from a path or hub id, or wrap an in-memory `(model, processor)` pair. A text-only
    causal LM (its "processor" is a tokenizer) works too, for text-only samples. With `raw_prompts=True` the
    prompt is sent as it is, without the chat template (for classifiers with their own prompt format, such as
    the HarmBench classifier).
    """

    def __init__(
        self,
        model,
        processor,
        *,
        name: str = "in-memory",
        adapter: str | None = None,
        raw_prompts: bool = False,
        revision: str | None = None,
    ):
        self.model = model
        self.processor = processor
        self.name = name
        self.adapter = adapter
        self.raw_prompts = raw_prompts
        self.revision = revision
        self.text_only = not hasattr(processor, "image_processor")
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            # Left padding needs a pad id; EOS is the conventional stand-in and is masked out by attention.
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._fingerprint: str | None = None
        self.decode_stats: decode.DecodeStats | None = None  # of the last decode-loop run
        self._fingerprinted_version: tuple | None = None

    @classmethod
    def load(
        cls,
        model: str,
        adapter: str | None = None,
        *,
        trust_remote_code: bool = False,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        revision: str | None = None,
        raw_prompts: bool = False,
    ) -> VLM:
        """Load a base model (local path or hub id) and, optionally, a PEFT adapter on top of it.

        Args:
            model: a local directory saved with `save_pretrained`, or a hub id (read from the local HF cache
                when offline).
            adapter: a PEFT adapter directory (e.g. a LoRA checkpoint). Its processor is used if it saved one.
            trust_remote_code: run model code shipped with the checkpoint. Off unless you opt in.
            dtype: weights dtype; default float32 on CPU, bfloat16 (or float16) on CUDA.
            device: default CUDA if available, else CPU.
            revision: hub revision (branch, tag or commit) for hub ids.
            raw_prompts: send prompts without the chat template (see the class docstring).
        """
        dev = torch.device(device) if device is not None else _default_device()
        torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype or _default_dtype(dev)
        net, processor = load_pretrained(
            model, adapter, trust_remote_code=trust_remote_code, dtype=torch_dtype, revision=revision
        )
        net.to(dev).eval()
        adapter_name = str(adapter) if adapter else None
        return cls(net, processor, name=str(model), adapter=adapter_name, raw_prompts=raw_prompts, revision=revision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def family(self) -> str:
        """The model_type of the base model's config (e.g. `llava`, `qwen2_vl`)."""
        return self.model.config.model_type

    def _weights_version(self) -> tuple:
        """Changes whenever a parameter or buffer is replaced or modified in place (torch's version counters)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return (len(tensors), sum(t._version for t in tensors), hash(tuple(id(t) for t in tensors)))

    @property
    def fingerprint(self) -> str:
        """A content hash of the weights: equal fingerprints mean the same model.

        Taken from the files the model was loaded from (and the hub revision); once the weights in memory change
        (an in-place edit, a swapped module), from the weights themselves, recomputed at each change.
        """
        version = self._weights_version()
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.name, self.adapter, model=self.model, revision=self.revision)
        elif version != self._fingerprinted_version:
            self._fingerprint = fingerprint("in-memory", model=self.model)
        self._fingerprinted_version = version
        return self._fingerprint

    @property
    def dtype_name(self) -> str:
        """The weights' dtype as a plain name ("float32", "bfloat16")."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def cache_identity(self) -> str:
        """What the response cache keys this model by: the weights' fingerprint, the dtype and the prompt mode."""
        return f"{self.fingerprint}-{self.dtype_name}" + ("-raw" if self.raw_prompts else "")

    def prompt_text(self, sample: Sample) -> str:
        """The sample rendered by the model's chat template, ending with the assistant's turn opener."""
        if self.raw_prompts:
            return sample.prompt
        messages = sample.messages()
        if self.text_only:
            if sample.images:
                raise SampleError(
                    f"{self.name} is a text-only model but the sample has images; use a VLM",
                    source=sample.source or f"sample {sample.id}",
                    field="images",
                )
            # Text-only chat templates expect plain string contents.
            messages = [{"role": m["role"], "content": m["content"][-1]["text"]} for m in messages]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def prepare(self, samples: Sequence[Sample]):
        """Tokenise a batch of samples with left padding; images are loaded and processed per sample.

        Returns:
            the processor's `BatchFeature` (input ids, attention mask, pixel inputs), on the model's device.
        """
        texts = [self.prompt_text(s) for s in samples]
        images = [self._images(s) for s in samples]
        if self.text_only:
            # The chat template already holds the special tokens; raw prompts get the tokenizer's (e.g. BOS).
            inputs = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=self.raw_prompts)
            return inputs.to(self.device)
        kwargs = dict(text=texts, padding=True, return_tensors="pt")
        if any(images):
            kwargs["images"] = images
        inputs = self.processor(**kwargs)
        return inputs.to(self.device)

    @staticmethod
    def pixel_views(inputs, images_per_row: Sequence[int]) -> list[list[torch.Tensor]]:
        """Views into `inputs["pixel_values"]` as `prepare` made them: per row, one per image (per image crop on
        Idefics3 / SmolVLM, whose processor splits images; all-zero padding crops left out).

        Writing into a view edits the inputs (e.g. VCD noising one row's images). Layouts: LLaVA and LLaVA-NeXT
        stack images first, row after row; Qwen2-VL flattens every image's patches into one tensor, image after
        image, sized by `image_grid_thw`; Idefics3 stacks rows first, each row's crops second.

        Args:
            images_per_row: how many images each row of `inputs` holds (`len(sample.images)`).
        """
        views: list[list[torch.Tensor]] = [[] for _ in images_per_row]
        pixels = inputs.get("pixel_values")
        if pixels is None or not sum(images_per_row):
            return views
        if "image_grid_thw" in inputs:
            units = list(pixels.split(inputs["image_grid_thw"].prod(-1).tolist()))
        elif "pixel_attention_mask" in inputs:
            if pixels.shape[0] != len(images_per_row):
                raise ValueError(f"pixel_values hold {pixels.shape[0]} rows, expected {len(images_per_row)}")
            for row, n in enumerate(images_per_row):
                views[row] = [crop for crop in pixels[row] if n and bool(crop.any())]
            return views
        else:
            units = list(pixels.unbind(0))
        if len(units) != sum(images_per_row):
            raise ValueError(
                f"pixel_values hold {len(units)} images but the rows have {sum(images_per_row)}; this processor's "
                "pixel layout is not one `VLM.pixel_views` knows (LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics3)"
            )
        start = 0
        for row, n in enumerate(images_per_row):
            views[row], start = units[start : start + n], start + n
        return views

    def _images(self, sample: Sample) -> list:
        try:
            return [load_image(ref) for ref in sample.images]
        except (OSError, ValueError) as err:
            raise SampleError(
                f"cannot load image: {err}", source=sample.source or f"sample {sample.id}", field="images"
            ) from err

    def prompt_lengths(self, samples: Sequence[Sample]) -> list[int]:
        """Prompt tokens per sample as `prepare` makes them, each image counted as the tokens it expands into.

        Exact where the processor can count an image's tokens from its size (LLaVA, LLaVA-NeXT, Qwen2-VL,
        Idefics3); otherwise an image counts as its placeholder. Orders samples and sizes batches.
        """
        texts = [self.prompt_text(s) for s in samples]
        add_special = self.raw_prompts if self.text_only else True
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=add_special)["input_ids"]]
        count = getattr(self.processor, "_get_num_multimodal_tokens", None)
        if self.text_only or count is None:
            return lengths
        for i, sample in enumerate(samples):
            if sample.images:
                sizes = [(image.height, image.width) for image in self._images(sample)]
                lengths[i] += sum(count(image_sizes=sizes).num_image_tokens) - len(sizes)
        return lengths

    def decode_requests(self, samples: Sequence[Sample], settings: GenerationSettings) -> list[decode.DecodeRequest]:
        """One single-row decode request per sample; sample i samples with seed `settings.seed + i`."""
        lengths = self.prompt_lengths(samples)
        return [
            decode.DecodeRequest(rows=(s,), length=n, n_images=len(s.images), seed=settings.seed + i)
            for i, (s, n) in enumerate(zip(samples, lengths, strict=True))
        ]

    def decode(
        self,
        requests: Sequence[decode.DecodeRequest],
        settings: GenerationSettings = GenerationSettings(),
        *,
        prepare=None,
        return_logprobs: bool = False,
        logits_hook: decode.LogitsHook | None = None,
        progress: bool = False,
    ) -> list[decode.DecodeOutput]:
        """Decode requests through the continuous-batching loop (`eval_bridge.models.decode.DecodeLoop`).

        The entry point for methods that decode their own way (several rows per request, a logits hook); their
        rows go through `prepare` (default `VLM.prepare`, so rows are samples). The loop's counters and timings
        are left in `self.decode_stats`.

        Raises:
            NotImplementedError: the loop does not support this model or generation config (the reason is named).
        """
        from tqdm.auto import tqdm

        config = self._generation_config(settings, return_logprobs)
        reason = decode.unsupported_reason(self.model, config)
        if reason is not None:
            raise NotImplementedError(f"{self.name}: the decode loop cannot run this model: {reason}")
        loop = decode.DecodeLoop(
            self.model,
            prepare or self.prepare,
            config,
            max_rows=settings.batch_size,
            token_budget=settings.token_budget,
            logits_hook=logits_hook,
            return_logprobs=return_logprobs,
        )
        with tqdm(total=len(requests), desc="generate", unit="sample", disable=not progress) as bar:
            outputs = loop.run(requests, on_done=bar.update)
        self.decode_stats = loop.stats
        return outputs

    @torch.inference_mode()
    def generate(
        self,
        samples: Sequence[Sample],
        settings: GenerationSettings = GenerationSettings(),
        *,
        return_logprobs: bool = False,
        progress: bool = False,
        continuous: bool = True,
    ) -> list[Generation]:
        """Generate one response per sample, in input order.

        By default through the continuous-batching decode loop: at most `settings.batch_size` rows and
        `settings.token_budget` tokens at once, finished rows leaving and waiting samples joining. With
        `continuous=False`, or for a model the loop does not support (logged once), transformers' `generate` runs
        `settings.batch_size` samples at a time. Either way samples are grouped by image count and prompt length
        so that batches carry little padding.
        """
        if continuous:
            reason = decode.unsupported_reason(self.model, self._generation_config(settings, return_logprobs))
            if reason is None:
                requests = self.decode_requests(samples, settings)
                outputs = self.decode(requests, settings, return_logprobs=return_logprobs, progress=progress)
                return self.generations(outputs)
            if (self.family, reason) not in _FALLBACKS_LOGGED:
                _FALLBACKS_LOGGED.add((self.family, reason))
                log.warning("%s: generating with transformers' generate, not the decode loop: %s", self.name, reason)
        return self._generate_plain(samples, settings, return_logprobs=return_logprobs, progress=progress)

    def generations(self, outputs: Sequence[decode.DecodeOutput]) -> list[Generation]:
        """The decode loop's outputs as `Generation`s (text decoded, special tokens removed)."""
        return [self._generation(out.token_ids, out.logprobs) for out in outputs]

    def _generation(self, token_ids: list[int], logprobs: list[float] | None) -> Generation:
        return Generation(self.tokenizer.decode(token_ids, skip_special_tokens=True), token_ids, logprobs)

    def _generate_plain(
        self, samples: Sequence[Sample], settings: GenerationSettings, *, return_logprobs: bool, progress: bool
    ) -> list[Generation]:
        """transformers' `generate`, `settings.batch_size` samples per batch (each batch runs to its longest)."""
        from tqdm.auto import tqdm

        order = sorted(range(len(samples)), key=lambda i: (len(samples[i].images), len(self.prompt_text(samples[i]))))
        results: list[Generation | None] = [None] * len(samples)
        config = self._generation_config(settings, return_logprobs)
        n_batches = math.ceil(len(samples) / settings.batch_size)
        for b in tqdm(range(n_batches), desc="generate", unit="batch", disable=not progress):
            idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            if settings.do_sample:
                torch.manual_seed(settings.seed + b)
            generations = self._generate_batch([samples[i] for i in idx], config, return_logprobs)
            for i, gen in zip(idx, generations, strict=True):
                results[i] = gen
        return results

    def _generation_config(self, settings: GenerationSettings, return_logprobs: bool):
        config = copy.deepcopy(self.model.generation_config)
        config.max_new_tokens = settings.max_new_tokens
        config.do_sample = settings.do_sample
        if settings.do_sample:
            config.temperature, config.top_p, config.top_k = settings.temperature, settings.top_p, settings.top_k
        else:
            config.temperature, config.top_p, config.top_k = None, None, None
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id
        config.return_dict_in_generate = True
        config.output_logits = return_logprobs
        return config

    def _generate_batch(self, batch: Sequence[Sample], config, return_logprobs: bool) -> list[Generation]:
        inputs = self.prepare(batch)
        out = self.model.generate(**inputs, generation_config=config)
        new = out.sequences[:, inputs["input_ids"].shape[1] :]
        logprobs = None
        if return_logprobs:
            logits = torch.stack(out.logits, dim=1).float()
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        eos = config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        results = []
        for row in range(new.shape[0]):
            ids = new[row].tolist()
            end = next((k + 1 for k, t in enumerate(ids) if t in eos_ids), len(ids))
            ids = ids[:end]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            lp = logprobs[row, :end].tolist() if logprobs is not None else None
            results.append(Generation(text=text, token_ids=ids, logprobs=lp))
        return results

    @torch.inference_mode()
    def next_token_logprobs(
        self,
        samples: Sequence[Sample],
        candidates: Sequence[str | int] | None = None,
        *,
        batch_size: int = 8,
        token_budget: int = 8192,
    ) -> torch.Tensor:
        """Log-probabilities of the first response token after each sample's prompt (raw model distribution).

        Prompts are prefilled in batches as the decode loop admits them (no decoding). E.g. ECSO's yes-vs-no
        decision: `next_token_logprobs(samples, ["Yes", "No"])`.

        Args:
            candidates: token ids, or strings that must each encode to exactly one token; default: the full
                vocabulary.

        Returns:
            `(len(samples), len(candidates))`, or `(len(samples), vocab)` without candidates; float32, on CPU.
        """
        ids = [self._candidate_id(c) for c in candidates] if candidates is not None else None
        config = self._generation_config(GenerationSettings(max_new_tokens=1), False)
        loop = decode.DecodeLoop(self.model, self.prepare, config, max_rows=batch_size, token_budget=token_budget)
        logits = loop.next_token_logits(self.decode_requests(samples, GenerationSettings()))
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
        return log_probs if ids is None else log_probs[:, ids]

    def _candidate_id(self, candidate: str | int) -> int:
        if isinstance(candidate, int):
            return candidate
        ids = self.tokenizer(candidate, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"candidate {candidate!r} encodes to {len(ids)} tokens {ids} with {self.name}'s tokenizer; pass a "
                "string that is one token (e.g. with or without a leading space) or the token id itself"
            )
        return ids[0]
