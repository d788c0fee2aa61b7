"""grpo.rollout: server against a fake vLLM server started here (tests/train/fake_vllm.py): the step trains on
exactly the server's completions, weight syncs arrive in TRL's order with the policy's names and shapes (NCCL
broadcast replaced by a recorder: no vLLM, no GPU here), the LoRA adapter path of the openai protocol, the API key
sent and never written, and each failure's message."""

from __future__ import annotations

import base64
import io
import json
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from PIL import Image

from mmalign.config import apply_overrides, config_from_dict
from mmalign.errors import ConfigError, DataError
from mmalign.models import load
from mmalign.models.examples import Example
from mmalign.models.rollout import SamplingOptions
from mmalign.models.rollout_ids import Completion, rollouts_from_ids
from mmalign.train import weight_sync
from mmalign.train.grpo import GRPOConfig, train_grpo
from mmalign.train.prompts import read_prompts
from mmalign.train.rollout_server import RolloutServerConfig, RolloutServerError, ServerClient
from mmalign.train.server_rollouts import ServerRollouts
from mmalign.world.config import WorldConfig
from mmalign.world.generate import generate_world

from .fake_vllm import FakeVLLM

pytestmark = pytest.mark.usefixtures("one_thread")

ONE_AT_A_TIME = "grpo.server.max_concurrency=1"  # requests arrive in prompt order
WORDS = ["red circle", "blue square", "green triangle", "a red square"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("grpo-server") / "world"
    generate_world(out, WorldConfig(train_scenes=8, val_scenes=2, test_scenes=2))
    return out


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    path = tiny_dir("tiny-llava")
    return path, load(path)


def scripted(loaded):
    """Completion g of a request: WORDS[(seed + g) % 4] as token ids + EOS (what vLLM returns on a stop), and as
    text with a "!" that decoding the ids would not give: the trainer must take the server's text."""
    eos = loaded.tokenizer.eos_token_id

    def script(body: dict[str, Any], g: int) -> tuple[list[int], str]:
        word = WORDS[(body["seed"] + g) % len(WORDS)]
        return [*loaded.tokenizer(word, add_special_tokens=False)["input_ids"], eos], word + "!"

    return script


def make_config(world: Path, model: Path, out: Path, url: str, *overrides: str) -> GRPOConfig:
    base = {
        "model": {"path": str(model)},
        "data": {"train": str(world / "train" / "scenes.jsonl")},
        "train": {"output_dir": str(out), "batch_size": 2, "max_steps": 2, "logging_steps": 1, "learning_rate": 1e-2},
        "grpo": {"group_size": 4, "max_new_tokens": 6, "rollout": "server", "server": {"base_url": url}},
    }
    return config_from_dict(GRPOConfig, apply_overrides(base, list(overrides)), "test")


class Recorder:
    """Stands in for vLLM's NCCL broadcast: keeps what it was asked to join and send."""

    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.sent: list[dict[str, torch.Tensor]] = []

    def check(self) -> None:
        return None

    def open(self, init_info: dict[str, Any]) -> dict[str, Any]:
        self.opened.append(init_info)
        return {}

    def send(self, tensors) -> None:
        self.sent.append({name: t.clone() for name, t in tensors})


class Seen:
    """A reward that keeps what it was called with: 1 when the completion names red."""

    __name__ = "says_red"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[list[int]]]] = []

    def __call__(self, prompts, completions, completion_ids, **_):
        texts = [c[0]["content"] for c in completions]
        self.calls.append((texts, completion_ids))
        return [float("red" in t) for t in texts]


def test_trl_protocol_trains_on_the_servers_completions_and_syncs_in_order(world, tiny, tmp_path, monkeypatch, caplog):
    path, loaded = tiny
    recorder = Recorder()
    monkeypatch.setattr(weight_sync, "nccl_broadcaster", lambda: recorder)
    reward = Seen()
    start = {n: p.detach().clone() for n, p in load(path).model.named_parameters()}
    with FakeVLLM(scripted(loaded)) as server:
        config = make_config(
            world, path, tmp_path / "run", server.url, "grpo.temperature=0.7", "grpo.top_k=5", ONE_AT_A_TIME
        )
        result = train_grpo(config, reward_funcs=[reward], progress=False, write=lambda _: None)
    chats = [p == "/v1/chat/completions" for p in server.paths()]
    # step 0: health, model list, 2 prompts; step 1: the sync (TRL 1.16's VLLMClient order), then 2 prompts
    assert server.paths()[:2] == ["/health", "/v1/models"] and chats[2:4] == [True, True]
    assert server.paths()[4:11] == [
        "/server_info?config_format=json",
        "/get_world_size",
        "/init_weight_transfer_engine",
        "/start_weight_update",
        "/update_weights",
        "/finish_weight_update",
        "/reset_prefix_cache",
    ]
    assert chats[11:] == [True, True] and len(chats) == 13
    init = server.bodies("/init_weight_transfer_engine")[0]["init_info"]
    assert init == recorder.opened[0] and init["world_size"] == 2 and init["rank_offset"] == 1
    # the update names every parameter of the policy, with its dtype and shape, in the order broadcast
    info = server.bodies("/update_weights")[0]["update_info"]
    names = [n for n, _ in load(path).model.named_parameters()]
    assert info["names"] == names == list(recorder.sent[0])
    assert info["shapes"] == [list(start[n].shape) for n in names] and set(info["dtype_names"]) == {"float32"}
    # ...with the weights after the first optimiser step (lr 1e-2: they moved)
    assert any(not torch.equal(recorder.sent[0][n], start[n]) for n in names)
    # each request: G = 4 completions of ≤ 6 tokens at the configured sampling, the image as a PNG data URL
    bodies = server.bodies("/v1/chat/completions")
    first = bodies[0]
    assert (first["model"], first["n"], first["max_tokens"], first["temperature"], first["top_k"]) == (
        "tiny-served",
        4,
        6,
        0.7,
        5,
    )
    assert first["return_token_ids"] is True and first["logprobs"] is True
    parts = first["messages"][0]["content"]
    assert parts[0]["type"] == "image_url" and parts[1] == {"type": "text", "text": "Describe the image."}
    png = base64.b64decode(parts[0]["image_url"]["url"].removeprefix("data:image/png;base64,"))
    scene = json.loads((world / "train" / "scenes.jsonl").read_text().splitlines()[0])
    with Image.open(world / scene["image"]) as original:
        assert Image.open(io.BytesIO(png)).size == original.size
    # the rewards saw exactly the server's texts and token ids, per step, prompt by prompt in order
    script = scripted(loaded)
    for call, step_bodies in zip(reward.calls, (bodies[0:2], bodies[2:4]), strict=True):
        expected = [script(b, g) for b in step_bodies for g in range(4)]
        assert call == ([t for _, t in expected], [ids for ids, _ in expected])
    assert len({b["seed"] for b in bodies}) == 4  # a new seed per prompt and step
    warned = [r.getMessage() for r in caplog.records if "differ from the policy's" in r.getMessage()]
    assert len(warned) == 1 and "(3)" in warned[0]  # the server's [1, 2, 3] is not the policy's prompt: said once
    assert result.last_logged["reward"] == pytest.approx(sum("red" in t for t in reward.calls[-1][0]) / 8)


def test_openai_protocol_lora_adapter_sync_and_the_api_key(world, tiny, tmp_path, monkeypatch):
    path, loaded = tiny
    monkeypatch.setenv("FAKE_VLLM_KEY", "sk-test-0123456789abcdef")
    reward = Seen()
    with FakeVLLM(scripted(loaded), mode="logprob_ids") as server:
        config = make_config(
            world,
            path,
            tmp_path / "run",
            server.url,
            "grpo.server.protocol=openai",
            "grpo.server.api_key_env=FAKE_VLLM_KEY",
            "model.lora.enabled=true",
            "train.max_steps=3",
            ONE_AT_A_TIME,
        )
        train_grpo(config, reward_funcs=[reward], progress=False, write=lambda _: None)
    loads = server.bodies("/v1/load_lora_adapter")
    assert [b["lora_name"] for b in loads] == ["tiny-served-step-1", "tiny-served-step-2"]
    assert server.bodies("/v1/unload_lora_adapter") == [{"lora_name": "tiny-served-step-1"}]
    folder = Path(loads[1]["lora_path"])
    assert (
        folder == (tmp_path / "run" / "server-adapters" / "step-2").resolve()
        and (folder / "adapter_config.json").exists()
    )
    assert not Path(loads[0]["lora_path"]).exists()  # the unloaded adapter's folder is removed
    chats = server.bodies("/v1/chat/completions")
    assert [b["model"] for b in chats] == ["tiny-served"] * 2 + ["tiny-served-step-1"] * 2 + ["tiny-served-step-2"] * 2
    assert "top_k" not in chats[0]  # top_k 0 (no cut): the vLLM extension is not sent
    # ids came from the logprobs' "token_id:<id>" tokens (no token_ids field in this answer)
    script = scripted(loaded)
    assert reward.calls[0][1] == [script(b, g)[0] for b in chats[:2] for g in range(4)]
    # the key went out as a Bearer token and is written nowhere
    assert {r["headers"].get("Authorization") for r in server.requests} == {"Bearer sk-test-0123456789abcdef"}
    for file in (tmp_path / "run").rglob("*"):
        if file.is_file():
            assert b"sk-test-0123456789abcdef" not in file.read_bytes(), file


def test_text_only_answers_are_tokenized_with_the_policys_tokenizer(tiny, world):
    _, loaded = tiny
    prompt = read_prompts(world / "train" / "scenes.jsonl")[0]
    config = RolloutServerConfig(protocol="openai", model="m", max_retries=0)
    with FakeVLLM(scripted(loaded), mode="text_only") as server:
        config.base_url = server.url
        groups = ServerClient(config).sample([prompt], world, 2, SamplingOptions(max_new_tokens=6), 3, loaded.tokenizer)
    # "a red square!" tokenized here; the stop's EOS is added by rollouts_from_ids (checked below)
    expected = loaded.tokenizer("a red square!", add_special_tokens=False)["input_ids"]
    assert [c.text for c in groups[0]] == ["a red square!", "red circle!"] and groups[0][0].token_ids == expected
    assert groups[0][0].logps is None and groups[0][0].finished
    rollouts = rollouts_from_ids(loaded, [Example(prompt.id, prompt.prompt, prompt.images)], groups, 6, world)
    eos = loaded.tokenizer.eos_token_id
    assert rollouts.completion_ids[0, : len(expected) + 1].tolist() == [*expected, eos]
    assert rollouts.completion_mask[0].sum() == len(expected) + 1 and rollouts.texts[0] == "a red square!"
    assert torch.isnan(rollouts.token_logps[0, : len(expected)]).all()  # the server gave none


def test_the_trl_protocol_needs_token_ids(tiny, world):
    _, loaded = tiny
    prompt = read_prompts(world / "train" / "scenes.jsonl")[0]
    with FakeVLLM(scripted(loaded), mode="text_only") as server:
        client = ServerClient(RolloutServerConfig(base_url=server.url, model="m", max_retries=0))
        with pytest.raises(RolloutServerError, match=r"prompt '.*', choice 0: no 'token_ids'.*vLLM >= 0.10.2"):
            client.sample([prompt], world, 2, SamplingOptions(max_new_tokens=6), 3, loaded.tokenizer)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("http500", r"rollout server at http://127\.0\.0\.1:\d+/health: gave up after 2 attempts: HTTP 500: engine"),
        ("notjson", r"chat/completions: answered HTTP 200 with a body that is not JSON: <html>proxy error"),
        ("wrong_n", r"prompt '.+': asked for n=2 completions, got 1"),
    ],
)
def test_server_failures_name_the_endpoint_and_prompt(tiny, world, mode, message):
    _, loaded = tiny
    prompt = read_prompts(world / "train" / "scenes.jsonl")[0]
    with FakeVLLM(scripted(loaded), mode=mode) as server:
        client = ServerClient(RolloutServerConfig(base_url=server.url, max_retries=1, backoff_s=0))
        with pytest.raises(RolloutServerError, match=message):
            client.connect()
            client.sample([prompt], world, 2, SamplingOptions(max_new_tokens=6), 3, loaded.tokenizer)


def test_an_unreachable_server_fails_before_training(world, tiny, tmp_path):
    path, _ = tiny
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = make_config(
        world, path, tmp_path / "run", f"http://127.0.0.1:{port}", "grpo.server.sync=none", "grpo.server.max_retries=0"
    )
    with pytest.raises(
        RolloutServerError, match=rf"127\.0\.0\.1:{port}/health: gave up after 1 attempt: could not connect"
    ):
        train_grpo(config, reward_funcs=[Seen()], progress=False, write=lambda _: None)


def test_a_server_without_weight_transfer_is_named(tiny):
    _, loaded = tiny
    with FakeVLLM(scripted(loaded), mode="no_transfer") as server:
        client = ServerClient(RolloutServerConfig(base_url=server.url, max_retries=0))
        sync = weight_sync.NcclSync(client, Recorder())
        with pytest.raises(RolloutServerError, match=r"no weight-transfer engine.*--weight-transfer-config.*DEV_MODE"):
            sync.sync(loaded.model, 1)


def test_completion_ids_are_checked(tiny, world):
    _, loaded = tiny
    prompt = read_prompts(world / "train" / "scenes.jsonl")[0]
    items = [Example(prompt.id, prompt.prompt, prompt.images)]
    image_token = loaded.model.config.image_token_id
    vocabulary = loaded.model.get_input_embeddings().weight.shape[0]
    cases = [
        (
            [5, vocabulary],
            rf"completion 0: token ids \[{vocabulary}\] are outside the policy's vocabulary of {vocabulary}",
        ),
        ([5, image_token], rf"completion 0: holds image placeholder token {image_token}"),
        ([], "completion 0: the server returned an empty completion"),
        ([5] * 7, "completion 0: 7 tokens, over grpo.max_new_tokens=6"),
    ]
    for ids, message in cases:
        with pytest.raises(DataError, match=rf"prompt {prompt.id!r}, {message}"):
            rollouts_from_ids(loaded, items, [[Completion(ids, "x", False)]], 6, world)


def test_lora_weights_are_sent_merged_under_the_base_names(tiny_dir):
    from peft import LoraConfig, get_peft_model

    base = load(tiny_dir("tiny-llava")).model
    names = [n for n, _ in base.named_parameters()]
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)  # B = 0 at init: make the delta visible
    sent = dict(weight_sync.vllm_named_weights(model))
    assert list(sent) == names  # the base model's names and order, no adapter tensors
    module = next(m for n, m in model.named_modules() if n.endswith("q_proj") and hasattr(m, "lora_A"))
    name = next(n for n in names if n.endswith("q_proj.weight"))
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    by_hand = module.base_layer.weight + (b @ a) * (4 / 2)  # W + B·A·alpha/r
    assert torch.allclose(sent[name], by_hand, atol=1e-6) and not torch.allclose(sent[name], module.base_layer.weight)
    assert not any(getattr(m, "merged", False) for m in model.modules())  # the model is left as it was


def test_nccl_without_vllm_says_what_is_missing():
    with pytest.raises(RolloutServerError, match=r"needs vllm installed .*pip install vllm.*CUDA"):
        weight_sync.NcclBroadcaster().check()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["grpo.server.sync=lora", "model.lora.enabled=true"], "sync lora needs protocol openai"),
        (["grpo.server.protocol=openai"], "the openai protocol can sync only a LoRA adapter"),
        (["grpo.server.protocol=openai", "grpo.server.sync=nccl"], "sync nccl needs protocol trl"),
        (["grpo.server.protocol=openai", "grpo.server.sync=lora"], "sync lora needs model.lora.enabled"),
        (["grpo.server.base_url=http://h:8000/v1"], "without /v1"),
        (["grpo.server.base_url=h:8000"], "must be an http"),
        (["grpo.server.request_token_ids=false"], "trl protocol always uses the server's token ids"),
        (["grpo.server.sync_steps=0"], "grpo.server.sync_steps"),
    ],
)
def test_config_checks(world, tiny, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(world, tiny[0], tmp_path, "http://127.0.0.1:1", *overrides)


def test_sync_is_due_every_sync_steps_and_before_an_evaluation_that_is_behind(tmp_path, caplog):
    server = ServerRollouts(RolloutServerConfig(sync_steps=2), lora=False, output_dir=tmp_path)
    synced: list[int] = []
    server.sync = SimpleNamespace(sync=lambda model, step: synced.append(step))
    # (global step, training): micro-batches of one step share its global step; evaluation follows a step
    for step, training in [(0, True), (0, True), (1, True), (2, True), (2, True), (3, False), (3, True), (4, True)]:
        server.catch_up(None, step, training)
    assert synced == [2, 3]  # 2: two steps since 0; 3: an evaluation one step behind; 4: one step since 3
    stale = ServerRollouts(RolloutServerConfig(protocol="openai", sync="none"), lora=False, output_dir=tmp_path)
    assert not stale.serves_eval and server.serves_eval  # sync none: evaluation samples locally
    stale.catch_up(None, 1, True)
    stale.catch_up(None, 2, True)
    warned = [r.getMessage() for r in caplog.records if "off-policy" in r.getMessage()]
    assert warned == [warned[0]] and "from step 1 on" in warned[0]  # said once
    with pytest.raises(ConfigError, match=r"one training process .* this run has 2"):
        ServerRollouts(RolloutServerConfig(), lora=False, output_dir=tmp_path, world_size=2)
