"""`vcd`: Visual Contrastive Decoding (METHODS.md 3.7), against object hallucination (truthfulness).

Leng et al., "Mitigating Object Hallucinations in Large Vision-Language Models through Visual Contrastive
Decoding", CVPR 2024, arXiv 2311.16922 (repo DAMO-NLP-SG/VCD).

At every step, with the same text prefix, l = the logits given the clean image and l' = the logits given a
diffusion-noised copy of it; the next token comes from

    s = (1 + alpha) * l - alpha * l',   with s set to -inf wherever l < log(beta) + max(l)

(the adaptive plausibility cutoff, on the clean logits only), after which the generation config's processors
(repetition penalty, temperature, top-k / top-p) act on s, and the token is argmax s (greedy) or drawn from
softmax(s) (sampling). Unlike upstream, greedy decoding applies VCD too.

How it runs here: each image sample is one `DecodeRequest` of two rows, the clean sample and its noised twin,
decoded by the suite's one continuous-batching loop (`VLM.decode`). Both rows have the same `input_ids` (the
noise changes pixels only, never the resolution, so image-token counts and Qwen2-VL's M-RoPE grids match), sit
side by side in the same forward pass and KV cache, and receive the same chosen token; the request's `combine`
is the contrast above. Text-only samples decode plainly, one row. The noise is added to the normalised pixel
tensor `VLM.prepare` makes, through `VLM.pixel_views`, so every family's own image layout (LLaVA's image stack,
Qwen2-VL's flattened patches, Idefics3's crops) is noised in place.

Cost: about twice the decode compute and KV memory for image samples (`batch_size` counts samples: VCD runs
twice that many rows), a second vision-tower pass; no training.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from eval_bridge.cache import sample_hash, stable_hash
from eval_bridge.models.adapter import VLM, Generation, GenerationSettings
from eval_bridge.models.decode import DecodeRequest
from eval_bridge.samples import Sample

DIFFUSION_STEPS = 1000  # upstream's DDPM schedule length


@dataclass
class VcdConfig:
    """VCD's settings (defaults: upstream's evaluation scripts, METHODS.md 3.7)."""

    alpha: float = field(
        default=1.0,
        metadata={"help": "Contrast strength: s = (1 + alpha) * clean - alpha * noised. 0 gives plain decoding."},
    )
    beta: float = field(
        default=0.1,
        metadata={
            "help": "Adaptive plausibility cutoff: keep tokens whose clean probability is at least beta times the "
            "top one (upstream's POPE script uses 0.2). 0 keeps every token."
        },
    )
    noise_step: int = field(
        default=500,
        metadata={"help": f"DDPM forward-noising step T (0..{DIFFUSION_STEPS - 1}) of the distorted image."},
    )
    noise_seed: int = field(
        default=0,
        metadata={"help": "Seeds the Gaussian noise; each image of each sample draws its own from it."},
    )

    def __post_init__(self):
        if not self.alpha >= 0:
            raise ValueError(f"vcd: alpha must be >= 0 (0 is plain decoding), got {self.alpha}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"vcd: beta must be in [0, 1] (a share of the top token's probability), got {self.beta}")
        if not 0 <= self.noise_step < DIFFUSION_STEPS:
            raise ValueError(f"vcd: noise_step must be in 0..{DIFFUSION_STEPS - 1}, got {self.noise_step}")


def noise_coefficients(step: int, n_steps: int = DIFFUSION_STEPS) -> tuple[float, float]:
    """(sqrt(abar_T), sqrt(1 - abar_T)) of upstream's schedule: beta_i = sigmoid(linspace(-6, 6)) scaled into
    [1e-5, 5e-3], abar_T = prod_{i <= T} (1 - beta_i) (0-based T). At T = 500: about (0.8630, 0.5052)."""
    betas = torch.sigmoid(torch.linspace(-6, 6, n_steps, dtype=torch.float64)) * (5e-3 - 1e-5) + 1e-5
    alpha_bar = torch.cumprod(1 - betas, dim=0)[step]
    return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)


def add_diffusion_noise(pixels: torch.Tensor, step: int, generator: torch.Generator) -> torch.Tensor:
    """v' = sqrt(abar_T) * v + sqrt(1 - abar_T) * eps, eps ~ N(0, I) drawn from `generator` (on the CPU, so the
    noise does not depend on the device); elementwise, so any pixel layout keeps its shape."""
    keep, noise = noise_coefficients(step)
    eps = torch.randn(pixels.shape, generator=generator, dtype=torch.float32).to(pixels.device, pixels.dtype)
    return keep * pixels + noise * eps


def image_generator(seed: int, sample: Sample, image: int) -> torch.Generator:
    """The generator of one image's noise: fixed by (seed, the sample's content, the image's index), so a
    sample gets the same noise alone or in any batch, and different images get different noise."""
    digest = stable_hash([seed, sample_hash(sample), image])
    return torch.Generator().manual_seed(int(digest, 16) & (2**63 - 1))


def contrast(clean: torch.Tensor, noised: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """VCD's next-token scores from raw clean and noised logits `(..., vocab)`: (1 + alpha) * clean - alpha *
    noised, -inf where clean < log(beta) + max(clean) (the mask reads the clean logits only)."""
    scores = (1 + alpha) * clean - alpha * noised
    if beta <= 0:
        return scores
    cutoff = math.log(beta) + clean.max(dim=-1, keepdim=True).values
    return scores.masked_fill(clean < cutoff, float("-inf"))


def _contrast_rows(rows: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """A two-row request's `combine`: row 0 clean, row 1 noised."""
    return contrast(rows[0], rows[1], alpha, beta)


@dataclass(frozen=True)
class NoisedRow:
    """The noised twin of `sample`: the same prompt, its images noised after preprocessing."""

    sample: Sample


class Vcd:
    """VCD as an `eval_bridge.inference.InferenceMethod`: `run_suite(vlm, config, method=Vcd(VcdConfig()))`."""

    id = "vcd"
    version = "1"

    def __init__(self, config: VcdConfig | None = None):
        self.config = config or VcdConfig()

    def cache_key(self) -> dict:
        """Every setting changes the outputs."""
        return dataclasses.asdict(self.config)

    def requests(self, vlm: VLM, samples: Sequence[Sample], settings: GenerationSettings) -> list[DecodeRequest]:
        """One request per sample: image samples as (clean, noised) rows with the contrast, text-only ones plain."""
        combine = functools.partial(_contrast_rows, alpha=self.config.alpha, beta=self.config.beta)
        return [
            dataclasses.replace(r, rows=(r.rows[0], NoisedRow(r.rows[0])), combine=combine) if r.n_images else r
            for r in vlm.decode_requests(samples, settings)
        ]

    def prepare(self, vlm: VLM):
        """The decode loop's `prepare`: `VLM.prepare` on the rows' samples, then the noised rows' images noised."""

        def prepare(rows: Sequence[Sample | NoisedRow]):
            samples = [row.sample if isinstance(row, NoisedRow) else row for row in rows]
            inputs = vlm.prepare(samples)
            views = vlm.pixel_views(inputs, [len(s.images) for s in samples])
            for row, images in zip(rows, views, strict=True):
                if isinstance(row, NoisedRow):
                    for k, view in enumerate(images):
                        generator = image_generator(self.config.noise_seed, row.sample, k)
                        view.copy_(add_diffusion_noise(view, self.config.noise_step, generator))
            return inputs

        return prepare

    def generate(self, vlm: VLM, samples: Sequence[Sample], settings: GenerationSettings) -> list[Generation]:
        """Decode every sample with VCD, `settings.batch_size` samples (twice as many rows) at once.

        Raises:
            NotImplementedError: the decode loop does not support this model or generation config (named).
        """
        rows = dataclasses.replace(settings, batch_size=2 * settings.batch_size, token_budget=2 * settings.token_budget)
        outputs = vlm.decode(self.requests(vlm, samples, settings), rows, prepare=self.prepare(vlm))
        return vlm.generations(outputs)
