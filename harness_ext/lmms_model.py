"""The lmms-eval model `merged_vlm`: a VLM merged from a recipe at load time.

Registered through the `lmms_eval.models` entry point (harness_ext.lmms_manifest) with a chat class (the
default) and a simple class (`--force_simple`). Usage:

    lmms_eval --model merged_vlm --model_args recipe=tiny-world,lambda=0.7 --tasks mvlm_probe
"""

from __future__ import annotations

import time
from typing import Any

from loguru import logger
from tqdm.auto import tqdm

from harness_ext.compat.lmms_eval import log_throughput
from harness_ext.generation import conversation, generate_counted
from harness_ext.lmms_results import output_folder_name, record_loaded_merge
from harness_ext.loading import LoadedVLM, load_merged_vlm, load_message
from harness_ext.model_options import VLM_OPTIONS, split_model_args
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms

MODEL_NAME = "merged_vlm"


def _rank_device(state: Any) -> str | None:
    """Each process of a multi-GPU run on its own GPU (as lmms-eval's models place themselves); else None."""
    import torch

    if state.num_processes > 1 and torch.cuda.is_available():
        return f"cuda:{state.local_process_index}"
    return None


class _MergedVLM(lmms):
    """Shared loading, batching and generation of the chat and simple classes."""

    def __init__(self, loaded: LoadedVLM | None = None, **kwargs: Any) -> None:
        """Load from --model_args (`recipe=...`), or wrap an already loaded model (`loaded=`, in-process tools)."""
        super().__init__()
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        # lmms-eval's Accelerator state when it made one; else as Accelerator() would make it (`--cpu` included)
        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
        self._rank, self._world_size = state.process_index, state.num_processes
        if loaded is None:
            args = split_model_args(kwargs, VLM_OPTIONS, MODEL_NAME)
            self.options = args.options
            loaded = load_merged_vlm(args, device=self.options.get("device") or _rank_device(state))
        else:
            self.options = {**VLM_OPTIONS, **kwargs}
        self.loaded: LoadedVLM = loaded
        self._batch_size = int(self.options["batch_size"] or 1)
        record_loaded_merge(self.loaded.record)
        logger.info(f"merged_vlm[rank {self.rank} of {self.world_size}]: {load_message(self.loaded.record)}; "
                    f"results go to {output_folder_name(self.loaded.record)}/")

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def device(self):
        return self.loaded.model.device

    @property
    def model(self):
        return self.loaded.model

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError("merged_vlm answers generate_until tasks; loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("merged_vlm answers single-round generate_until tasks")

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Answer requests in batches of `batch_size`, grouped by generation settings, in request order."""
        results: list[GenerationResult | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(repr(sorted(self._gen_kwargs(request.args).items())), []).append(index)
        tokens, seconds = 0, 0.0
        with tqdm(total=len(requests), desc="merged_vlm", disable=self.rank != 0 or self.options["quiet"]) as bar:
            for indices in groups.values():
                for start in range(0, len(indices), self.batch_size):
                    batch = indices[start:start + self.batch_size]
                    chats = [self._conversation(requests[i].args) for i in batch]
                    gen_kwargs = self._gen_kwargs(requests[batch[0]].args)
                    began = time.perf_counter()
                    answers = generate_counted(self.loaded.model, self.loaded.processor, chats, gen_kwargs)
                    seconds += time.perf_counter() - began
                    for i, answer in zip(batch, answers):
                        counts = TokenCounts(input_tokens=answer.input_tokens, output_tokens=answer.output_tokens)
                        results[i] = GenerationResult(text=answer.text, token_counts=counts)
                        tokens += answer.output_tokens
                    bar.update(len(batch))
        if requests:
            log_throughput(tokens, seconds, self.rank)
        return results  # type: ignore[return-value]

    def _conversation(self, args: tuple) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _gen_kwargs(self, args: tuple) -> dict[str, Any]:
        raise NotImplementedError


class MergedVLMChat(_MergedVLM):
    """Chat requests: (context, doc_to_messages, gen_kwargs, doc_id, task, split)."""

    is_simple = False

    def _conversation(self, args: tuple) -> list[dict[str, Any]]:
        from lmms_eval.protocol import ChatMessages

        _, doc_to_messages, _, doc_id, task, split = args
        messages = ChatMessages(messages=doc_to_messages(self.task_dict[task][split][doc_id]))
        hf_messages = messages.to_hf_messages()
        system = self.options.get("system_prompt")
        if system and hf_messages[0]["role"] != "system":
            hf_messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
        return hf_messages

    def _gen_kwargs(self, args: tuple) -> dict[str, Any]:
        return dict(args[2] or {})


class MergedVLMSimple(_MergedVLM):
    """Simple requests: (context, gen_kwargs, doc_to_visual, doc_id, task, split)."""

    is_simple = True

    def _conversation(self, args: tuple) -> list[dict[str, Any]]:
        context, _, doc_to_visual, doc_id, task, split = args
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual else []
        images = [v for v in (visuals or []) if v is not None]
        return conversation(images, context, self.options.get("system_prompt"))

    def _gen_kwargs(self, args: tuple) -> dict[str, Any]:
        return dict(args[1] or {})
