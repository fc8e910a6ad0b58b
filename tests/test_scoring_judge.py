"""The optional LLM judge: off by default, cached, and flagged (never silently wrong) when it fails."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mvlm_tasks.scoring import Verdict, judge, score_dynamath, score_free_form, score_multiple_choice

COLORS = ["red", "green", "blue", "yellow"]
AMBIGUOUS = "It could be green, though the lighting makes it hard to say."  # rules read "green" -> B
SERVER_LIFETIME_S = 30.0


class FakeJudge:
    """A local OpenAI-compatible endpoint whose reply, status and delay the test controls."""

    def __init__(self) -> None:
        self.reply = "C"
        self.status = 200
        self.delay_s = 0.0
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                time.sleep(fake.delay_s)
                payload = {"choices": [{"message": {"role": "assistant", "content": fake.reply}}]}
                data = json.dumps(payload if fake.status == 200 else {"error": "boom"}).encode()
                try:
                    self.send_response(fake.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._stopper = threading.Timer(SERVER_LIFETIME_S, self.stop)  # stops itself even if a test hangs
        self._stopper.daemon = True

    def start(self) -> FakeJudge:
        self._thread.start()
        self._stopper.start()
        return self

    def stop(self) -> None:
        self._stopper.cancel()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_judge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeJudge]:
    fake = FakeJudge().start()
    monkeypatch.setenv(judge.URL_ENV, fake.url)
    monkeypatch.setenv(judge.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(judge.TIMEOUT_ENV, "2")
    monkeypatch.delenv(judge.KEY_ENV, raising=False)
    monkeypatch.delenv(judge.MODEL_ENV, raising=False)
    try:
        yield fake
    finally:
        fake.stop()


def test_judge_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(judge.URL_ENV, raising=False)
    assert score_multiple_choice(AMBIGUOUS, COLORS, "C") == Verdict("B", False, "option_text")


def test_judge_extracts_and_rules_still_compare(fake_judge: FakeJudge) -> None:
    assert score_multiple_choice(AMBIGUOUS, COLORS, "C") == Verdict("C", True, "judge")
    fake_judge.reply = "B"
    assert score_multiple_choice(AMBIGUOUS + " ", COLORS, "C") == Verdict("B", False, "judge")
    request = fake_judge.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == judge.DEFAULT_MODEL and request["body"]["temperature"] == 0
    assert AMBIGUOUS in request["body"]["messages"][0]["content"]
    assert request["auth"] is None


def test_model_and_key_come_from_the_environment(
    fake_judge: FakeJudge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(judge.MODEL_ENV, "local-judge")
    monkeypatch.setenv(judge.KEY_ENV, "secret-token")
    score_free_form("The answer is maybe 12 or 13.", "13", "integer")
    assert fake_judge.requests[-1]["body"]["model"] == "local-judge"
    assert fake_judge.requests[-1]["auth"] == "Bearer secret-token"


def test_verdicts_are_cached_on_disk(fake_judge: FakeJudge, tmp_path: Path) -> None:
    fake_judge.reply = "13"
    first = score_free_form("Either 12 or 13.", "13", "integer")
    fake_judge.reply = "12"  # a second request would now disagree
    second = score_free_form("Either 12 or 13.", "13", "integer")
    assert first == second == Verdict("13", True, "judge")
    assert len(fake_judge.requests) == 1
    assert (tmp_path / "cache" / "judge.sqlite3").is_file()


def test_failing_judge_returns_flagged_rule_verdict(fake_judge: FakeJudge) -> None:
    fake_judge.status = 500
    assert score_multiple_choice(AMBIGUOUS, COLORS, "C") == Verdict("B", False, "option_text", flagged=True)
    assert score_multiple_choice("Answer: C", COLORS, "C") == Verdict("C", True, "answer_is", flagged=True)


def test_judge_timeout_is_flagged_and_bounded(fake_judge: FakeJudge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(judge.TIMEOUT_ENV, "0.3")
    fake_judge.delay_s = 1.5
    start = time.perf_counter()
    verdict = score_dynamath({"answer_type": "float", "ground_truth": "2.0944"}, "The period is 2.094.")
    assert time.perf_counter() - start < 1.4
    assert verdict == Verdict("2.094", True, "last_number", flagged=True)


def test_unreachable_judge_is_flagged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeJudge()  # bound but never serving: connections are refused once closed
    url = fake.url
    fake.server.server_close()
    monkeypatch.setenv(judge.URL_ENV, url)
    monkeypatch.setenv(judge.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(judge.TIMEOUT_ENV, "1")
    assert score_free_form("The answer is 7.", "7", "integer") == Verdict(
        "7", True, "answer_is", flagged=True
    )


def test_judge_reporting_no_answer_scores_wrong(fake_judge: FakeJudge) -> None:
    fake_judge.reply = "NONE"
    assert score_multiple_choice("I can't tell.", COLORS, "C") == Verdict(None, False, "judge")


def test_malformed_judge_reply_is_flagged(fake_judge: FakeJudge) -> None:
    fake_judge.reply = ""  # empty content is unusable
    assert score_free_form("The answer is 7.", "7", "integer").flagged


def test_official_mathvista_normalises_the_judge_extraction(fake_judge: FakeJudge) -> None:
    """With a judge configured, it stands in for MathVista's GPT extractor; the official
    normalisation (the nearest option for an unmatched extraction) still decides."""
    from mvlm_tasks.scoring import score_protocols

    doc = {"question": "Which is larger?", "choices": ["Sun", "Moon"], "question_type": "multi_choice",
           "answer_type": "text", "answer": "Sun", "precision": None}
    fake_judge.reply = "Sunn"
    verdicts = score_protocols("mathvista", doc, "The larger one is the bright one in the sky by day.")
    assert verdicts["official"] == Verdict("Sun", True, "judge")
