"""Tiny checkpoints of every supported VLM family, with matching base and reasoning LLMs.

Nothing is downloaded: configs are small, weights are random from a seed, tokenizers are
trained on the spot with the `tokenizers` library. The VLM's language model and the reasoning
LLM are both the base LLM plus distinct seeded perturbations, as real models tuned from one
base are. Test support: used by the tests and by `benchmarks/harness_bench.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import transformers as T
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from harness_ext.model_options import VLM_OPTIONS, ModelArgs, split_model_args
from tiny_world.build import CHAT_TEMPLATE, QWEN_IMAGE, QWEN_TOKENS, mrope_section, padded_vocab

TEXT_CLASSES = {"qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM), "llama": (T.LlamaConfig, T.LlamaForCausalLM),
                "mistral": (T.MistralConfig, T.MistralForCausalLM)}
CORPUS_WORDS = ("the a of and to is what how many number sum image shows answer question red green blue "
                "yellow circle square triangle larger smaller plus minus times equals count colour word").split()

@dataclass(frozen=True)
class TinySizes:
    """Dimensions of a tiny model: small enough to build in well under a second."""

    hidden: int = 64
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_hidden: int = 32


@dataclass(frozen=True)
class TinyFamily:
    """Paths of one generated trio."""

    family: str
    vlm: Path
    base: Path
    reasoning: Path


def train_tokenizer(special_tokens: list[str], vocab_size: int = 384, corpus: list[str] | None = None,
                    named_tokens: dict[str, str] | None = None) -> T.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a small synthetic corpus, with the given special tokens.

    named_tokens become attributes of the tokenizer (e.g. InternVL's `context_image_token`).
    """
    lines = corpus or [" ".join(CORPUS_WORDS[i:] + CORPUS_WORDS[:i]) + f" {i} {i * 7} {i + 13}" for i in range(60)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    base_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=base_specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(lines, trainer)
    fast = T.PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                     bos_token=None, unk_token=None, extra_special_tokens=named_tokens or {})
    if special_tokens:
        fast.add_special_tokens({"additional_special_tokens": special_tokens})
    return fast


def _text_config(text_type: str, sizes: TinySizes, vocab: int, tokenizer: T.PreTrainedTokenizerFast,
                 **extra: Any) -> dict[str, Any]:
    return dict(model_type=text_type, hidden_size=sizes.hidden, intermediate_size=sizes.intermediate,
                num_hidden_layers=sizes.layers, num_attention_heads=sizes.heads, num_key_value_heads=sizes.kv_heads,
                vocab_size=vocab, max_position_embeddings=2048, tie_word_embeddings=False,
                eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                pad_token_id=tokenizer.pad_token_id, bos_token_id=None) | extra


def _vision(sizes: TinySizes, **extra: Any) -> dict[str, Any]:
    return dict(hidden_size=sizes.vision_hidden, intermediate_size=2 * sizes.vision_hidden, num_hidden_layers=1,
                num_attention_heads=2, **extra)


@dataclass(frozen=True)
class RealLayout:
    """How the published checkpoints of a family differ from what transformers 5 writes.

    flat_config: text settings at the top level of config.json (Qwen2-VL's hub config), not under
        `text_config`. equal_vocab: the VLM and its LLMs have embeddings of one padded size (the
        Qwen2-VL-7B / Qwen2-Math-7B pair both have 152064 rows). renames: (prefix written,
        published prefix) pairs for tensor names. text: config values per role ("vlm", "base",
        "reasoning"), e.g. RoPE settings that differ across a real pair.
    """

    flat_config: bool = False
    equal_vocab: bool = False
    renames: tuple[tuple[str, str], ...] = ()
    text: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilySpec:
    """How to build a tiny VLM of one family."""

    text_type: str
    image_tokens: tuple[str, ...]
    template_image: str
    build: Callable[[TinySizes, T.PreTrainedTokenizerFast, int], tuple[T.PreTrainedModel, Any]]
    named_tokens: tuple[tuple[str, str], ...] = ()
    layout: RealLayout = RealLayout()


def _qwen_vl(config_cls, model_cls, processor_cls, image_proc_cls, video_proc_cls):
    def build(sizes: TinySizes, tok: T.PreTrainedTokenizerFast, vocab: int, **text_extra: Any):
        section = mrope_section(sizes.hidden, sizes.heads)
        ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                        "<|vision_end|>")}
        text = _text_config("qwen2", sizes, vocab, tok, rope_scaling={"type": "mrope", "mrope_section": section},
                            **text_extra)
        vision = dict(depth=1, embed_dim=sizes.vision_hidden, hidden_size=sizes.hidden, num_heads=2, mlp_ratio=2,
                      patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_chans=3,
                      intermediate_size=2 * sizes.vision_hidden, out_hidden_size=sizes.hidden,
                      fullatt_block_indexes=[0])
        config = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                            video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                            vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False)
        pixels = dict(min_pixels=56 * 56, max_pixels=112 * 112)
        processor = processor_cls(image_processor=image_proc_cls(**pixels), tokenizer=tok,
                                  video_processor=video_proc_cls(**pixels), chat_template=None)
        return model_cls(config), processor
    return build


def _llava_like(config_cls, model_cls, processor_cls, image_proc_cls, text_type: str, vision_type: str):
    def build(sizes: TinySizes, tok: T.PreTrainedTokenizerFast, vocab: int, **text_extra: Any):
        vision = _vision(sizes, model_type=vision_type, image_size=28, patch_size=14)
        image_id = tok.convert_tokens_to_ids("<image>")
        extra: dict[str, Any] = {}
        if config_cls is T.LlavaNextConfig:
            extra["image_grid_pinpoints"] = [[28, 28]]
        if config_cls is T.LlavaOnevisionConfig:
            extra["image_grid_pinpoints"] = [[28, 28]]
            extra["video_token_id"] = tok.convert_tokens_to_ids("<video>")
        config = config_cls(text_config=_text_config(text_type, sizes, vocab, tok, **text_extra), vision_config=vision,
                            image_token_id=image_id, vision_feature_layer=-1, **extra)
        size = {"height": 28, "width": 28}
        image_kwargs: dict[str, Any] = dict(size=size, crop_size=size, do_center_crop=False)
        if image_proc_cls is not T.CLIPImageProcessor:
            image_kwargs.update(image_grid_pinpoints=[[28, 28]])
        kwargs: dict[str, Any] = dict(image_processor=image_proc_cls(**image_kwargs), tokenizer=tok)
        if processor_cls is T.LlavaOnevisionProcessor:
            kwargs.update(video_processor=T.LlavaOnevisionVideoProcessor(size=size), num_image_tokens=4,
                          vision_feature_select_strategy="full")
        else:
            kwargs.update(patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1)
        return model_cls(config), processor_cls(**kwargs)
    return build


def _idefics(version: int):
    def build(sizes: TinySizes, tok: T.PreTrainedTokenizerFast, vocab: int, **text_extra: Any):
        vision = _vision(sizes, image_size=28, patch_size=14)
        image_id = tok.convert_tokens_to_ids("<image>")
        if version == 2:
            perceiver = dict(hidden_size=sizes.hidden, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                             resampler_head_dim=8, num_key_value_heads=1)
            config = T.Idefics2Config(text_config=_text_config("mistral", sizes, vocab, tok, **text_extra),
                                      vision_config=vision, perceiver_config=perceiver, image_token_id=image_id)
            image_proc = T.Idefics2ImageProcessor(do_image_splitting=False, size={"shortest_edge": 28,
                                                                                 "longest_edge": 28})
            processor = T.Idefics2Processor(image_proc, tokenizer=tok, image_seq_len=4)
            return T.Idefics2ForConditionalGeneration(config), processor
        config = T.Idefics3Config(text_config=_text_config("llama", sizes, vocab, tok, **text_extra),
                                  vision_config=vision, scale_factor=2, image_token_id=image_id)
        image_proc = T.Idefics3ImageProcessor(do_image_splitting=False, size={"longest_edge": 28},
                                              max_image_size={"longest_edge": 28})
        processor = T.Idefics3Processor(image_proc, tokenizer=tok, image_seq_len=1)
        return T.Idefics3ForConditionalGeneration(config), processor
    return build


def _internvl(sizes: TinySizes, tok: T.PreTrainedTokenizerFast, vocab: int, **text_extra: Any):
    vision = _vision(sizes, image_size=[28, 28], patch_size=[14, 14])
    config = T.InternVLConfig(text_config=_text_config("qwen2", sizes, vocab, tok, **text_extra), vision_config=vision,
                              image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"), downsample_ratio=0.5,
                              tie_word_embeddings=False)  # the -hf checkpoints store their own lm_head
    size = {"height": 28, "width": 28}
    processor = T.InternVLProcessor(image_processor=T.GotOcr2ImageProcessor(size=size, crop_to_patches=False),
                                    tokenizer=tok, video_processor=T.InternVLVideoProcessor(size=size),
                                    image_seq_length=1)
    return T.InternVLForConditionalGeneration(config), processor


# Qwen2-VL-7B-Instruct / Qwen2-7B / Qwen2-Math-7B: RoPE base 1e6 / 1e6 / 1e4, positions 32768 / 131072 / 4096.
QWEN2_VL_LAYOUT = RealLayout(flat_config=True, equal_vocab=True, text={
    "vlm": {"rope_theta": 1e6, "max_position_embeddings": 32768},
    "base": {"rope_theta": 1e6, "max_position_embeddings": 131072},
    "reasoning": {"rope_theta": 1e4, "max_position_embeddings": 4096}})
# llava-hf LLaVA-Next checkpoints keep CLIP's `vision_model` level in their tensor names.
LLAVA_NEXT_LAYOUT = RealLayout(renames=(("vision_tower.", "vision_tower.vision_model."),))
FAMILIES: dict[str, FamilySpec] = {
    "qwen2_vl": FamilySpec("qwen2", QWEN_TOKENS, QWEN_IMAGE, _qwen_vl(
        T.Qwen2VLConfig, T.Qwen2VLForConditionalGeneration, T.Qwen2VLProcessor, T.Qwen2VLImageProcessor,
        T.Qwen2VLVideoProcessor), layout=QWEN2_VL_LAYOUT),
    "qwen2_5_vl": FamilySpec("qwen2", QWEN_TOKENS, QWEN_IMAGE, _qwen_vl(
        T.Qwen2_5_VLConfig, T.Qwen2_5_VLForConditionalGeneration, T.Qwen2_5_VLProcessor, T.Qwen2VLImageProcessor,
        T.Qwen2VLVideoProcessor)),
    "llava": FamilySpec("llama", ("<image>",), "<image>\n", _llava_like(
        T.LlavaConfig, T.LlavaForConditionalGeneration, T.LlavaProcessor, T.CLIPImageProcessor, "llama",
        "clip_vision_model")),
    "llava_next": FamilySpec("mistral", ("<image>",), "<image>\n", _llava_like(
        T.LlavaNextConfig, T.LlavaNextForConditionalGeneration, T.LlavaNextProcessor, T.LlavaNextImageProcessor,
        "mistral", "clip_vision_model"), layout=LLAVA_NEXT_LAYOUT),
    "llava_next_llama3": FamilySpec("llama", ("<image>",), "<image>\n", _llava_like(
        T.LlavaNextConfig, T.LlavaNextForConditionalGeneration, T.LlavaNextProcessor, T.LlavaNextImageProcessor,
        "llama", "clip_vision_model"), layout=LLAVA_NEXT_LAYOUT),
    "llava_onevision": FamilySpec("qwen2", ("<image>", "<video>"), "<image>\n", _llava_like(
        T.LlavaOnevisionConfig, T.LlavaOnevisionForConditionalGeneration, T.LlavaOnevisionProcessor,
        T.LlavaOnevisionImageProcessor, "qwen2", "siglip_vision_model")),
    "idefics2": FamilySpec("mistral", ("<fake_token_around_image>", "<image>", "<end_of_utterance>"),
                           "<image>", _idefics(2)),
    "idefics3": FamilySpec("llama", ("<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"),
                           "<image>", _idefics(3)),
    "internvl": FamilySpec("qwen2", ("<img>", "</img>", "<IMG_CONTEXT>", "<video>"), "<IMG_CONTEXT>\n", _internvl,
                           (("start_image_token", "<img>"), ("end_image_token", "</img>"),
                            ("context_image_token", "<IMG_CONTEXT>"), ("video_token", "<video>"))),
}


def _perturb(model: torch.nn.Module, scale: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def build_llm(text_type: str, tokenizer: T.PreTrainedTokenizerFast, sizes: TinySizes, seed: int,
              vocab: int | None = None, **extra: Any) -> T.PreTrainedModel:
    """A random tiny causal LM of `text_type` (qwen2, llama or mistral) sized for `tokenizer` (or `vocab` rows).

    extra: further config values, e.g. rope_theta.
    """
    config_cls, model_cls = TEXT_CLASSES[text_type]
    values = _text_config(text_type, sizes, vocab or len(tokenizer), tokenizer, **extra)
    config = config_cls(**{k: v for k, v in values.items() if k != "model_type"})
    torch.manual_seed(seed)
    return model_cls(config)


def build_family(family: str, out_dir: Path, seed: int = 0, sizes: TinySizes = TinySizes(),
                 dtype: torch.dtype = torch.float32, max_shard_size: str | None = None) -> TinyFamily:
    """Write a tiny VLM of `family` plus its base and reasoning LLMs under `out_dir`, in the family's real layout."""
    spec = FAMILIES[family]
    layout = spec.layout
    out_dir = Path(out_dir)
    llm_tokenizer = train_tokenizer([])
    vlm_tokenizer = train_tokenizer(list(spec.image_tokens), named_tokens=dict(spec.named_tokens))
    vlm_tokenizer.chat_template = CHAT_TEMPLATE.replace("{{ IMAGE }}", "{{ '" + spec.template_image.replace(
        "\n", "\\n") + "' }}")
    llm_rows, vlm_rows = len(llm_tokenizer), len(vlm_tokenizer)
    if layout.equal_vocab:  # both padded to one size, as real checkpoints pad to a multiple of 64
        llm_rows = vlm_rows = max(padded_vocab(llm_tokenizer), padded_vocab(vlm_tokenizer))
    base = build_llm(spec.text_type, llm_tokenizer, sizes, seed, llm_rows, **layout.text.get("base", {}))
    reasoning = build_llm(spec.text_type, llm_tokenizer, sizes, seed, llm_rows, **layout.text.get("reasoning", {}))
    reasoning.load_state_dict(base.state_dict())
    _perturb(reasoning, 0.02, seed + 1)

    torch.manual_seed(seed + 2)
    vlm, processor = spec.build(sizes, vlm_tokenizer, vlm_rows, **layout.text.get("vlm", {}))
    processor.chat_template = vlm_tokenizer.chat_template
    _load_language(vlm, base)
    language = vlm.get_decoder() if hasattr(vlm, "get_decoder") else vlm.model.language_model
    _perturb(language, 0.02, seed + 3)

    paths = TinyFamily(family, out_dir / f"{family}-vlm", out_dir / f"{family}-base", out_dir / f"{family}-reasoning")
    shard = {"max_shard_size": max_shard_size} if max_shard_size else {}
    for model, path, tokenizer in ((base, paths.base, llm_tokenizer), (reasoning, paths.reasoning, llm_tokenizer)):
        model.to(dtype).save_pretrained(path, **shard)
        tokenizer.save_pretrained(path)
    vlm.to(dtype).save_pretrained(paths.vlm, **shard)
    processor.save_pretrained(paths.vlm)
    _write_generation_config(paths.vlm, vlm_tokenizer)
    if layout.renames:
        _rename_tensors(paths.vlm, layout.renames)
    if layout.flat_config:
        _flatten_config(paths.vlm / "config.json")
    return paths


def linear_recipe(vlm: Path, source: Path, **extra: Any) -> dict[str, Any]:
    """The tests' plain merge: linear, the VLM at weight 0.9 and one source LLM at 0.1; `extra` adds or
    overrides recipe fields."""
    return {"vlm": {"model": str(vlm), "weight": 0.9}, "sources": [{"model": str(source), "weight": 0.1}],
            "method": "linear", **extra}


def vlm_args(recipe: Path, **extra: Any) -> ModelArgs:
    """merged_vlm's model arguments for a recipe file, quiet, with `extra` options or overrides."""
    return split_model_args({"recipe": str(recipe), "quiet": True, **extra}, VLM_OPTIONS, "merged_vlm")


def rename_prefix(name: str, renames: Iterable[tuple[str, str]]) -> str:
    """`name` with the first of its (old prefix, new prefix) pairs that it starts with replaced."""
    for old, new in renames:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def _rename_tensors(path: Path, renames: tuple[tuple[str, str], ...]) -> None:
    """Rewrite a saved checkpoint's tensor names (and its index) with the published prefixes."""
    for file in sorted(path.glob("*.safetensors")):
        weights = {rename_prefix(k, renames): v for k, v in load_file(file).items()}
        save_file(weights, file, metadata={"format": "pt"})
    index = path / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {rename_prefix(k, renames): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))


def _flatten_config(config_file: Path) -> None:
    """Write the text settings at the top level of config.json, RoPE as rope_theta + rope_scaling (Qwen2-VL's hub form)."""
    config = json.loads(config_file.read_text())
    text = config.pop("text_config")
    text.pop("model_type", None)
    rope = dict(text.pop("rope_parameters", None) or {})
    text["rope_theta"] = rope.pop("rope_theta", None)
    rope.pop("rope_type", None)
    text["rope_scaling"] = rope or None
    for key, value in text.items():
        config.setdefault(key, value)
    config_file.write_text(json.dumps(config, indent=2))


def build_pickle_only(llm: Path, out_dir: Path, added_tokens: tuple[str, ...] = ("[PAD]",), shards: int = 2) -> Path:
    """A copy of a tiny LLM as TIGER-Lab/MAmmoTH-7B-Mistral ships: pickle shards with an index (one
    pytorch_model.bin without index when shards == 1), plus a pickled training_args.bin.

    added_tokens are appended to the tokenizer with fresh embedding and head rows (MAmmoTH added
    `[PAD]` as token 32000, the id Idefics2 gives `<fake_token_around_image>`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = T.AutoTokenizer.from_pretrained(llm)
    tokenizer.add_special_tokens({"additional_special_tokens": list(added_tokens)})
    tokenizer.save_pretrained(out_dir)
    weights = load_file(llm / "model.safetensors")
    config = json.loads((llm / "config.json").read_text())
    rows = len(tokenizer)
    generator = torch.Generator().manual_seed(rows)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        if name in weights:
            table = weights[name]
            extra = torch.randn(rows - table.shape[0], *table.shape[1:], generator=generator).to(table.dtype) * 0.02
            weights[name] = torch.cat([table, extra])
    config["vocab_size"] = rows
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    names = sorted(weights)
    files = [f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin" for i in range(shards)] if shards > 1 \
        else ["pytorch_model.bin"]
    weight_map = {name: files[i * len(files) // len(names)] for i, name in enumerate(names)}
    for file in files:
        torch.save({n: weights[n].clone() for n, f in weight_map.items() if f == file}, out_dir / file)
    if shards > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in weights.values())},
                 "weight_map": weight_map}
        (out_dir / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2))
    torch.save(TrainingArguments(output_dir="out", learning_rate=2e-5), out_dir / "training_args.bin")
    return out_dir


@dataclass
class TrainingArguments:
    """Stands in for the pickled transformers.TrainingArguments that fine-tuning scripts leave beside the weights."""

    output_dir: str
    learning_rate: float


def _load_language(vlm: T.PreTrainedModel, base: T.PreTrainedModel) -> None:
    """Copy the base LLM's decoder weights (not the vocabulary-sized ones) into the VLM's language model."""
    decoder = vlm.get_decoder() if hasattr(vlm, "get_decoder") else vlm.model.language_model
    source = base.model.state_dict()
    with torch.no_grad():
        for name, param in decoder.named_parameters():
            if name in source and source[name].shape == param.shape:
                param.copy_(source[name])


def _write_generation_config(path: Path, tokenizer: T.PreTrainedTokenizerFast) -> None:
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = {"eos_token_id": eos, "pad_token_id": tokenizer.pad_token_id, "do_sample": False}
    (path / "generation_config.json").write_text(json.dumps(config, indent=2))
