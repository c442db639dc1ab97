"""Loading checks that turn silent or cryptic failures of checkpoint loading into errors that say what to change:
a pickle that will not load weights-only, a PEFT adapter on a base it does not fit."""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from pathlib import Path

log = logging.getLogger(__name__)


def load_adapter_checked(net, adapter: str | Path, model: str):
    """`PeftModel.from_pretrained(net, adapter)`, refusing an adapter that does not fit the base `model`.

    PEFT loads an adapter on a base of another shape or family with a warning at most (its weights then miss,
    or find no, modules), and the model would be evaluated without part of the adapter. Here that is a
    `ValueError` naming the base the adapter records; a pickled adapter that will not load weights-only too.
    """
    from peft import PeftModel

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            net = PeftModel.from_pretrained(net, adapter)
        except pickle.UnpicklingError as err:
            raise unsafe_pickle_error(adapter, err) from None
        except (RuntimeError, ValueError) as err:  # shapes that do not fit, target modules the base lacks
            raise _wrong_base(adapter, model, str(err)) from None
    for w in caught:
        # PEFT warns (only) when adapter modules it made on this base found no saved weights.
        if str(w.message).startswith("Found missing adapter keys"):
            first = str(w.message).split("[", 1)[-1].split(",", 1)[0]
            raise _wrong_base(adapter, model, f"adapter modules made on this base found no saved weights, e.g. {first}")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    _check_adapter_loaded(net, adapter, model)
    return net


def adapter_base(adapter: str | Path) -> str | None:
    """The base model an adapter directory records (`base_model_name_or_path`), if it names one."""
    try:
        return json.loads((Path(adapter) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None


def unsafe_pickle_error(path: str | Path, err: Exception) -> ValueError:
    """The error for a pickle that does not load weights-only (torch refused it; nothing was unpickled)."""
    return ValueError(
        f"{path}: refused to load a pickle checkpoint (.bin) that holds more than tensors: unpickling it could run "
        f"code. Pickles are only ever loaded weights-only ({str(err).splitlines()[-1] or err}). If you trust the file, "
        "convert it to safetensors (load it yourself and save_pretrained with safe_serialization=True)"
    )


def _wrong_base(adapter: str | Path, model: str, detail: str) -> ValueError:
    base = adapter_base(adapter)
    return ValueError(
        f"the adapter {adapter} does not fit the base model {model}"
        + (f" (it was trained on {base}, as its adapter_config.json records)" if base else "")
        + f": {detail.splitlines()[0][:300]}. Pass the adapter's own base model as --model"
    )


def _check_adapter_loaded(net, adapter: str | Path, model: str) -> None:
    """Refuse an adapter whose saved LoRA weights did not all find a module of the base: PEFT drops them
    silently, and the model would be evaluated with part of the adapter, or none of it."""
    saved = Path(adapter) / "adapter_model.safetensors"
    if not saved.is_file():
        return
    from safetensors import safe_open

    with safe_open(str(saved), "pt") as f:
        # The LoRA matrices, saved without the adapter name (e.g. `...q_proj.lora_A.weight`).
        saved_keys = {k for k in f.keys() if k.endswith((".lora_A.weight", ".lora_B.weight"))}  # noqa: SIM118
    name = net.active_adapter
    loaded = {key.replace(f".{name}.", ".").removesuffix(f".{name}") for key, _ in net.named_parameters()}
    unused = sorted(saved_keys - loaded)
    if unused:
        detail = f"{len(unused)} of its {len(saved_keys)} LoRA weight(s) have no place in it, e.g. {unused[0]}"
        raise _wrong_base(adapter, model, detail)
    base = adapter_base(adapter)
    if base and Path(base).resolve() != Path(model).resolve() and base != model:
        log.warning(
            "adapter %s records base %s; loading it on %s, whose shapes fit: make sure it is that model (or a copy)",
            adapter,
            base,
            model,
        )
