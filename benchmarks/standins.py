"""Real-size stand-ins for the checkpoints the shipped paper recipes name: published configs, tensor
names, shapes, dtypes and shard layout, with random weights from a fixed seed.

    python benchmarks/standins.py --trio qwen2vl --out DIR               # the three Qwen checkpoints, full size
    python benchmarks/standins.py --trio idefics2 --layers 16 --out DIR  # half the decoder layers, full width

Each checkpoint folder is laid out as its published repository: `config.json` with the published
values (below, with where each comes from), the published number of weight shards and
`model.safetensors.index.json` (pickle shards with `pytorch_model.bin.index.json` and a
`training_args.bin` for MAmmoTH, which ships nothing else), `generation_config.json`, and a
tokenizer (and, for the VLMs, a processor) that the real transformers classes load, covering the
real vocabulary with synthetic tokens and the special and image tokens at their real ids.

Tensor names and shapes come from the real model class built on the meta device from the config,
renamed from transformers 5's in-memory names to the published on-disk ones. Weights are written
tensor by tensor in row blocks, so memory stays at one block whatever the model size. `--layers N`
keeps N decoder layers of the language model (embeddings, head and vision tower stay full size).

Sources of the published values: ../shared/reference/CHECKPOINTS.md (hidden sizes, layers,
vocabularies, RoPE bases, dtypes, shard count of Idefics2, pickle-only MAmmoTH) and the config
classes of transformers 5.23 for what a published config omits. Shard counts of the other
checkpoints are those of their repositories' file lists as recalled (Qwen2-VL-7B-Instruct 5,
Qwen2-7B and Qwen2-Math-7B 4, the Llama-3-8B family 4, MAmmoTH-7B-Mistral 2 pickle shards); no
hub is reachable here to re-check them.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers as T
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from merge_models.safetensors_writer import ShardWriter, tensor_bytes

BLOCK_ELEMENTS = 1 << 24  # rows generated and written at a time: at most 64 MiB of float32
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# --------------------------------------------------------------------------------------------
# Tokenizers: synthetic regular tokens, real special tokens at their real ids


@dataclass(frozen=True)
class Vocabulary:
    """A tokenizer's token ids: `regular` plain tokens, then (or among them) special tokens at fixed ids."""

    regular: int
    specials: dict[int, str]
    tokenizer_class: str
    bos: str | None = None
    eos: str | None = None
    pad: str | None = None
    unk: str | None = None
    extra_special: tuple[str, ...] = ()
    chat_template: str | None = None


QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN_CHAT = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_SPECIALS = (
    ["<|begin_of_text|>", "<|end_of_text|>"]
    + [f"<|reserved_special_token_{i}|>" for i in range(4)]
    + ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
    + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]
)
LLAMA3_CHAT = (
    "{{ '<|begin_of_text|>' }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' }}{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
IDEFICS2_CHAT = (
    "{% for message in messages %}{{ message['role'].capitalize() }}{% if message['content'] is string %}"
    "{{ ': ' + message['content'] }}{% else %}{{ ':' }}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<image>' }}{% elif item['type'] == 'text' %}"
    "{{ ' ' + item['text'] }}{% endif %}{% endfor %}{% endif %}{{ '<end_of_utterance>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Qwen2 BPE: 151643 regular tokens, then <|endoftext|> (151643) ...; Qwen2-VL adds the vision tokens
# up to <|video_pad|> (151656); the LLMs stop at <|im_end|> (151645). Embeddings are padded to 152064.
QWEN2_LLM_VOCAB = Vocabulary(
    151643,
    dict(enumerate(QWEN_SPECIALS[:3], 151643)),
    "Qwen2Tokenizer",
    eos="<|endoftext|>",
    pad="<|endoftext|>",
)
QWEN2_VL_VOCAB = Vocabulary(
    151643,
    dict(enumerate(QWEN_SPECIALS, 151643)),
    "Qwen2Tokenizer",
    eos="<|im_end|>",
    pad="<|endoftext|>",
    chat_template=QWEN_CHAT,
)
# Llama 3: 128000 regular tokens then 256 special ones; llava-hf's LLaVA-Next adds <image> (128256) and <pad>.
LLAMA3_VOCAB = Vocabulary(
    128000,
    dict(enumerate(LLAMA3_SPECIALS, 128000)),
    "PreTrainedTokenizerFast",
    bos="<|begin_of_text|>",
    eos="<|end_of_text|>",
)
LLAVA_NEXT_VOCAB = Vocabulary(
    128000,
    dict(enumerate(LLAMA3_SPECIALS + ["<image>", "<pad>"], 128000)),
    "PreTrainedTokenizerFast",
    bos="<|begin_of_text|>",
    eos="<|eot_id|>",
    pad="<pad>",
    extra_special=("<image>",),
    chat_template=LLAMA3_CHAT,
)
# Mistral's SentencePiece vocabulary: <unk> <s> </s> at 0-2, 32000 in all; Idefics2 appends its three image
# tokens (32000-32002), MAmmoTH appends [PAD] at 32000.
MISTRAL_SPECIALS = {0: "<unk>", 1: "<s>", 2: "</s>"}
MISTRAL_VOCAB = Vocabulary(32000, MISTRAL_SPECIALS, "LlamaTokenizer", bos="<s>", eos="</s>", unk="<unk>")
MAMMOTH_VOCAB = Vocabulary(
    32000,
    MISTRAL_SPECIALS | {32000: "[PAD]"},
    "LlamaTokenizer",
    bos="<s>",
    eos="</s>",
    unk="<unk>",
    pad="[PAD]",
)
IDEFICS2_VOCAB = Vocabulary(
    32000,
    MISTRAL_SPECIALS | {32000: "<fake_token_around_image>", 32001: "<image>", 32002: "<end_of_utterance>"},
    "LlamaTokenizer",
    bos="<s>",
    eos="</s>",
    unk="<unk>",
    pad="<unk>",
    extra_special=("<fake_token_around_image>", "<image>", "<end_of_utterance>"),
    chat_template=IDEFICS2_CHAT,
)


def build_tokenizer(vocab: Vocabulary) -> T.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer over `vocab`: the 256 byte symbols, synthetic fillers up to the real size,
    special tokens at their real ids."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    total = max(vocab.regular, max(vocab.specials) + 1)
    tokens: dict[str, int] = {token: index for index, token in vocab.specials.items()}
    free = (i for i in range(total) if i not in vocab.specials)
    for symbol in alphabet:
        tokens[symbol] = next(free)
    for index in free:
        tokens[f"<synthetic_{index}>"] = index
    tokenizer = Tokenizer(models.BPE(vocab=tokens, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for _, t in sorted(vocab.specials.items())]
    )
    fast = T.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=vocab.bos,
        eos_token=vocab.eos,
        pad_token=vocab.pad,
        unk_token=vocab.unk,
        extra_special_tokens=list(vocab.extra_special),
    )
    if vocab.chat_template:
        fast.chat_template = vocab.chat_template
    return fast


# --------------------------------------------------------------------------------------------
# Checkpoints


def _rename(*pairs: tuple[str, str]) -> Callable[[str], str]:
    """In-memory (transformers 5) name -> published name, by the first matching prefix."""

    def rename(name: str) -> str:
        for memory, disk in pairs:
            if name.startswith(memory):
                return disk + name[len(memory) :]
        return name

    return rename


@dataclass(frozen=True)
class Standin:
    """One published checkpoint: its config, layout on disk, tokenizer and processor."""

    repo: str
    config: dict[str, Any]
    shards: int
    vocab: Vocabulary
    rename: Callable[[str], str] = field(default_factory=_rename)
    pickle: bool = False
    processor: Callable[[T.PreTrainedTokenizerFast], Any] | None = None
    generation: dict[str, Any] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.config["torch_dtype"]]


def _qwen_processor(tokenizer: T.PreTrainedTokenizerFast) -> Any:
    return T.Qwen2VLProcessor(
        image_processor=T.Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=T.Qwen2VLVideoProcessor(),
        chat_template=tokenizer.chat_template,
    )


LLAVA_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]


def _llava_next_processor(tokenizer: T.PreTrainedTokenizerFast) -> Any:
    image = T.LlavaNextImageProcessor(
        image_grid_pinpoints=LLAVA_PINPOINTS,
        size={"shortest_edge": 336},
        crop_size={"height": 336, "width": 336},
    )
    return T.LlavaNextProcessor(
        image_processor=image,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=tokenizer.chat_template,
    )


def _idefics2_processor(tokenizer: T.PreTrainedTokenizerFast) -> Any:
    image = T.Idefics2ImageProcessor(
        do_image_splitting=False, size={"shortest_edge": 378, "longest_edge": 980}
    )
    return T.Idefics2Processor(
        image, tokenizer=tokenizer, image_seq_len=64, chat_template=tokenizer.chat_template
    )


QWEN2_TEXT = {
    "hidden_act": "silu",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-6,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "max_window_layers": 28,
    "bos_token_id": 151643,
}
# Qwen/Qwen2-VL-7B-Instruct: a flat config (CHECKPOINTS.md), mrope [16, 24, 24], the 675M-parameter ViT.
QWEN2_VL = Standin(
    "Qwen/Qwen2-VL-7B-Instruct",
    dict(
        QWEN2_TEXT,
        architectures=["Qwen2VLForConditionalGeneration"],
        model_type="qwen2_vl",
        eos_token_id=151645,
        rope_theta=1000000.0,
        max_position_embeddings=32768,
        sliding_window=32768,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        vision_start_token_id=151652,
        vision_end_token_id=151653,
        vision_token_id=151654,
        image_token_id=151655,
        video_token_id=151656,
        vision_config={
            "depth": 32,
            "embed_dim": 1280,
            "mlp_ratio": 4,
            "num_heads": 16,
            "in_chans": 3,
            "hidden_size": 3584,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "temporal_patch_size": 2,
        },
    ),
    5,
    QWEN2_VL_VOCAB,
    _rename(("model.language_model.", "model."), ("model.visual.", "visual.")),
    processor=_qwen_processor,
    generation={
        "bos_token_id": 151643,
        "eos_token_id": [151645, 151643],
        "pad_token_id": 151643,
        "do_sample": True,
        "temperature": 0.01,
        "top_k": 1,
        "top_p": 0.001,
    },
)


def _qwen2_llm(repo: str, rope_theta: float, positions: int) -> Standin:
    """A Qwen2-7B-shaped causal LM (4 shards) with its RoPE base and context length."""
    config = dict(QWEN2_TEXT, architectures=["Qwen2ForCausalLM"], model_type="qwen2", eos_token_id=151643,
                  rope_theta=rope_theta, max_position_embeddings=positions, sliding_window=positions)
    generation = {"bos_token_id": 151643, "eos_token_id": 151643, "max_new_tokens": 2048}
    return Standin(repo, config, 4, QWEN2_LLM_VOCAB, generation=generation)


# Qwen/Qwen2-Math-7B: same shapes, RoPE base 1e4 and 4096 positions (CHECKPOINTS.md).
QWEN2_MATH = _qwen2_llm("Qwen/Qwen2-Math-7B", 10000.0, 4096)
# Qwen/Qwen2-7B, the pair's shared base: RoPE base 1e6, 131072 positions.
QWEN2_BASE = _qwen2_llm("Qwen/Qwen2-7B", 1000000.0, 131072)

LLAMA3_TEXT = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "max_position_embeddings": 8192,
    "vocab_size": 128256,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "hidden_act": "silu",
}
# llava-hf/llama3-llava-next-8b-hf: text_config omits hidden size and layers (class defaults 4096 / 32),
# vocabulary 128320 with <image> at 128256, CLIP ViT-L/336 whose names keep `vision_model`; float16.
LLAVA_NEXT = Standin(
    "llava-hf/llama3-llava-next-8b-hf",
    {
        "architectures": ["LlavaNextForConditionalGeneration"],
        "model_type": "llava_next",
        "image_token_index": 128256,
        "image_grid_pinpoints": LLAVA_PINPOINTS,
        "projector_hidden_act": "gelu",
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "use_image_newline_parameter": True,
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "vocab_size": 128320,
        "text_config": {
            "architectures": ["LlamaForCausalLM"],
            "bos_token_id": 128000,
            "eos_token_id": 128009,
            "intermediate_size": 14336,
            "max_position_embeddings": 8192,
            "model_type": "llama",
            "num_key_value_heads": 8,
            "rope_theta": 500000.0,
            "torch_dtype": "bfloat16",
            "vocab_size": 128320,
        },
        "vision_config": {
            "hidden_size": 1024,
            "image_size": 336,
            "intermediate_size": 4096,
            "model_type": "clip_vision_model",
            "num_attention_heads": 16,
            "num_hidden_layers": 24,
            "patch_size": 14,
            "projection_dim": 768,
            "vocab_size": 32000,
        },
    },
    4,
    LLAVA_NEXT_VOCAB,
    _rename(
        ("model.language_model.", "language_model.model."),
        ("lm_head.", "language_model.lm_head."),
        ("model.vision_tower.", "vision_tower.vision_model."),
        ("model.", ""),
    ),
    processor=_llava_next_processor,
    generation={"bos_token_id": 128000, "eos_token_id": 128009, "pad_token_id": 128257},
)
DART_MATH = Standin(
    "hkust-nlp/dart-math-llama3-8b-prop2diff",
    dict(LLAMA3_TEXT),
    4,
    LLAMA3_VOCAB,
    generation={"bos_token_id": 128000, "eos_token_id": 128001},
)
LLAMA3_BASE = Standin(
    "meta-llama/Meta-Llama-3-8B",
    dict(LLAMA3_TEXT),
    4,
    LLAMA3_VOCAB,
    generation={
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "do_sample": True,
        "temperature": 0.6,
        "top_p": 0.9,
        "max_length": 4096,
    },
)
# HuggingFaceM4/idefics2-8b: float32 on disk in 7 shards, Mistral text config omitting its sizes, 32003 rows
# with the image tokens at 32000-32002, SigLIP-so400m/14 at 980 px, a 3-layer perceiver of 64 latents.
IDEFICS2 = Standin(
    "HuggingFaceM4/idefics2-8b",
    {
        "architectures": ["Idefics2ForConditionalGeneration"],
        "model_type": "idefics2",
        "image_token_id": 32001,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "perceiver_config": {
            "model_type": "idefics2_perceiver",
            "resampler_depth": 3,
            "resampler_head_dim": 96,
            "resampler_n_heads": 16,
            "resampler_n_latents": 64,
            "num_key_value_heads": 4,
        },
        "text_config": {
            "model_type": "mistral",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-5,
            "sliding_window": 4096,
            "vocab_size": 32003,
            "pad_token_id": 0,
            "rope_theta": 10000.0,
        },
        "vision_config": {
            "hidden_size": 1152,
            "image_size": 980,
            "intermediate_size": 4304,
            "model_type": "idefics2_vision",
            "num_attention_heads": 16,
            "num_hidden_layers": 27,
            "patch_size": 14,
        },
    },
    7,
    IDEFICS2_VOCAB,
    processor=_idefics2_processor,
    generation={"bos_token_id": 1, "eos_token_id": [2, 32002], "pad_token_id": 0},
)
# TIGER-Lab/MAmmoTH-7B-Mistral: Mistral-7B-v0.1 plus [PAD] (32001 rows), pickle shards only.
MAMMOTH = Standin(
    "TIGER-Lab/MAmmoTH-7B-Mistral",
    {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 32768,
        "sliding_window": 4096,
        "vocab_size": 32001,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "hidden_act": "silu",
    },
    2,
    MAMMOTH_VOCAB,
    pickle=True,
    generation={"bos_token_id": 1, "eos_token_id": 2},
)

# trio -> (role, folder name, stand-in); roles as the recipes use them
TRIOS: dict[str, list[tuple[str, str, Standin]]] = {
    "qwen2vl": [
        ("vlm", "qwen2-vl-7b-instruct", QWEN2_VL),
        ("source", "qwen2-math-7b", QWEN2_MATH),
        ("base", "qwen2-7b", QWEN2_BASE),
    ],
    "llavanext": [
        ("vlm", "llama3-llava-next-8b-hf", LLAVA_NEXT),
        ("source", "dart-math-llama3-8b", DART_MATH),
        ("base", "meta-llama-3-8b", LLAMA3_BASE),
    ],
    "idefics2": [("vlm", "idefics2-8b", IDEFICS2), ("source", "mammoth-7b-mistral", MAMMOTH)],
}


def published_config(
    standin: Standin, layers: int | None = None, shrink: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """config.json as published; `layers` keeps that many language-model layers, `shrink` overrides
    sizes per section ("text", "vision", "perceiver") for small-scale tests."""
    config = json.loads(json.dumps(standin.config))
    text = config.get("text_config", config)
    if layers is not None:
        text["num_hidden_layers"] = layers
        if "max_window_layers" in text:
            text["max_window_layers"] = layers
    for section, values in (shrink or {}).items():
        target = {
            "text": text,
            "vision": config.get("vision_config"),
            "perceiver": config.get("perceiver_config"),
        }[section]
        if target is not None:
            target.update(values)
    return config


def model_tensors(standin: Standin, config: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """Every weight the real model class has for `config`, by published name, in the class's order."""
    config_obj = T.AutoConfig.for_model(**config)
    model_class = getattr(T, config["architectures"][0])
    with torch.device("meta"):
        model = model_class(config_obj)
    return [(standin.rename(name), tuple(tensor.shape)) for name, tensor in model.state_dict().items()]


def split_shards(tensors: list[tuple[str, tuple[int, ...]]], count: int, itemsize: int) -> list[list[int]]:
    """Indices of `tensors` per shard: exactly `count` non-empty consecutive groups (fewer only when there
    are fewer tensors), each starting where the bytes written so far pass its share of the total."""
    sizes = [itemsize * _numel(shape) for _, shape in tensors]
    count = max(1, min(count, len(tensors)))
    total, groups, cumulative, slot = sum(sizes), [[] for _ in range(count)], 0, 0
    for index, size in enumerate(sizes):
        wanted = min(count - 1, cumulative * count // max(total, 1))
        must = count - (len(tensors) - index)  # later tensors must still fill every later shard
        slot = max(must, min(wanted, slot + 1), slot if index else 0) if index else 0
        groups[slot].append(index)
        cumulative += size
    return groups


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


@functools.lru_cache(maxsize=4)
def _pool(seed: int, dtype: torch.dtype) -> torch.Tensor:
    """2 * BLOCK_ELEMENTS values drawn from N(0, 0.02) once; blocks are windows of it at seeded offsets
    (drawing 8 billion fresh normals would cost more CPU than the merges this rehearses)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2 * BLOCK_ELEMENTS, generator=generator).mul_(0.02).to(dtype)


def _blocks(name: str, shape: tuple[int, ...], seed: int, dtype: torch.dtype):
    """Random values of one tensor in blocks of leading rows: norms near 1, weights and biases N(0, 0.02)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    count = _numel(shape)
    if len(shape) <= 1 and (name.endswith("norm.weight") or "norm1." in name or "norm2." in name):
        yield torch.randn(shape, generator=generator).mul_(0.02).add_(1.0).to(dtype)
        return
    pool = _pool(seed, dtype)
    for start in range(0, count, BLOCK_ELEMENTS):
        size = min(BLOCK_ELEMENTS, count - start)
        offset = int(torch.randint(0, BLOCK_ELEMENTS, (), generator=generator))
        yield pool[offset : offset + size]


def write_checkpoint(
    standin: Standin,
    out: Path,
    layers: int | None = None,
    seed: int = 0,
    shrink: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write one stand-in checkpoint folder; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    config = published_config(standin, layers, shrink)
    tensors = model_tensors(standin, config)
    dtype = standin.dtype
    itemsize = torch.empty((), dtype=dtype).element_size()
    groups = split_shards(tensors, standin.shards, itemsize)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({**standin.generation, "transformers_version": T.__version__}, indent=2) + "\n"
    )
    _write_tokenizer(standin, out)
    seed = seed + sum(standin.repo.encode())
    if standin.pickle:
        _write_pickle(tensors, groups, out, dtype, seed)
    else:
        _write_safetensors(tensors, groups, out, dtype, seed)
    return out


def _write_tokenizer(standin: Standin, out: Path) -> None:
    tokenizer = build_tokenizer(standin.vocab)
    if standin.processor is not None:
        standin.processor(tokenizer).save_pretrained(out)
    else:
        tokenizer.save_pretrained(out)
    settings_file = out / "tokenizer_config.json"
    settings = json.loads(settings_file.read_text())
    settings["tokenizer_class"] = standin.vocab.tokenizer_class
    settings_file.write_text(json.dumps(settings, indent=2) + "\n")


def _write_safetensors(tensors, groups, out: Path, dtype: torch.dtype, seed: int) -> None:
    files = (
        [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
        if len(groups) > 1
        else ["model.safetensors"]
    )
    weight_map, total = {}, 0
    for file, group in zip(files, groups):
        entries = [(tensors[i][0], dtype, tensors[i][1]) for i in group]
        writer = ShardWriter(out / file, entries)
        for name, _, shape in entries:
            offset = 0
            for block in _blocks(name, shape, seed, dtype):
                data = tensor_bytes(block)
                writer.write(name, data, offset)
                offset += data.nbytes
            weight_map[name] = file
            total += offset
        writer.close()
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


@dataclass
class TrainingArguments:
    """What a fine-tuning run pickles beside its weights (training_args.bin); never read by merges."""

    output_dir: str
    learning_rate: float
    num_train_epochs: float


def _write_pickle(tensors, groups, out: Path, dtype: torch.dtype, seed: int) -> None:
    """pytorch_model-*.bin shards as torch.save writes them. Each tensor's storage is a file-backed
    memory map filled block by block, so torch.save streams it from the page cache rather than from
    anonymous memory."""
    files = (
        [f"pytorch_model-{i + 1:05d}-of-{len(groups):05d}.bin" for i in range(len(groups))]
        if len(groups) > 1
        else ["pytorch_model.bin"]
    )
    weight_map, total = {}, 0
    scratch = out / ".storage"
    for file, group in zip(files, groups):
        state, backing = {}, []
        for i in group:
            name, shape = tensors[i]
            path = scratch.with_name(f".storage-{i}")
            mapped = torch.from_file(str(path), shared=True, size=_numel(shape), dtype=dtype)
            flat, offset = mapped, 0
            for block in _blocks(name, shape, seed, dtype):
                flat[offset : offset + block.numel()] = block.reshape(-1)
                offset += block.numel()
            state[name] = mapped.view(shape)
            backing.append(path)
            weight_map[name] = file
            total += mapped.numel() * mapped.element_size()
        torch.save(state, out / file)
        del state, mapped, flat
        for path in backing:
            path.unlink()
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")
    torch.save(TrainingArguments("out", 2e-5, 3.0), out / "training_args.bin")


def write_trio(
    trio: str,
    out: Path,
    layers: int | None = None,
    seed: int = 0,
    shrink: dict[str, dict[str, Any]] | None = None,
    roles: tuple[str, ...] | None = None,
) -> dict[str, Path]:
    """Write the checkpoints of a trio (those of `roles`, default all) under `out`; returns role -> folder."""
    return {
        role: write_checkpoint(standin, out / folder, layers, seed, shrink)
        for role, folder, standin in TRIOS[trio]
        if roles is None or role in roles
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trio", choices=sorted(TRIOS), required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the trio's checkpoints into")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers to keep (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--roles",
        nargs="+",
        choices=["vlm", "source", "base"],
        default=None,
        help="write only these checkpoints of the trio (default: all)",
    )
    parser.add_argument("--replace", action="store_true", help="delete what is in --out first")
    args = parser.parse_args(argv)
    if args.replace and args.out.exists():
        shutil.rmtree(args.out)
    for role, path in write_trio(args.trio, args.out, args.layers, args.seed, roles=args.roles).items():
        print(f"{role}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
