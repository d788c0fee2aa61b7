"""The four sample-rank scorers alone: truth (by hand), clip (tiny CLIP), self (tiny policy), judge (fake API)."""

from __future__ import annotations

import base64
import importlib.util
import io
import math
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from mmalign.data.records import assistant, user_prompt
from mmalign.errors import ConfigError, DataError
from mmalign.models import ensure_preset, load, sequence_logps
from mmalign.models.examples import Example
from mmalign.pairs import scorers
from mmalign.pairs.scorers import (
    ClipOptions,
    ClipScorer,
    JudgeOptions,
    JudgeScorer,
    ScoreContext,
    SelfOptions,
    SelfScorer,
    TruthOptions,
    TruthScorer,
)


def load_fake_judge() -> Any:
    """The fake OpenAI-compatible server of the judge tests (a conftest cannot be imported by name)."""
    name = "mmalign_tests_fake_judge"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "judge" / "conftest.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return sys.modules[name]


def context(objects: list[str] | None = None, images: list[Image.Image] | None = None) -> ScoreContext:
    return ScoreContext("p-1", "Describe the image.", user_prompt("Describe the image."), images or [], objects)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "sample-rank-models"


@pytest.fixture(scope="module")
def clip_dir(models: Path) -> Path:
    from mmalign.models.tiny_clip import save_tiny_clip

    out = models / "tiny-clip"
    return out if (out / "model.safetensors").is_file() else save_tiny_clip(out)


# ---------------------------------------------------------------------------------------------- truth


def test_truth_precision_recall_f1_by_hand():
    scorer = TruthScorer(TruthOptions(), "shapes")
    candidates = [
        "There is a red circle and a green square.",  # red circle present, green square not: P 1/2, R 1/2
        "There is a large red circle and a small blue star.",  # both, sizes ignored: P 1, R 1
        "There is nothing in the image.",  # no mention: P 1 (nothing false), R 0 -> F1 0
        "There are two red circles and a red circle.",  # two mentions of red circle: P 2/2, R 1/2 -> F1 2/3
    ]
    truth = ["red circle", "blue star"]
    assert scorer.score(candidates, context(truth)) == pytest.approx([0.5, 1.0, 0.0, 2 / 3])
    precision = TruthScorer(TruthOptions(metric="precision"), "shapes").score(candidates, context(truth))
    recall = TruthScorer(TruthOptions(metric="recall"), "shapes").score(candidates, context(truth))
    assert precision == pytest.approx([0.5, 1.0, 1.0, 1.0])
    assert recall == pytest.approx([0.5, 1.0, 0.0, 0.5])
    # an empty image: saying nothing is perfect (recall of no object is 1), naming anything is all wrong
    assert scorer.score(["There is nothing in the image.", "There is a red circle."], context([])) == [1.0, 0.0]


def test_truth_with_coco_synonyms():
    scorer = TruthScorer(TruthOptions(), "coco")
    # puppy -> dog, man -> person (present), cat absent: P 2/3, R 2/2, F1 = 2 * (2/3) / (5/3) = 0.8
    assert scorer.score(["A puppy next to a man and a cat."], context(["dog", "person"])) == pytest.approx([0.8])


def test_truth_needs_ground_truth_and_valid_options():
    with pytest.raises(DataError, match="ground-truth objects") as err:
        TruthScorer(TruthOptions(), "shapes").score(["There is a red circle."], context(None))
    assert err.value.record_id == "p-1"
    with pytest.raises(ConfigError, match="metric"):
        TruthOptions(metric="accuracy")
    with pytest.raises(ConfigError, match="vocabulary"):
        TruthOptions(vocabulary="imagenet")


# ----------------------------------------------------------------------------------------------- clip


def test_clip_scores_are_cosine_similarities(clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    processor = CLIPProcessor.from_pretrained(clip_dir)  # the offline tokenizer loads back as CLIP's own
    assert type(processor.tokenizer).__name__ == "CLIPTokenizer"
    assert processor.tokenizer.tokenize("There is a red circle.") == [
        "there</w>",
        "is</w>",
        "a</w>",
        "red</w>",
        "circle</w>",
        ".</w>",
    ]
    images = [Image.new("RGB", (40, 30), (220, 40, 40)), Image.new("RGB", (32, 32), (40, 80, 220))]
    candidates = ["There is a red circle.", "There is a blue star and a green square.", "Ünïcode and 42 digits"]
    scorer = ClipScorer(ClipOptions(path=str(clip_dir), batch_size=2), None)
    scores = scorer.score(candidates, context(images=images))
    # reference: CLIP's own normalised embeddings from one forward; the score is the mean over both images
    model = CLIPModel.from_pretrained(clip_dir)
    enc = processor(text=candidates, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc)
    expected = (out.text_embeds @ out.image_embeds.T).mean(-1)
    assert scores == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(-1 <= s <= 1 for s in scores) and len(set(scores)) == 3
    with pytest.raises(DataError, match="needs an image"):
        scorer.score(candidates, context())


def test_clip_directory_errors(clip_dir, models, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ClipScorer(ClipOptions(path=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match=r"needs clip\.path"):
        ClipScorer(ClipOptions())
    pickled = tmp_path / "pickled"
    shutil.copytree(clip_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(ConfigError, match="only pickle weights"):
        ClipScorer(ClipOptions(path=str(pickled)))
    with pytest.raises(ConfigError, match="not CLIP"):
        ClipScorer(ClipOptions(path=str(ensure_preset("tiny-llava", models))))


# ----------------------------------------------------------------------------------------------- self


def test_self_score_is_probability_of_yes_between_yes_and_no(models):
    loaded = load(ensure_preset("tiny-llava", models))
    image = Image.new("RGB", (32, 32), (220, 40, 40))
    options = SelfOptions(batch_size=3)  # batches that split a candidate's yes/no rows
    scorer = SelfScorer(options, loaded)
    candidates = ["There is a red circle.", "There is a blue star.", "Nothing."]
    scores = scorer.score(candidates, context(images=[image]))
    for candidate, score in zip(candidates, scores, strict=True):
        text = options.template.format(question="Describe the image.", answer=candidate)
        logp = {}
        for answer in (options.yes, options.no):  # one sequence at a time: no padding involved
            batch = loaded.collator()([Example("x", user_prompt(text), [image], assistant(answer))])
            with torch.no_grad():
                logp[answer] = sequence_logps(loaded.model, batch).sum.item()
        assert score == pytest.approx(1 / (1 + math.exp(logp[options.no] - logp[options.yes])), abs=1e-5)
    assert len(set(scores)) == 3 and all(0 < s < 1 for s in scores)


def test_self_options_are_checked():
    with pytest.raises(ConfigError, match="must contain"):
        SelfOptions(template="Is it right?")
    with pytest.raises(ConfigError, match="only"):
        SelfOptions(template="{answer} {reason}")
    with pytest.raises(ConfigError, match="different"):
        SelfOptions(yes="Yes.", no="Yes.")


# ---------------------------------------------------------------------------------------------- judge


@pytest.fixture
def judge_server(monkeypatch):
    fake = load_fake_judge()
    server = fake.FakeJudgeServer(api_key=fake.SECRET)
    monkeypatch.setenv(fake.KEY_ENV, fake.SECRET)
    yield server, fake
    server.close()
    scorers.clear_cache()


def rate_by_answer(server: Any) -> None:
    """The fake judge rates 9 an answer naming a red circle, 2 one without it, and writes nonsense for '???'."""

    def respond(request: dict[str, Any]) -> Any:
        text = server.last_user_text(request)
        answer = re.search(r"\[Answer\]\n(.*?)\n\[End of answer\]", text, re.S).group(1)
        if answer == "???":
            return server.Reply("I refuse to rate this.")
        right = "red circle" in answer
        return server.Reply(f"Looks {'right' if right else 'wrong'}.\nRating: [[{9 if right else 2}]]")

    server.respond = respond


def judge_options(server: Any, fake: Any, **overrides: Any) -> JudgeOptions:
    values = {
        "base_url": server.url,
        "model": "fake-judge",
        "api_key_env": fake.KEY_ENV,
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff_s": 0.001,
        "max_backoff_s": 0.01,
        "progress": False,
    }
    return JudgeOptions(**{**values, **overrides})


def test_judge_scores_through_the_api_and_caches_in_the_data_root(judge_server, tmp_path):
    server, fake = judge_server
    rate_by_answer(server)
    image = Image.new("RGB", (8, 8), (220, 40, 40))
    scorer = JudgeScorer(judge_options(server, fake), tmp_path)
    candidates = ["There is a red circle.", "There is a blue star.", "???"]
    scores = scorer.score(candidates, context(["red circle"], [image]))
    assert scores[:2] == [9.0, 2.0] and math.isnan(scores[2])
    assert (tmp_path / scorers.DEFAULT_JUDGE_CACHE).is_file()
    assert len(server.requests) == 3
    request = server.requests[0]
    assert request["headers"]["authorization"] == f"Bearer {fake.SECRET}" and request["json"]["model"] == "fake-judge"
    url = next(
        p
        for m in request["json"]["messages"]
        for p in m["content"]
        if isinstance(p, dict) and p.get("type") == "image_url"
    )["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (8, 8) and sent.convert("RGB").getpixel((0, 0)) == (220, 40, 40)
    assert "Facts about the image" not in server.last_user_text(request["json"])
    # a new scorer (a rerun, another process) pays nothing for what it asked before
    scorers.clear_cache()
    again = JudgeScorer(judge_options(server, fake), tmp_path).score(candidates, context(["red circle"], [image]))
    assert again[:2] == [9.0, 2.0] and len(server.requests) == 3


def test_judge_facts_and_configuration_errors(judge_server, tmp_path):
    server, fake = judge_server
    rate_by_answer(server)
    scorer = JudgeScorer(judge_options(server, fake, facts=True, cache_path=None), tmp_path)
    scorer.score(["There is a red circle."], context(["red circle", "blue star"]))
    assert "Objects in the image: red circle, blue star" in server.last_user_text(server.requests[-1]["json"])
    assert not (tmp_path / scorers.DEFAULT_JUDGE_CACHE).exists()  # null: no cache
    with pytest.raises(ConfigError, match="model is not set"):
        JudgeScorer(judge_options(server, fake, model=""), tmp_path)
    with pytest.raises(ConfigError, match="base_url"):
        judge_options(server, fake, base_url="ftp://judge")
