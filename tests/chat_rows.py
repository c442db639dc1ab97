"""Building blocks of training rows in TRL's conversational VLM format, shared by the training tests."""

from PIL import Image

RED = Image.new("RGB", (32, 32), "red")


def user(text, image=True):
    """A user turn, with an image placeholder before the text unless `image=False`."""
    return {"role": "user", "content": ([{"type": "image"}] if image else []) + [{"type": "text", "text": text}]}


def assistant(text):
    """An assistant turn."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}
