"""Batched generation through the Hugging Face processor's chat template, for every family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# lmms-eval inserts a blank-line stop when a task sets none; it would cut chain-of-thought short.
IGNORED_STOPS = ("\n\n",)
DEFAULT_MAX_NEW_TOKENS = 1024


def conversation(images: list[Any], text: str, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """A single-turn chat: the images, then the text."""
    content = [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": text}]
    messages = [{"role": "user", "content": content}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    return messages


def stop_strings(until: Any) -> list[str]:
    """The stop strings to honour: the task's `until`, minus lmms-eval's default blank line."""
    if until is None:
        return []
    items = [until] if isinstance(until, str) else list(until)
    return [s for s in items if s and s not in IGNORED_STOPS]


def input_device(model: Any) -> torch.device:
    """Where a batch goes: the model's device, or the CPU when its first weights were offloaded to the
    disk (they sit on the meta device; accelerate's hooks bring them, and move inputs, as needed)."""
    device = model.device
    return torch.device("cpu") if device.type == "meta" else device


@dataclass(frozen=True)
class Generated:
    """One answer and its token counts: the prompt's tokens, and the tokens generated for it (padding not
    counted)."""

    text: str
    input_tokens: int
    output_tokens: int


def generate(model: Any, processor: Any, conversations: list[list[dict[str, Any]]], gen_kwargs: dict[str, Any]
             ) -> list[str]:
    """Generate one answer per conversation, in one batch; images are passed as PIL objects. `processor`
    is a multimodal processor or, for a text-only model, its tokenizer."""
    return [g.text for g in generate_counted(model, processor, conversations, gen_kwargs)]


def generate_counted(model: Any, processor: Any, conversations: list[list[dict[str, Any]]],
                     gen_kwargs: dict[str, Any]) -> list[Generated]:
    """`generate`, with each answer's token counts."""
    texts = [processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    images = [[item["image"] for message in c for item in _items(message) if item.get("type") == "image"]
              for c in conversations]
    inputs_kwargs: dict[str, Any] = {"text": texts, "padding": True, "return_tensors": "pt"}
    if any(images):
        inputs_kwargs["images"] = images
    inputs = processor(**inputs_kwargs).to(input_device(model))
    stops = stop_strings(gen_kwargs.get("until"))
    temperature = float(gen_kwargs.get("temperature") or 0.0)
    pad = _tokenizer(processor).pad_token_id
    options: dict[str, Any] = {
        "max_new_tokens": int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
        "do_sample": temperature > 0,
        "num_beams": int(gen_kwargs.get("num_beams") or 1),
        "pad_token_id": pad,
    }
    if temperature > 0:
        options.update(temperature=temperature, top_p=gen_kwargs.get("top_p") or 1.0)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    if stops:
        options.update(stop_strings=stops, tokenizer=_tokenizer(processor))
    with torch.inference_mode():
        output = model.generate(**inputs, **options)
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    answers = processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
    generated = (new_tokens != pad).sum(dim=1).tolist() if pad is not None else [new_tokens.shape[1]] * len(answers)
    return [Generated(_cut(answer, stops), int(n_in), int(n_out))
            for answer, n_in, n_out in zip(answers, prompt_tokens, generated)]


def _items(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _tokenizer(processor):
    return getattr(processor, "tokenizer", processor)


def _cut(text: str, stops: list[str]) -> str:
    for stop in stops:
        index = text.find(stop)
        if index >= 0:
            text = text[:index]
    return text
