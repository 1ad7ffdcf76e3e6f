"""Chat backends against loopback HTTP servers (the real APIs need a network and a key)
and a real local transformers model."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agents.chat import ChatBackendError, complete_many, make_chat_backend
from envs.config import ConfigError
from envs.users import STOP

MESSAGES = [
    {"role": "system", "content": "You are a customer."},
    {"role": "user", "content": "Hi! How can I help you today?"},
]


class Loopback:
    """An HTTP server on 127.0.0.1 answering POSTs from a list of (status, body)."""

    def __init__(self, replies):
        self.replies, self.requests = list(replies), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, json.loads(body), dict(self.headers)))
                status, reply = outer.replies.pop(0)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("retry-after-ms", "10")  # keep the SDK's backoff short
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self):
        self.server.shutdown()


ANTHROPIC_OK = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "m",
    "content": [{"type": "text", "text": "I need to change my flight."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1000, "output_tokens": 200},
}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
BAD_REQUEST = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}


def anthropic_backend(url, **extra):
    return make_chat_backend(
        {
            "kind": "anthropic",
            "model": "m",
            "base_url": url,
            "price_input_per_mtok": 3.0,
            "price_output_per_mtok": 15.0,
            **extra,
        }
    )


def test_anthropic_retries_overload_then_answers_and_accounts_cost(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    server = Loopback([(529, OVERLOADED), (429, OVERLOADED), (200, ANTHROPIC_OK)])
    try:
        backend = anthropic_backend(server.url)
        assert backend.complete(MESSAGES, temperature=None, seed=1) == "I need to change my flight."
    finally:
        server.close()
    assert len(server.requests) == 3
    path, body, headers = server.requests[-1]
    assert path == "/v1/messages" and "test-key" in (
        headers.get("x-api-key", "") + headers.get("Authorization", "")
    )
    assert body["system"] == "You are a customer." and "temperature" not in body
    assert body["messages"] == MESSAGES[1:]
    u = backend.usage
    assert (u.calls, u.input_tokens, u.output_tokens) == (1, 1000, 200)
    assert u.cost_usd == pytest.approx(1000 * 3e-6 + 200 * 15e-6) and u.seconds > 0


def test_anthropic_gives_up_with_a_clear_error(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    server = Loopback([(400, BAD_REQUEST)] + [(529, OVERLOADED)] * 3)
    try:
        backend = anthropic_backend(server.url, max_retries=2)
        with pytest.raises(ChatBackendError, match="anthropic m"):
            backend.complete(MESSAGES, temperature=None, seed=None)  # 400: not retried
        assert len(server.requests) == 1
        with pytest.raises(ChatBackendError):
            backend.complete(MESSAGES, temperature=None, seed=None)  # 529 x 3: retries spent
        assert len(server.requests) == 4
        with pytest.raises(ConfigError, match="temperature"):
            backend.complete(MESSAGES, temperature=0.5, seed=None)
    finally:
        server.close()


def test_missing_key_and_unknown_backend_are_config_errors(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        make_chat_backend({"kind": "anthropic"})
    with pytest.raises(ConfigError, match="known"):
        make_chat_backend({"kind": "gpt"})
    with pytest.raises(ConfigError, match="unknown option"):
        make_chat_backend({"kind": "local", "modle": "x"})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    with pytest.raises(ConfigError, match="cannot set a temperature"):
        from envs.factory import make_user

        make_user({"kind": "llm", "temperature": 0.7}, make_chat_backend({"kind": "anthropic"}))


def test_openai_compatible_server():
    reply = {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "qwen",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": f"Thanks! {STOP}"},
            }
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55},
    }
    server = Loopback([(503, {"error": {"message": "busy"}}), (200, reply)])
    try:
        backend = make_chat_backend(
            {"kind": "openai", "model": "qwen", "base_url": server.url + "/v1"}
        )
        assert backend.complete(MESSAGES, temperature=0.5, seed=3) == f"Thanks! {STOP}"
    finally:
        server.close()
    path, body, _ = server.requests[-1]
    assert path == "/v1/chat/completions" and body["seed"] == 3 and body["messages"] == MESSAGES
    assert (backend.usage.input_tokens, backend.usage.output_tokens) == (50, 5)


def test_local_backend_drives_the_llm_user_in_the_env():
    """A real transformers model (tiny, random) as tau2's LLM user: seeded, recorded."""
    from agents.env_pool import EnvSpec
    from envs.core import AgentAction

    user = {
        "kind": "llm",
        "temperature": 1.0,
        "backend": {"kind": "local", "model": "tiny-random", "max_tokens": 8},
    }
    env = EnvSpec({"name": "tau3_airline", "split": "test"}, user).build()
    obs_a, info = env.reset(seed=4, options={"task_id": "2"})
    assert info["user"]["model"] == "tiny-random" and info["user"]["temperature"] == 1.0
    opening = obs_a["messages"][1]["content"]
    assert opening  # the model wrote the customer's first message
    obs, *_ = env.step(AgentAction(content="Could you give me your user id?"))
    assert obs["messages"][0]["role"] == "user"
    obs_b, _ = env.reset(seed=4, options={"task_id": "2"})
    assert obs_b["messages"][1]["content"] == opening  # same seed, same user


def test_a_chat_backend_can_act_as_the_policy():
    """``rollout.backend=chat``: how a hosted model is evaluated (here a real local model)."""
    from agents.build import build_policy
    from agents.env_pool import EnvSpec, LocalEnvPool
    from agents.rollout import RolloutConfig, rollout_groups

    rollout = {
        "backend": "chat",
        "chat_backend": {"kind": "local", "model": "tiny-random", "max_tokens": 6},
        "chat_format": {"tool_schema_style": "signature"},
        "sampling": {"temperature": 0.0},
    }
    policy, model = build_policy({"name": "tiny-random"}, rollout)
    assert model is None
    spec = EnvSpec({"name": "airline_mini", "split": "test"})
    (group,) = rollout_groups(LocalEnvPool(spec, 1), policy, ["240"], 0, RolloutConfig(n=1))
    (episode,) = group.episodes
    assert sum(episode.response_mask) > 0 and episode.termination_reason
    with pytest.raises(ConfigError, match="chat_backend"):
        build_policy({"name": "tiny-random"}, {**rollout, "chat_backend": None})


def test_local_backend_is_reproducible_under_concurrent_calls():
    """SGCD calls its analyst from a thread pool: seeding and sampling must not interleave
    between calls, or a seeded run stops being reproducible."""
    from concurrent.futures import ThreadPoolExecutor

    backend = make_chat_backend({"kind": "local", "model": "tiny-random", "max_tokens": 24})
    messages = [{"role": "user", "content": "Which step decided the outcome?"}]
    alone = backend.complete(messages, temperature=1.0, seed=0)
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(
            pool.map(lambda _: backend.complete(messages, temperature=1.0, seed=0), range(8))
        )
    assert together == [alone] * 8


def test_local_backend_batches_requests_exactly():
    """A batch of requests decodes together; greedy replies equal each request alone, and a
    sampled batch repeats under its seed."""
    backend = make_chat_backend({"kind": "local", "model": "tiny-random", "max_tokens": 12})
    requests = [
        [{"role": "user", "content": "Which step decided the outcome?"}],
        [{"role": "user", "content": "Was the refund policy checked before cancelling?"}],
    ]
    greedy = backend.complete_batch(requests, temperature=0.0, seed=0)
    assert greedy == [backend.complete(r, temperature=0.0, seed=0) for r in requests]
    sampled = backend.complete_batch(requests, temperature=1.0, seed=5)
    assert sampled == backend.complete_batch(requests, temperature=1.0, seed=5)
    assert sampled != backend.complete_batch(requests, temperature=1.0, seed=6)


def test_complete_many_gives_none_where_the_backend_failed():
    class Flaky:
        model = "flaky"

        def complete(self, messages, *, temperature, seed):
            if "fail" in messages[0]["content"]:
                raise ChatBackendError("overloaded")
            return messages[0]["content"].upper()

    requests = [[{"role": "user", "content": c}] for c in ("a", "fail", "b")]
    replies = complete_many(Flaky(), requests, temperature=None, seed=None, max_concurrent=2)
    assert replies == ["A", None, "B"]


def _openai_reply(text, prompt_tokens):
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "qwen",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7, "total_tokens": 0},
    }


def test_a_request_started_early_is_sent_once_and_accounted_when_taken():
    from agents.chat import EarlyStartChat

    other = [{"role": "user", "content": "Another group's siblings."}]
    server = Loopback(
        [(200, _openai_reply("early", 10)), (200, _openai_reply("late", 20))]
        + [(400, {"error": {"message": "bad"}})] * 2
    )
    try:
        backend = make_chat_backend(
            {"kind": "openai", "model": "qwen", "base_url": server.url + "/v1", "max_retries": 0}
        )
        chat = EarlyStartChat(backend, max_concurrent=2)
        chat.start(MESSAGES, temperature=0.5, seed=3)
        for _ in range(1000):  # sent and answered before anyone asks for the reply
            if backend.usage.calls:
                break
            threading.Event().wait(0.01)
        assert backend.usage.calls == 1 and chat.usage.calls == 0
        # a request that was not started is sent when asked for
        assert chat.complete(other, temperature=0.5, seed=3) == "late"
        assert chat.complete(MESSAGES, temperature=0.5, seed=3) == "early"
        assert len(server.requests) == 2
        assert (chat.usage.calls, chat.usage.input_tokens) == (2, 30)
        # the same messages under another seed are another request; its error is raised
        # where the reply is taken, and a reply nobody took is counted and forgotten
        chat.start(MESSAGES, temperature=0.5, seed=4)
        chat.start(other, temperature=0.5, seed=4)
        with pytest.raises(ChatBackendError):
            chat.complete(MESSAGES, temperature=0.5, seed=4)
        assert chat.drop_unused() == 1 and chat.drop_unused() == 0
    finally:
        server.close()
    assert chat.usage.calls == 2
