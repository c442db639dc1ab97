"""One decode loop over the model's KV cache, with continuous batching: finished rows leave, waiting ones join.

`transformers`' `generate` keeps every row of a batch until the longest one finishes, so a batch of mostly short
answers pays for its one long answer in every row. This loop keeps one running batch instead:

1. *Admit*: waiting requests (sorted by image count, then prompt length) join while the running batch stays under
   a token budget (rows x padded length) and a row cap. They are prefilled together, left-padded, with their
   pixel inputs, through the model's own `prepare_inputs_for_generation` and position ids (Qwen2-VL's M-RoPE
   positions included); their first token comes from the prefill.
2. *Merge*: their KV cache, attention mask and positions are left-padded to the running batch's length (or the
   running batch to theirs) and stacked under it.
3. *Step*: one forward over all running rows, each fed its own last token at its own next position.
4. *Leave*: rows whose request produced EOS or `max_new_tokens` tokens are dropped from the cache, and padding
   columns no row needs any more are trimmed.

A request may own several rows (e.g. VCD's clean row and its noised twin): its `combine` turns the logits of its
rows into one next-token distribution, and the token chosen from it is fed to every row of the request. A
loop-wide `logits_hook` may then rewrite the requests' logits (e.g. ban a token) before the generation config's
processors (suppressed tokens, repetition penalty, temperature, top-k / top-p) and the choice.

Greedy outputs equal one-at-a-time `generate` up to float rounding (padding is masked out exactly, so only the
order of summation in batched kernels differs). Sampling draws from one generator per request, seeded by the
caller, so a request's sample does not depend on which others share its batch. Families the loop does not know
(`unsupported_reason`) decode with `generate`.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

# VLM families whose prefill inputs and decode steps are checked against `generate` (tests/eval_bridge/models/
# test_decode_loop.py). Text-only causal LMs pass when they use the generic input preparation.
LOOP_FAMILIES = ("llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "llava_dense_connector")

# Generation-config fields the loop does not implement; a config that sets one decodes with `generate`.
_UNSUPPORTED_CONFIG = {
    "stop_strings": lambda v: bool(v),
    "forced_eos_token_id": lambda v: v is not None,  # needs each row's absolute max_length
    "guidance_scale": lambda v: v not in (None, 1, 1.0),  # a second, unconditional forward per step
    "max_time": lambda v: v is not None,
    "num_return_sequences": lambda v: v not in (None, 1),
    "prompt_lookup_num_tokens": lambda v: v is not None,
}

# Processors that read only the scores, never the token history: one list serves all rows at once.
_HISTORY_FREE_PROCESSORS = (
    "SuppressTokensLogitsProcessor",
    "InfNanRemoveLogitsProcessor",
    "TemperatureLogitsWarper",
    "TopKLogitsWarper",
    "TopPLogitsWarper",
    "MinPLogitsWarper",
    "TypicalLogitsWarper",
    "EpsilonLogitsWarper",
    "EtaLogitsWarper",
    "LogitNormalization",
)

Combine = Callable[[torch.Tensor], torch.Tensor]
LogitsHook = Callable[[torch.Tensor, Sequence["DecodeRequest"]], torch.Tensor]


@dataclass
class DecodeRequest:
    """One response to decode: its prompt rows and how their logits become one next-token distribution.

    Attributes:
        rows: one entry per prompt row, in the form the loop's `prepare` takes (`Sample`s for `VLM.prepare`).
        length: prompt tokens of its longest row (images counted as the tokens they expand into): orders the
            queue and counts against the token budget.
        n_images: images per row; a prefill holds requests with the same count.
        combine: `(logits of its rows, shape (rows, vocab)) -> next-token logits (vocab,)`; default: row 0's.
        seed: seeds this request's sampling generator (sampling only).
    """

    rows: Sequence[Any]
    length: int
    n_images: int = 0
    combine: Combine | None = None
    seed: int = 0


@dataclass
class DecodeOutput:
    """What one request produced: token ids up to and including EOS, and optionally their log-probs."""

    token_ids: list[int]
    logprobs: list[float] | None = None


@dataclass
class DecodeStats:
    """Counters and wall times of one `DecodeLoop.run` (where the time went)."""

    prefills: int = 0
    prefill_tokens: int = 0  # rows x padded length over all prefills
    prompt_tokens: int = 0  # the real (unpadded) prompt tokens among them
    steps: int = 0
    joined_running: int = 0  # requests admitted while other rows were mid-decode
    peak_rows: int = 0
    peak_tokens: int = 0  # the most running rows x padded length right after an admission
    prepare_s: float = 0.0  # the processor: tokenising, image loading and preprocessing
    prefill_s: float = 0.0  # prefill forwards
    step_s: float = 0.0  # decode-step forwards
    total_s: float = 0.0

    @property
    def other_s(self) -> float:
        """Time outside the processor and the forwards: token choice, cache merges, Python."""
        return self.total_s - self.prepare_s - self.prefill_s - self.step_s


def combine_rows(requests: Sequence[DecodeRequest], row_logits: torch.Tensor) -> torch.Tensor:
    """Row logits `(rows, vocab)`, requests' rows in order -> one row per request `(requests, vocab)`.

    Each request's `combine` sees only its own rows; without one, a request takes its first row.
    """
    n_rows = sum(len(r.rows) for r in requests)
    if n_rows != row_logits.shape[0]:
        raise ValueError(f"the requests own {n_rows} rows but the logits have {row_logits.shape[0]}")
    if n_rows == len(requests) and all(r.combine is None for r in requests):
        return row_logits
    out, row = [], 0
    for request in requests:
        own = row_logits[row : row + len(request.rows)]
        out.append(request.combine(own) if request.combine is not None else own[0])
        row += len(request.rows)
    return torch.stack(out)


def base_model(model):
    """The transformers model under a PEFT wrapper (LoRA layers live inside it), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def unsupported_reason(model, config) -> str | None:
    """Why the loop cannot decode `model` with generation config `config` (None when it can)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer
    from transformers.generation import GenerationMixin
    from transformers.generation.configuration_utils import GenerationMode

    if getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False):
        return "PEFT prompt-learning adapters add virtual tokens inside forward"
    net = base_model(model)
    cfg = net.config
    if cfg.is_encoder_decoder:
        return "encoder-decoder models are not supported"
    mode = config.get_generation_mode()
    if mode not in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE):
        return f"generation mode {mode.value!r} is not greedy or sampling"
    for name, is_set in _UNSUPPORTED_CONFIG.items():
        if is_set(getattr(config, name, None)):
            return f"generation config sets {name}"
    is_text_lm = not hasattr(cfg, "vision_config")
    if cfg.model_type not in LOOP_FAMILIES and not is_text_lm:
        return f"VLM family {cfg.model_type!r} is not one the loop is checked on ({', '.join(LOOP_FAMILIES)})"
    if is_text_lm and type(net).prepare_inputs_for_generation is not GenerationMixin.prepare_inputs_for_generation:
        return f"{type(net).__name__} prepares its own generation inputs"
    if not _accepts(net, "position_ids"):
        return f"{type(net).__name__}.forward takes no position_ids (left padding needs them)"
    cache = DynamicCache(config=cfg)
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        return "its cache has sliding-window or non-attention layers"
    return None


def _accepts(net, name: str) -> bool:
    return name in inspect.signature(net.forward).parameters


@dataclass
class _Active:
    """A request being decoded: what it generated so far and its own logits processors / generator."""

    index: int
    request: DecodeRequest
    history: torch.Tensor  # (1, L): row 0's prompt ids then the generated ids, for the logits processors
    processors: Any  # this request's own processors, or None when the loop's shared ones serve it
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.request.rows)


@dataclass
class _Batch:
    """The running rows' state; row i of every tensor (and of the cache) belongs to the same prompt row.

    `positions` holds each row's last position id: `(rows, 1)`, or `(4, rows, 1)` for M-RoPE families (the text
    position plus the temporal / height / width axes). Qwen2-VL's per-row rope delta is the gap between those
    axes and the text position, so it travels with the row through every merge and selection.
    """

    cache: Any
    attention_mask: torch.Tensor  # (rows, cache length), 0 over left padding
    positions: torch.Tensor
    last_tokens: torch.Tensor  # (rows, 1): the token each row is fed next
    token_types: dict[str, torch.Tensor]  # e.g. mm_token_type_ids -> (rows, 1), the value for a new text token

    @property
    def rows(self) -> int:
        return self.attention_mask.shape[0]

    @property
    def length(self) -> int:
        return self.attention_mask.shape[1]

    def select(self, keep: torch.Tensor) -> None:
        """Keep only rows `keep` (a 1-D index tensor), then drop padding columns no kept row needs."""
        self.cache.batch_select_indices(keep)
        self.attention_mask = self.attention_mask[keep]
        self.positions = self.positions[..., keep, :]
        self.last_tokens = self.last_tokens[keep]
        self.token_types = {k: v[keep] for k, v in self.token_types.items()}
        first = int(self.attention_mask.any(0).int().argmax())
        if first > 0:
            self.attention_mask = self.attention_mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]

    def extend(self, other: _Batch) -> None:
        """Stack `other`'s rows under these, left-padding whichever is shorter (its mask is 0 there)."""
        length = max(self.length, other.length)
        self._left_pad(length)
        other._left_pad(length)
        self.attention_mask = torch.cat([self.attention_mask, other.attention_mask])
        self.positions = torch.cat([self.positions, other.positions], dim=-2)
        self.last_tokens = torch.cat([self.last_tokens, other.last_tokens])
        self.token_types = {
            k: torch.cat([self._token_type(k), other._token_type(k)]) for k in {*self.token_types, *other.token_types}
        }
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])

    def _token_type(self, name: str) -> torch.Tensor:
        default = self.last_tokens.new_zeros((self.rows, 1))
        return self.token_types.get(name, default)

    def _left_pad(self, length: int) -> None:
        pad = length - self.length
        if pad > 0:
            self.attention_mask = F.pad(self.attention_mask, (pad, 0))
            for layer in self.cache.layers:
                layer.keys = F.pad(layer.keys, (0, 0, pad, 0))
                layer.values = F.pad(layer.values, (0, 0, pad, 0))


class DecodeLoop:
    """Continuous-batching decoding of `DecodeRequest`s with one model (see the module docstring).

    Args:
        model: a transformers generative model (or a PEFT wrapper of one) that `unsupported_reason` accepts.
        prepare: turns a list of rows into the model's left-padded inputs (`input_ids`, `attention_mask`, pixel
            inputs) on the model's device, rows in order; `VLM.prepare` for samples.
        config: the generation config (`max_new_tokens`, `do_sample`, EOS ids, processors' settings).
        max_rows: at most this many rows decode at once.
        token_budget: running rows x padded length stays within this when admitting (one request always fits).
        logits_hook: `(logits (requests, vocab), requests) -> logits`, applied to the requests' logits each step,
            before the config's processors.
        return_logprobs: record log p(token) under each request's logits (the raw model logits for a one-row
            request), before the hook and processors, as `generate`'s `output_logits` gives them.
    """

    def __init__(
        self,
        model,
        prepare: Callable[[list[Any]], Mapping[str, torch.Tensor]],
        config,
        *,
        max_rows: int = 16,
        token_budget: int = 8192,
        logits_hook: LogitsHook | None = None,
        return_logprobs: bool = False,
    ):
        if max_rows < 1 or token_budget < 1:
            raise ValueError(f"max_rows ({max_rows}) and token_budget ({token_budget}) must be positive")
        self.model = base_model(model)
        self.prepare = prepare
        self.config = copy.deepcopy(config)
        self.device = next(self.model.parameters()).device
        self.model._prepare_special_tokens(self.config, kwargs_has_attention_mask=True, device=self.device)
        eos = self.config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self.max_new_tokens = self.config.max_new_tokens
        self.max_rows = max_rows
        self.token_budget = token_budget
        self.logits_hook = logits_hook
        self.return_logprobs = return_logprobs
        # A prefill of a handful of rows wastes the matmuls' width: wait for a quarter of the rows to free up.
        # Past that size, a prefill stops growing before padding would make up more than this share of its tokens.
        self.min_group = max(1, max_rows // 4)
        self.max_padding = 0.25
        self.extra_inputs = {"logits_to_keep": 1} if self.model._supports_logits_to_keep() else {}
        self.takes_positions = _accepts(self.model, "position_ids")
        shared = self._processors(prompt_length=1)
        history_free = all(type(p).__name__ in _HISTORY_FREE_PROCESSORS for p in shared)
        self.shared_processors = shared if history_free else None
        self.stats = DecodeStats()

    # -- the loop ------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def run(self, requests: Sequence[DecodeRequest], on_done: Callable[[int], None] | None = None):
        """Decode every request; returns one `DecodeOutput` per request, in order.

        `on_done(n)` is called whenever n more requests finish (for progress bars).
        """
        start = time.perf_counter()
        self.stats = DecodeStats()
        waiting = self._queue(requests)
        outputs: list[DecodeOutput | None] = [None] * len(requests)
        running: _Batch | None = None  # None exactly when no request is active
        active: list[_Active] = []

        def finish(done: list[_Active]) -> None:
            for a in done:
                outputs[a.index] = DecodeOutput(a.tokens, a.logprobs if self.return_logprobs else None)
            if done and on_done is not None:
                on_done(len(done))

        while waiting or active:
            group = self._admissible(waiting, running)
            if group:
                del waiting[: len(group)]
                self.stats.joined_running += len(group) if active else 0
                newcomers, batch = self._prefill(group)
                kept, done = self._leave(newcomers, batch)
                finish(done)
                if kept:
                    if running is None:
                        running = batch
                    else:
                        running.extend(batch)
                    active.extend(kept)
                    self.stats.peak_rows = max(self.stats.peak_rows, running.rows)
                    self.stats.peak_tokens = max(self.stats.peak_tokens, running.rows * (running.length + 1))
                continue
            active, done = self._step(active, running)
            finish(done)
            if not active:
                running = None
        self.stats.total_s = time.perf_counter() - start
        return outputs

    @staticmethod
    def _queue(requests: Sequence[DecodeRequest]) -> list[tuple[int, DecodeRequest]]:
        """(index, request) pairs by image count, then prompt length: little padding in each prefill."""
        order = sorted(range(len(requests)), key=lambda i: (requests[i].n_images, requests[i].length))
        return [(i, requests[i]) for i in order]

    def _admissible(self, waiting: list[tuple[int, DecodeRequest]], running: _Batch | None) -> list:
        """The queue's head that joins now: one image count, within the row cap and the token budget.

        With rows running, a group smaller than `min_group` waits for more rows to free up (unless it is all that
        is left of its image count); with none running, the head always joins, even a request over the budget.
        """
        if not waiting:
            return []
        rows = running.rows if running is not None else 0
        length = running.length + 1 if running is not None else 0
        n_images = waiting[0][1].n_images
        group, group_rows, prompt_tokens = [], 0, 0
        for item in waiting:
            request = item[1]
            if request.n_images != n_images:
                break
            new_rows, new_length = rows + len(request.rows), max(length, request.length + 1)
            if (group or running is not None) and (
                new_rows > self.max_rows or new_rows * new_length > self.token_budget
            ):
                break
            # The queue is sorted by length, so each newcomer pads the whole group up to its own length.
            padded = (group_rows + len(request.rows)) * request.length
            real = prompt_tokens + len(request.rows) * request.length
            if group_rows >= self.min_group and padded > (1 + self.max_padding) * real:
                break
            group.append(item)
            rows, length = new_rows, new_length
            group_rows, prompt_tokens = group_rows + len(request.rows), real
        if running is None or len(group) == len(waiting) or waiting[len(group)][1].n_images != n_images:
            return group
        return group if sum(len(r.rows) for _, r in group) >= self.min_group else []

    # -- prefill ---------------------------------------------------------------------------------------------

    def _prefill(self, group: list[tuple[int, DecodeRequest]]) -> tuple[list[_Active], _Batch]:
        """Prefill the requests' rows together; returns them (first token chosen) and their batch state."""
        t0 = time.perf_counter()
        inputs = dict(self.prepare([row for _, request in group for row in request.rows]))
        t1 = time.perf_counter()
        logits, batch, input_ids = self._forward_prompts(inputs)
        self.stats.prefill_s += time.perf_counter() - t1
        self.stats.prepare_s += t1 - t0
        self.stats.prefills += 1
        self.stats.prefill_tokens += batch.attention_mask.numel()
        self.stats.prompt_tokens += int(batch.attention_mask.sum())
        active, row = [], 0
        for index, request in group:
            prompt = input_ids[row : row + 1, batch.attention_mask[row].bool()]
            active.append(self._activate(index, request, prompt))
            row += len(request.rows)
        tokens = self._choose(active, logits)
        batch.last_tokens = self._row_tokens(active, tokens)
        return active, batch

    def _forward_prompts(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, _Batch, torch.Tensor]:
        """One forward over left-padded prompts: next-token logits per row, the batch state, the input ids."""
        from transformers.cache_utils import DynamicCache

        input_ids = inputs.pop("input_ids")
        kwargs = {**inputs, "use_cache": True}
        # The family's own positions: cumulative over the mask for left padding, M-RoPE for Qwen2-VL.
        positions = self.model._prepare_position_ids_for_generation(input_ids, {**kwargs, "input_ids": input_ids})
        if self.takes_positions:
            kwargs["position_ids"] = positions
        model_inputs = self.model.prepare_inputs_for_generation(
            input_ids,
            cache=DynamicCache(config=self.model.config),
            is_first_iteration=True,
            **kwargs,
            **self.extra_inputs,
        )
        out = self.model(**model_inputs, return_dict=True)
        token_types = {}
        if "mm_token_type_ids" in inputs:  # generated tokens are text
            token_types["mm_token_type_ids"] = torch.zeros_like(inputs["mm_token_type_ids"][:, -1:])
        if "token_type_ids" in inputs:  # generated tokens repeat the last type, as in `generate`
            token_types["token_type_ids"] = inputs["token_type_ids"][:, -1:]
        batch = _Batch(
            cache=out.cache,
            attention_mask=inputs["attention_mask"],
            positions=positions[..., -1:],
            last_tokens=input_ids[:, -1:],
            token_types=token_types,
        )
        return out.logits[:, -1].float(), batch, input_ids

    def _processors(self, prompt_length: int, prompt: torch.Tensor | None = None):
        """The generation config's logits processors as `generate` builds them for one unpadded prompt."""
        return self.model._get_logits_processor(
            generation_config=self.config,
            input_ids_seq_length=prompt_length,
            encoder_input_ids=prompt,
            device=self.device,
            model_kwargs={"attention_mask": torch.ones((1, prompt_length), dtype=torch.long, device=self.device)},
        )

    def _activate(self, index: int, request: DecodeRequest, prompt: torch.Tensor) -> _Active:
        # Processors that read the history (repetition penalty, min_new_tokens) get the request's own prompt.
        processors = None if self.shared_processors is not None else self._processors(prompt.shape[1], prompt)
        generator = None
        if self.config.do_sample:
            generator = torch.Generator(device=self.device).manual_seed(request.seed)
        return _Active(index, request, prompt, processors, generator)

    # -- decode steps ----------------------------------------------------------------------------------------

    def _step(self, active: list[_Active], batch: _Batch) -> tuple[list[_Active], list[_Active]]:
        """One forward over every running row; returns the requests still running and those that finished."""
        t0 = time.perf_counter()
        mask = torch.cat([batch.attention_mask, batch.attention_mask.new_ones((batch.rows, 1))], dim=1)
        positions = batch.positions + 1
        model_inputs = self.model.prepare_inputs_for_generation(
            batch.last_tokens,
            next_sequence_length=1,
            cache=batch.cache,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **batch.token_types,
            **self.extra_inputs,
        )
        out = self.model(**model_inputs, return_dict=True)
        logits = out.logits[:, -1].float()
        self.stats.step_s += time.perf_counter() - t0
        self.stats.steps += 1
        batch.cache, batch.attention_mask, batch.positions = out.cache, mask, positions
        batch.last_tokens = self._row_tokens(active, self._choose(active, logits))
        return self._leave(active, batch)

    def _choose(self, active: list[_Active], row_logits: torch.Tensor) -> torch.Tensor:
        """Pick each request's next token from its rows' logits; records tokens and log-probs."""
        logits = combine_rows([a.request for a in active], row_logits)
        log_probs = torch.log_softmax(logits, -1) if self.return_logprobs else None  # before any hook edits them
        scores = self.logits_hook(logits, [a.request for a in active]) if self.logits_hook else logits
        if self.shared_processors is not None:
            scores = self.shared_processors(scores.new_zeros((len(active), 1), dtype=torch.long), scores)
        else:
            scores = torch.cat([a.processors(a.history, scores[r : r + 1]) for r, a in enumerate(active)])
        if self.config.do_sample:
            probs = scores.softmax(-1)
            tokens = torch.cat([torch.multinomial(probs[r], 1, generator=a.generator) for r, a in enumerate(active)])
        else:
            tokens = scores.argmax(-1)
        if log_probs is not None:
            logprobs = log_probs.gather(-1, tokens[:, None]).squeeze(-1).tolist()
        for r, (a, token) in enumerate(zip(active, tokens.tolist(), strict=True)):
            a.tokens.append(token)
            if a.processors is not None:
                a.history = torch.cat([a.history, tokens[r : r + 1, None]], dim=1)
            if log_probs is not None:
                a.logprobs.append(logprobs[r])
        return tokens

    @staticmethod
    def _row_tokens(active: list[_Active], tokens: torch.Tensor) -> torch.Tensor:
        """Each request's token for every one of its rows, as the next input (rows, 1)."""
        counts = torch.tensor([a.n_rows for a in active], device=tokens.device)
        return tokens.repeat_interleave(counts)[:, None]

    def _leave(self, active: list[_Active], batch: _Batch) -> tuple[list[_Active], list[_Active]]:
        """Drop the rows of finished requests (EOS or max_new_tokens) from `batch`."""
        kept, done, keep_rows, row = [], [], [], 0
        for a in active:
            finished = a.tokens[-1] in self.eos_ids or len(a.tokens) >= self.max_new_tokens
            (done if finished else kept).append(a)
            if not finished:
                keep_rows.extend(range(row, row + a.n_rows))
            row += a.n_rows
        if done and kept:
            batch.select(torch.tensor(keep_rows, device=batch.attention_mask.device))
        return kept, done

    # -- prompts only ----------------------------------------------------------------------------------------

    @torch.inference_mode()
    def next_token_logits(self, requests: Sequence[DecodeRequest]) -> torch.Tensor:
        """Raw next-token logits after each request's prompt, `(requests, vocab)` in request order.

        Prefills in groups as `run` admits them (image count, then length; rows and token budget), without
        decoding; a multi-row request's rows go through its `combine`.
        """
        waiting = self._queue(requests)
        order, results = [], []
        while waiting:
            group = self._admissible(waiting, None)
            del waiting[: len(group)]
            logits, _, _ = self._forward_prompts(dict(self.prepare([row for _, r in group for row in r.rows])))
            results.append(combine_rows([r for _, r in group], logits))
            order.extend(i for i, _ in group)
        if not results:
            return torch.zeros(0)
        by_order = torch.cat(results)
        out = torch.empty_like(by_order)
        out[torch.tensor(order, dtype=torch.long, device=out.device)] = by_order
        return out
