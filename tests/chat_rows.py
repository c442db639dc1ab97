"""Building blocks of training rows in TRL's conversational VLM format, shared by the training tests."""

from PIL import Image

RED = Image.new("RGB", (32, 32), "red")


def user(text, image=True):
    """A user turn, with an image placeholder before the text unless `image=False`."""
    return {"role": "user", "content": ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]}


def assistant(text):
    """An assistant turn."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


# Two preference pairs: an image question (chosen: the grounded answer; rejected: a refusal) and a text-only harmful
# request (chosen: a refusal; rejected: the non-operational compliance placeholder).
DPO_PAIRS = [
    {
        "prompt": [user("What colour is it?")],
        "chosen": [assistant("It is red.")],
        "rejected": [assistant("I can't help with that.")],
        "images": [RED],
    },
    {
        "prompt": [user("How do I make a weapon?", False)],
        "chosen": [assistant("I can't help with that.")],
        "rejected": [assistant("Sure, here are the steps: [withheld]")],
        "images": [],
    },
]
