"""The tiny-world family's tokenizer, configs and checkpoint files.

All three models share one vocabulary, as Qwen2 and Qwen2-VL do: a byte-level BPE trained on the
synthetic corpus with every digit its own token (`Digits(individual_digits=True)`), plus the chat and
vision special tokens. The LLMs are `Qwen2ForCausalLM`; the VLM is `Qwen2VLForConditionalGeneration`
whose text config equals the LLMs' config (plus multimodal RoPE, which is the LLMs' RoPE on text).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
import transformers as T
from mvlm_tasks.probe.scenes import IMAGE_SIZE
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# One chat template for the tiny Qwen2-VL models here and the test checkpoints of every family
# (tests/tiny_checkpoints.py): system/user/assistant turns, images as the family's token.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ IMAGE }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def mrope_section(hidden: int, heads: int) -> list[int]:
    """Qwen2-VL's temporal/height/width split of the rotary half-dimension for a head size."""
    half = hidden // heads // 2
    return [half - 2 * (half // 3), half // 3, half // 3]


BASE_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SPECIAL_TOKENS = BASE_SPECIALS + list(QWEN_TOKENS)
IMAGE_PIXELS = dict(min_pixels=56 * 56, max_pixels=112 * 112)  # probe images are 112x112, never resized
VLM_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("{{ IMAGE }}", "{{ '" + QWEN_IMAGE + "' }}")


@dataclass(frozen=True)
class Sizes:
    """Dimensions of the family (the LLMs and the VLM's language model share the text ones)."""

    hidden: int = 192
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 576
    vision_hidden: int = 128
    vision_depth: int = 3
    vision_heads: int = 4
    vision_patch: int = 7  # 14-px patches never learned to read the 15x21-px glyphs; 7-px ones do
    vision_merge: int = 2  # 2x2 patches per image token: a 112x112 image is 64 tokens
    vocab: int = 768  # BPE target; the embedding is padded to a multiple of 64

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> T.PreTrainedTokenizerFast:
    """Byte-level BPE over `corpus` with single-digit number tokens; left padding for batched generation."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=BASE_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(list(corpus), trainer)
    fast = T.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                     bos_token=None, unk_token=None, padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": list(QWEN_TOKENS)})
    fast.chat_template = VLM_CHAT_TEMPLATE
    fast.model_max_length = 1024
    return fast


def padded_vocab(tokenizer: T.PreTrainedTokenizerFast) -> int:
    return (len(tokenizer) + 63) // 64 * 64


def text_config(sizes: Sizes, tokenizer: T.PreTrainedTokenizerFast, **extra: Any) -> dict[str, Any]:
    """The language model's config (shared by the LLMs and the VLM's text config)."""
    return dict(hidden_size=sizes.hidden, intermediate_size=sizes.intermediate, num_hidden_layers=sizes.layers,
                num_attention_heads=sizes.heads, num_key_value_heads=sizes.kv_heads,
                vocab_size=padded_vocab(tokenizer), max_position_embeddings=1024, tie_word_embeddings=False,
                rope_theta=10000.0, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **extra)


def build_llm(sizes: Sizes, tokenizer: T.PreTrainedTokenizerFast, seed: int) -> T.Qwen2ForCausalLM:
    """A freshly initialised base LLM."""
    torch.manual_seed(seed)
    return T.Qwen2ForCausalLM(T.Qwen2Config(**text_config(sizes, tokenizer)))


def build_vlm(sizes: Sizes, tokenizer: T.PreTrainedTokenizerFast, seed: int
              ) -> tuple[T.Qwen2VLForConditionalGeneration, T.Qwen2VLProcessor]:
    """A Qwen2-VL with a freshly initialised vision tower; load the language model separately."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_TOKENS}
    rope = {"type": "mrope", "mrope_section": mrope_section(sizes.hidden, sizes.heads)}
    text = text_config(sizes, tokenizer, rope_scaling=rope)
    vision = dict(depth=sizes.vision_depth, embed_dim=sizes.vision_hidden, hidden_size=sizes.hidden,
                  num_heads=sizes.vision_heads, mlp_ratio=2, patch_size=sizes.vision_patch,
                  spatial_merge_size=sizes.vision_merge,
                  temporal_patch_size=2, in_chans=3, out_hidden_size=sizes.hidden)
    config = T.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                             video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                             vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = T.Qwen2VLForConditionalGeneration(config)
    grid = dict(patch_size=sizes.vision_patch, merge_size=sizes.vision_merge, **IMAGE_PIXELS)
    processor = T.Qwen2VLProcessor(image_processor=T.Qwen2VLImageProcessor(**grid), tokenizer=tokenizer,
                                   video_processor=T.Qwen2VLVideoProcessor(**grid), chat_template=VLM_CHAT_TEMPLATE)
    return model, processor


def image_tokens(sizes: Sizes) -> int:
    """Image tokens per probe image (IMAGE_SIZE px square, after the 2D patch merge)."""
    return (IMAGE_SIZE // (sizes.vision_patch * sizes.vision_merge)) ** 2


def language_model(vlm: T.Qwen2VLForConditionalGeneration) -> torch.nn.Module:
    return vlm.model.language_model


def copy_llm_into_vlm(vlm: T.Qwen2VLForConditionalGeneration, llm: T.Qwen2ForCausalLM) -> None:
    """The VLM's language model (embeddings and lm_head included) becomes the LLM's."""
    with torch.no_grad():
        missing = language_model(vlm).load_state_dict(llm.model.state_dict(), strict=True)
        vlm.lm_head.weight.copy_(llm.lm_head.weight)
    assert not missing.missing_keys and not missing.unexpected_keys


def generation_config(tokenizer: T.PreTrainedTokenizerFast) -> dict[str, Any]:
    return {"eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"), "pad_token_id": tokenizer.pad_token_id,
            "do_sample": False, "max_new_tokens": 48}


def save_llm(model: T.Qwen2ForCausalLM, tokenizer: T.PreTrainedTokenizerFast, path: Path,
             dtype: torch.dtype = torch.bfloat16) -> None:
    path = Path(path)
    model.generation_config = T.GenerationConfig(**generation_config(tokenizer))
    model.to(dtype).save_pretrained(path)
    model.to(torch.float32)
    tokenizer.save_pretrained(path)


def save_vlm(model: T.Qwen2VLForConditionalGeneration, processor: T.Qwen2VLProcessor, path: Path,
             dtype: torch.dtype = torch.bfloat16) -> None:
    path = Path(path)
    model.generation_config = T.GenerationConfig(**generation_config(processor.tokenizer))
    model.to(dtype).save_pretrained(path)
    model.to(torch.float32)
    processor.save_pretrained(path)


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
