"""Rewards: the built-in exact match, callables by import path, scorers, and an HTTP endpoint on a real local server."""

import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from hpo.config.errors import InputError
from hpo.config.sweep_file import load_sweep
from trainers.recipe import Scoring
from trainers.rewards import RecordedReward, ScorerReward, exact_match, import_callable, load_reward
from trainers.scorers import ScoringError, make_scorer

CHAT_ANSWER = [{"role": "assistant", "content": " animal \n"}]


def test_exact_match_is_plus_one_or_minus_one_on_the_parsed_answer():
    completions = [CHAT_ANSWER, [{"role": "assistant", "content": "Animal"}], "plant"]
    assert exact_match(["p"] * 3, completions, reference=["animal", "animal", "plant"]) == [1.0, -1.0, 1.0]


def test_callables_are_imported_by_path_with_clear_errors(tmp_path):
    assert import_callable("trainers.rewards:exact_match") is exact_match
    (tmp_path / "my_rewards.py").write_text(
        "def length(prompts, completions, **kw):\n    return [1.0] * len(completions)\n"
    )
    assert import_callable("my_rewards:length", str(tmp_path))(["p"], ["c"]) == [1.0]
    with pytest.raises(ValueError, match="must look like 'package.module:function', got 'exact_match'"):
        import_callable("exact_match")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        import_callable("no_such_module:f")
    with pytest.raises(ValueError, match="module 'trainers.rewards' has no callable 'nope'"):
        import_callable("trainers.rewards:nope")


def test_a_reward_that_misbehaves_fails_with_its_step():
    class State:
        global_step = 6

    def broken(prompts, completions, **kw):
        raise KeyError("answer")

    with pytest.raises(ScoringError, match="the reward raised KeyError") as caught:
        RecordedReward(broken)(["p"], ["c"], trainer_state=State())
    assert caught.value.step == 7
    with pytest.raises(ScoringError, match="every reward must be a finite number"):
        RecordedReward(lambda prompts, completions, **kw: [float("nan")])(["p"], ["c"])
    with pytest.raises(ScoringError, match="returned 2 values for 1 completions"):
        RecordedReward(lambda prompts, completions, **kw: [1.0, 1.0])(["p"], ["c"])


def http_reward(url: str, concurrency: int, timeout_s: float, retries: int) -> ScorerReward:
    return ScorerReward(make_scorer(Scoring(url=url, concurrency=concurrency, timeout_s=timeout_s, retries=retries)))


class RewardServer:
    """A real HTTP server on localhost (keep-alive): /ok scores exact match, /slow times out first, /fail is
    down, /busy answers 429 once, /refuse answers 400, /bad and /html answer what is not a score."""

    def __init__(self):
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.slow_attempts = 0
        self.busy_attempts = 0
        self.clients: set = set()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a pooled client reuses its connections

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, **body})
                    server.clients.add(self.client_address)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, document = self.answer(body)
                finally:
                    with server.lock:  # before the answer goes out: the client may send its next one at once
                        server.in_flight -= 1
                self.send_json(status, document)

            def answer(self, body):
                if self.path == "/fail":
                    return 500, {"error": "down"}
                if self.path == "/bad":
                    return 200, {"value": 1}
                if self.path == "/html":
                    return 200, "<html>oops</html>"
                if self.path == "/refuse":
                    return 400, {"error": "field 'reference' is required"}
                if self.path == "/busy":
                    with server.lock:
                        server.busy_attempts += 1
                        if server.busy_attempts == 1:
                            return 429, {"error": "slow down"}
                if self.path == "/slow":
                    with server.lock:
                        server.slow_attempts += 1
                        first = server.slow_attempts == 1
                    if first:
                        time.sleep(1.0)  # longer than the client's timeout: the retry must answer
                time.sleep(0.05)
                return 200, {"reward": 1.0 if body["completion"].strip() == body["reference"] else -1.0}

            def send_json(self, status, document):
                data = (document if isinstance(document, str) else json.dumps(document)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = RewardServer()
    yield running
    running.close()


def test_http_reward_scores_every_completion_within_the_concurrency_limit(server):
    reward = http_reward(f"{server.url}/ok", concurrency=2, timeout_s=5, retries=0)
    prompts = [[{"role": "user", "content": f"Word {i}"}] for i in range(6)]
    completions = [[{"role": "assistant", "content": "animal" if i % 2 else "tool"}] for i in range(6)]
    rewards = reward(prompts, completions, reference=["animal"] * 6, row_id=list(range(6)), trainer_state=object())
    assert rewards == [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]
    assert server.max_in_flight == 2  # six requests, never more than two at a time
    sent = sorted(server.requests, key=lambda r: r["row_id"])
    assert sent[1] == {"path": "/ok", "prompt": "Word 1", "completion": "animal", "reference": "animal", "row_id": 1}


def test_a_timed_out_request_is_retried(server):
    reward = http_reward(f"{server.url}/slow", concurrency=1, timeout_s=0.3, retries=1)
    assert reward(["p"], ["animal"], reference=["animal"]) == [1.0]
    assert server.slow_attempts == 2


def test_an_endpoint_that_keeps_failing_fails_clearly_after_its_retries(server):
    reward = http_reward(f"{server.url}/fail", concurrency=2, timeout_s=1, retries=2)
    with pytest.raises(ScoringError, match=r"/fail failed 3 times \(last: HTTP 500: .*\); check that it is up"):
        reward(["p"], ["animal"], reference=["animal"])
    assert len(server.requests) == 3
    with pytest.raises(ScoringError, match=r"answered \{'value': 1\}; it must answer \{\"score\": <number>\}"):
        http_reward(f"{server.url}/bad", 1, 1, 2)(["p"], ["animal"], reference=["animal"])
    with pytest.raises(ScoringError, match=r"answered '<html>oops</html>', not JSON"):
        http_reward(f"{server.url}/html", 1, 1, 2)(["p"], ["animal"], reference=["animal"])
    assert len(server.requests) == 5  # a body that is not a score is not retried
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ScoringError, match=r"failed 1 times \(last: ConnectError"):
        http_reward(f"http://127.0.0.1:{port}/", 1, 0.5, 0)(["p"], ["animal"], reference=["animal"])


def rft_recipe(tiny, url: str):
    recipe = load_sweep(tiny / "sweep_rft.yaml").recipe
    recipe = recipe.with_hyperparameters({"learning_rate": 3e-3, "num_generations": 4, "lora_rank": 4, "lora_alpha": 8})
    training = dataclasses.replace(recipe.training, max_steps=2, rung_interval=2)
    reward = Scoring(url=url, concurrency=4, timeout_s=2, retries=1)
    return dataclasses.replace(recipe, training=training, reward=reward)


def test_grpo_trains_on_an_http_reward(tiny, server):
    from trainers.rft import train

    rungs = []
    final = train(rft_recipe(tiny, f"{server.url}/ok"), lambda step, metrics, checkpoint: rungs.append(metrics))
    assert [m["step"] for m in rungs] == [2] and final["final"] == 1.0
    eval_prompts = 12
    assert len(server.requests) == 2 * 8 + eval_prompts  # two steps of 8 sampled answers, then the probe
    assert {"prompt", "completion", "reference"} <= set(server.requests[0])
    assert -1.0 <= final["reward_mean"] <= 1.0 and 0.0 <= final["train_positive_rate"] <= 1.0


def test_grpo_on_a_failing_endpoint_raises_instead_of_training_on_nothing(tiny, server):
    from trainers.rft import train

    with pytest.raises(ScoringError, match="failed 2 times") as caught:
        train(rft_recipe(tiny, f"{server.url}/fail"), lambda *args: None)
    assert caught.value.step == 1


def test_reward_config_errors_name_the_key(tiny):
    sweep = tiny / "sweep_rft.yaml"
    document = yaml.safe_load(sweep.read_text())
    cases = {
        "both": ({"callable": "trainers.rewards:exact_match", "url": "http://x"}, "task.reward: must give exactly one"),
        "neither": ({"concurrency": 2}, "task.reward: must give exactly one of scorer, callable or url"),
        "bad scorer": ({"scorer": "exakt_match"}, "task.reward.scorer: unknown scorer 'exakt_match' (did you mean"),
        "bad url": ({"url": "ftp://x"}, "task.reward.url: must start with http:// or https://, got 'ftp://x'"),
        "bad callable": ({"callable": "trainers.rewards:exact"}, "task.reward.callable: module 'trainers.rewards' has"),
        "bad retries": ({"url": "http://x", "retries": -1}, "task.reward.retries: must be >= 0, got -1"),
    }
    for name, (reward, message) in cases.items():
        document["task"]["reward"] = reward
        sweep.write_text(yaml.safe_dump(document))
        with pytest.raises(InputError) as caught:
            load_sweep(sweep)
        assert any(line.startswith(f"{sweep}: ") and message in line for line in caught.value.problems), name
    assert isinstance(load_reward(Scoring(url="http://x")), ScorerReward)
    assert load_reward(Scoring(callable="trainers.rewards:exact_match")) is exact_match


def test_a_refused_request_fails_at_once_and_a_busy_endpoint_is_retried(server):
    with pytest.raises(ScoringError, match=r"refused the request: HTTP 400: .*'reference' is required"):
        http_reward(f"{server.url}/refuse", 1, 1, 3)(["p"], ["animal"], reference=["animal"])
    assert len(server.requests) == 1  # a 4xx answer is the request's fault: no retry
    assert http_reward(f"{server.url}/busy", 1, 1, 1)(["p"], ["animal"], reference=["animal"]) == [1.0]
    assert server.busy_attempts == 2  # 429, then the answer


def test_the_client_reuses_its_connections(server):
    reward = http_reward(f"{server.url}/ok", concurrency=2, timeout_s=5, retries=0)
    for _ in range(3):
        reward(["p"] * 4, ["animal"] * 4, reference=["animal"] * 4)
    assert len(server.requests) == 12 and len(server.clients) <= 2  # twelve requests over at most two connections


def test_grpo_trains_on_a_built_in_scorer_as_its_reward(tiny):
    from trainers.rft import train

    recipe = rft_recipe(tiny, "http://unused")
    recipe = dataclasses.replace(recipe, reward=Scoring(scorer="normalized_match"))
    final = train(recipe, lambda step, metrics, checkpoint: None)
    assert final["final"] == 1.0 and 0.0 <= final["reward_mean"] <= 1.0  # a 0/1 score as the reward
    assert final["positive_reward_rate"] == pytest.approx(final["reward_mean"])
