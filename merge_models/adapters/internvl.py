"""InternVL as transformers supports it natively (the `-hf` checkpoints, model_type `internvl`).

The remote-code `internvl_chat` checkpoints are not supported: their language models
(InternLM2 fused `wqkv`) do not share names or shapes with a Hugging Face causal LM.
"""

from dataclasses import replace

from merge_models.adapters.llava import ADAPTER as LLAVA

ADAPTER = replace(LLAVA, family="internvl", model_types=("internvl",))
