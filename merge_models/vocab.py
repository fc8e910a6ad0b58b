"""Embedding and output-head rows paired across vocabularies by token string.

The same row index can mean different tokens in a VLM and an LLM tuned from one base (Idefics2's
row 32000 is `<fake_token_around_image>`, MAmmoTH's is `[PAD]`), and a VLM's image-token rows
sit beside LLM rows that were never trained. So when vocabulary tensors merge, a VLM row is
paired with the row every other input gives the same token string, through the checkpoints'
own tokenizers; VLM rows without a partner in every input keep the VLM's values. The plan names
the rows whose tokens differ at the same index (row_differences) whether or not embeddings merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as T

from merge_models.errors import CheckpointError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


@dataclass(frozen=True, eq=False)
class RowPairing:
    """VLM rows (ascending) and, aligned with them, the row of the same token in each other input."""

    vlm_rows: torch.Tensor
    other_rows: dict[str, torch.Tensor]
    by_token: bool

    def __len__(self) -> int:
        return self.vlm_rows.numel()

    def within(self, vlm_limit: int, limits: dict[str, int]) -> RowPairing:
        """Only the pairs whose rows exist in tensors with these row counts."""
        keep = self.vlm_rows < vlm_limit
        for field, rows in self.other_rows.items():
            keep &= rows < limits[field]
        return RowPairing(self.vlm_rows[keep], {f: r[keep] for f, r in self.other_rows.items()}, self.by_token)

    def rows(self, field: str | None) -> torch.Tensor:
        """The rows of one input (None: the VLM) in pair order."""
        return self.vlm_rows if field is None else self.other_rows[field]


def has_tokenizer(path: Path) -> bool:
    """True when a checkpoint directory carries tokenizer files."""
    return any((path / name).is_file() for name in TOKENIZER_FILES) or any(path.glob("*.tiktoken"))


def token_ids(path: Path, field: str, trust_remote_code: bool) -> dict[str, int]:
    """token string -> id, added tokens included, from the checkpoint's own tokenizer."""
    try:
        tokenizer = T.AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{field}.model", f"its tokenizer could not be loaded ({type(exc).__name__}), so its "
                                                "embedding rows cannot be paired with the VLM's by token",
                              "restore the tokenizer files or keep `exclude: [embed_tokens, lm_head]`") from None
    return tokenizer.get_vocab()


def pair_by_token(vlm: dict[str, int], others: dict[str, dict[str, int]]) -> RowPairing:
    """Pairs of rows that hold the same token string in the VLM and in every other input."""
    pairs = sorted((vid, token) for token, vid in vlm.items() if all(token in o for o in others.values()))
    claimed: dict[str, set[int]] = {field: set() for field in others}
    vlm_rows, other_rows = [], {field: [] for field in others}
    seen: set[int] = set()
    for vid, token in pairs:
        ids = {field: vocab[token] for field, vocab in others.items()}
        if vid in seen or any(i in claimed[f] for f, i in ids.items()):
            continue  # a row pairs at most once on each side
        seen.add(vid)
        vlm_rows.append(vid)
        for field, i in ids.items():
            claimed[field].add(i)
            other_rows[field].append(i)
    return RowPairing(torch.tensor(vlm_rows, dtype=torch.long),
                      {f: torch.tensor(r, dtype=torch.long) for f, r in other_rows.items()}, True)


def row_differences(vlm: dict[str, int], other: dict[str, int]) -> list[tuple[int, str | None, str | None]]:
    """(row, the other's token, the VLM's token) for every row index whose tokens differ (None: no token there),
    in ascending order."""
    ours = {index: token for token, index in vlm.items()}
    theirs = {index: token for token, index in other.items()}
    return [(row, theirs.get(row), ours.get(row)) for row in sorted(ours.keys() | theirs.keys())
            if theirs.get(row) != ours.get(row)]


def describe_differences(differences: list[tuple[int, str | None, str | None]], shown: int = 3) -> str:
    """One clause: how many rows differ and the first `shown`, each as `row theirs vs ours` (their span too
    when some are left out)."""
    def token(value: str | None) -> str:
        return "none" if value is None else repr(value)

    items = [f"{row} {token(theirs)} vs {token(ours)}" for row, theirs, ours in differences[:shown]]
    more = len(differences) - shown
    span = f" ({differences[0][0]}-{differences[-1][0]})" if more > 0 else ""
    count = "1 token row differs" if len(differences) == 1 else f"{len(differences)} token rows differ"
    return f"{count} at the same index{span}: {', '.join(items)}" + (f" and {more} more" if more > 0 else "")


def pair_by_index(rows: int, fields: list[str]) -> RowPairing:
    """Row i with row i: for checkpoints that carry no tokenizer at all."""
    index = torch.arange(rows)
    return RowPairing(index, {field: index for field in fields}, False)


def runs(rows: torch.Tensor) -> list[tuple[int, int, int]]:
    """(first pair, first row, length) of each stretch of consecutive rows in pair order."""
    if rows.numel() == 0:
        return []
    breaks = torch.nonzero(rows[1:] - rows[:-1] != 1).reshape(-1) + 1
    starts = [0, *breaks.tolist()]
    ends = [*breaks.tolist(), rows.numel()]
    return [(s, int(rows[s]), e - s) for s, e in zip(starts, ends)]
