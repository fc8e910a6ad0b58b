"""tiny-world: a small family of genuinely trained models (base LLM, reasoning LLM, Qwen2-VL) that makes
the perception-vs-reasoning effect of merging observable on CPU in minutes.

Modules: `build` (tokenizer, configs, saving), `data` (training examples of each stage), `train` (the
three training stages; `python -m tiny_world.train --out models/tiny-world`), `evaluate`
(a fast greedy evaluation loop on the probe, text and image, and the merge sweep).
"""
