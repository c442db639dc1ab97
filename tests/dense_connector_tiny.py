"""The tiny random LLaVA of the dense connector's tests (METHODS.md 3.4, Tests): a CLIP tower of 4 blocks, width 32,
56-px images in 14-px patches (N = 16 patch tokens), a 2-layer Llama; and one chat input holding an image."""

import torch
from PIL import Image

from eval_bridge.models.tiny import build_tokenizer, chat_template

DEPTH, WIDTH, IMAGE, PATCH = 4, 32, 56, 14
N_PATCHES = (IMAGE // PATCH) ** 2  # 16


def tiny_llava(seed: int = 0, **config):
    """`(LlavaForConditionalGeneration, LlavaProcessor)`, random weights (seeded), eval mode; `config` overrides."""
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = build_tokenizer(seed)
    tokenizer.chat_template = chat_template("llava")
    tokenizer.padding_side = "left"
    vision = dict(
        model_type="clip_vision_model",
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=DEPTH,
        num_attention_heads=2,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    text = dict(
        model_type="llama",
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    values = dict(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=N_PATCHES,
    )
    values.update(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(LlavaConfig(**values))
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
    )
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = None
    gen.do_sample = False
    model.config.text_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), processor


def striped_image(colour: str = "red") -> Image.Image:
    """A 56-px image that is not uniform (so every patch, and every pooled window, differs)."""
    image = Image.new("RGB", (IMAGE, IMAGE), colour)
    for x in range(0, IMAGE, 7):
        image.paste((x * 4, 255 - x * 4, 90), (x, 0, x + 3, IMAGE))
    return image


def chat_inputs(processor, prompt: str = "What is in the image?", images=None):
    """The processor's inputs for one user turn with one image (or `images`), ready for the model."""
    images = [striped_image()] if images is None else images
    content = [*({"type": "image"} for _ in images), {"type": "text", "text": prompt}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return processor(text=[text], images=images or None, return_tensors="pt")
