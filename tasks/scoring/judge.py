"""Optional LLM judge that reads the final answer out of a response (off by default).

Enabled only when ``MERGED_VLM_JUDGE_URL`` names an OpenAI-compatible base URL
(``.../v1``); ``MERGED_VLM_JUDGE_MODEL`` (default ``gpt-4o-mini``),
``MERGED_VLM_JUDGE_KEY`` (bearer token, optional), ``MERGED_VLM_JUDGE_TIMEOUT``
(seconds per request, default 30) and ``MERGED_VLM_JUDGE_CACHE`` (cache folder)
tune it. The judge only extracts the answer; the rule-based comparison still
decides correctness. Answers are cached in SQLite keyed by a hash of model and
prompt. When the judge fails, the rule-based verdict is returned with
``flagged=True``, never a silent wrong score.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import platformdirs

from .verdict import Verdict

URL_ENV = "MERGED_VLM_JUDGE_URL"
MODEL_ENV = "MERGED_VLM_JUDGE_MODEL"
KEY_ENV = "MERGED_VLM_JUDGE_KEY"
TIMEOUT_ENV = "MERGED_VLM_JUDGE_TIMEOUT"
CACHE_ENV = "MERGED_VLM_JUDGE_CACHE"
DEFAULT_MODEL = "gpt-4o-mini"
RESPONSE_CHARS = 8000
NO_ANSWER = "NONE"

_PROMPT = """You read a model's response to a question and report the final answer it gives.
{instruction}
If the response gives no final answer (refusal, empty, cut off), reply {none}.
Reply with the answer only, no explanation.

Response:
\"\"\"
{response}
\"\"\"

Final answer:"""


class JudgeError(RuntimeError):
    """The judge could not be reached or gave an unusable reply."""


def enabled() -> bool:
    """True when a judge URL is configured."""
    return bool(os.environ.get(URL_ENV, "").strip())


def choice_instruction(choices: Sequence[str]) -> str:
    """Judge instruction for a multiple-choice question with these option texts."""
    listed = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices or []))
    return "The question is multiple choice. Reply with the letter of the chosen option.\n" + (
        f"Options:\n{listed}" if listed else ""
    )


def free_form_instruction(answer_type: str) -> str:
    """Judge instruction for a free-form question of the given answer type."""
    kinds = {
        "integer": "an integer",
        "float": "a number",
        "list": "a list, written like [1, 2, 3]",
        "expression": "a mathematical expression or value, in LaTeX or plain text",
        "text": "a short text",
    }
    return f"The answer is {kinds.get(answer_type, 'a short text')}."


def _cache_path() -> Path:
    path = Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("merged-vlm"))
    path.mkdir(parents=True, exist_ok=True)
    return path / "judge.sqlite3"


@contextmanager
def _cache() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(_cache_path(), timeout=30)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL, created REAL)"
        )
        yield conn
        conn.commit()
    finally:
        conn.close()


def _cached(key: str) -> str | None:
    with _cache() as conn:
        row = conn.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _store(key: str, answer: str) -> None:
    with _cache() as conn:
        conn.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (key, answer, time.time()))


def _timeout() -> float:
    try:
        return max(float(os.environ.get(TIMEOUT_ENV, "30")), 0.1)
    except ValueError:
        return 30.0


def _ask(prompt: str, model: str) -> str:
    url = os.environ[URL_ENV].strip().rstrip("/") + "/chat/completions"
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": 64,
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if os.environ.get(KEY_ENV):
        headers["Authorization"] = f"Bearer {os.environ[KEY_ENV]}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=_timeout()) as reply:
            payload = json.loads(reply.read().decode("utf-8"))
        content = payload["choices"][0]["message"]["content"]
    except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError, TypeError) as exc:
        raise JudgeError(f"judge request to {url} failed: {exc}") from exc
    if not isinstance(content, str) or not content.strip():
        raise JudgeError("judge returned an empty answer")
    return content.strip()


def extract_with_judge(response: str, instruction: str) -> str | None:
    """The judge's reading of the final answer (None for "no answer"); raises JudgeError."""
    text = response if isinstance(response, str) else ("" if response is None else str(response))
    prompt = _PROMPT.format(instruction=instruction, none=NO_ANSWER, response=text[-RESPONSE_CHARS:])
    model = os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    key = hashlib.sha256(f"{model}\n{prompt}".encode()).hexdigest()
    try:
        answer = _cached(key)
    except (sqlite3.Error, OSError):
        answer = None
    if answer is None:
        answer = _ask(prompt, model)
        try:
            _store(key, answer)
        except (sqlite3.Error, OSError):
            pass
    return None if answer.strip().strip(".").upper() == NO_ANSWER else answer


def refine(
    rule_verdict: Verdict, response: str, instruction: str, rescore: Callable[[str], Verdict]
) -> Verdict:
    """With a judge configured, score the judge's extracted answer instead of the raw response.

    `rescore` applies the rule-based scorer to a short answer text. Without a judge
    the rule verdict is returned unchanged; if the judge fails it is returned with
    ``flagged=True``.
    """
    if not enabled():
        return rule_verdict
    try:
        answer = extract_with_judge(response, instruction)
    except JudgeError:
        return replace(rule_verdict, flagged=True)
    if answer is None:
        return Verdict(None, False, "judge")
    verdict = rescore(answer)
    return Verdict(verdict.extracted, verdict.correct, "judge")
