"""The judge prompts of the three reward-model benchmarks, worded after each benchmark's own inference script.

The wording is mmalign's (paraphrased, not copied); what the official aggregation reads is kept exactly: the
verdict line and which answer is shown where.

* VL-RewardBench (``prompt.py`` @ e492d65, sent by ``inference.py``): the question and "Answer 1" / "Answer 2",
  four criteria (accuracy against the image, completeness, clarity, relevance), reasoning for each, and a closing
  ``Overall Judgment: Answer X is better.``, the line ``cal.py`` parses. The text comes first, then the image.
* Multimodal RewardBench (``1_run_model_as_judge_gpt4o.py`` @ 3366b34): the MT-Bench pairwise judge, assistant A
  (``Output1``) and B (``Output2``), a short comparison, then ``[[A]]`` or ``[[B]]``, what ``2_get_accuracy.py``
  looks for. The text comes first, then the image.
* MM-RLHF-RewardBench has no judge script: ``eval_mm_reward_bench.py`` asks its reward model for a critique of
  *one* answer (correctness, clarity, completeness; "[Question]", "[LMM Response]", "[Evaluation]") and scores it.
  The judge is asked the same of each answer and ends with ``Rating: [[N]]`` (1–10), which becomes the answer's
  reward (:func:`mmalign.judge.parse_score`); equal ratings count as wrong, as the official script counts ties.
"""

from __future__ import annotations

from typing import Any

VERSION = "rewardbench-v1"
"""Goes into the judge cache key: bump it when a prompt's meaning changes."""


def vl_rewardbench_prompt(query: str, first: str, second: str) -> str:
    """VL-RewardBench: which of two answers (shown as Answer 1 and Answer 2) is better."""
    return (
        "You are a capable multimodal assistant asked to judge answers to questions about an image. Study the "
        "image and the question below, then decide which of the two answers is better.\n\n"
        f"Question: {query}\n\nAnswer 1: {first}\n\nAnswer 2: {second}\n\n"
        "Judge both answers by these criteria:\n"
        "1. Accuracy: does the answer agree with what the image shows?\n"
        "2. Completeness: does it address every part of the question?\n"
        "3. Clarity: is it clear and well expressed?\n"
        "4. Relevance: does it stay on the question and the image?\n\n"
        "Then:\n"
        "1. Give your reasoning for each criterion.\n"
        "2. State which answer is better overall (Answer 1 or Answer 2) on a last line written exactly like "
        "this: Overall Judgment: Answer X is better.\n\n"
        "Be structured and detailed, showing that you took both the image and the text into account."
    )


def multimodal_rewardbench_prompt(question: str, answer_a: str, answer_b: str) -> str:
    """Multimodal RewardBench: assistant A against assistant B, verdict ``[[A]]`` or ``[[B]]``."""
    return (
        "Act as an impartial judge of the responses two AI assistants gave to the user question below. Pick the "
        "assistant that follows the user's instructions and answers the question better, weighing helpfulness, "
        "relevance, accuracy, depth, creativity and level of detail. Start by comparing the two responses and "
        "explain briefly. Do not let the order in which the responses appear, their length or the assistants' "
        "names sway you; be as objective as you can. After your explanation, give your final verdict in exactly "
        'this form: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better.\n\n'
        f"[User Question]\n{question}\n\n"
        f"[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
        f"[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
    )


def mm_rlhf_rewardbench_prompt(question: str, answer: str) -> str:
    """MM-RLHF-RewardBench: a critique of one answer, ending with a rating 1–10 as ``Rating: [[N]]``."""
    return (
        "You are a fair and unbiased evaluator of the answers a large multimodal model (LMM) gives. Given the "
        "question about the image and the model's answer below, assess how correct, clear and complete the "
        "answer is. Explain your assessment in detail, naming its strengths and what could be better.\n\n"
        f"[Question]: {question}\n[LMM Response]: {answer}\n\n"
        "End with your rating of the answer from 1 (worst) to 10 (best) on a last line written exactly as "
        "Rating: [[N]], for example Rating: [[6]].\n\n[Evaluation]:"
    )


def text_then_image(text: str, image_url: str | None) -> list[dict[str, Any]]:
    """One user turn as both official scripts send it: the prompt's text part first, then the image."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    if image_url is not None:
        content.append({"type": "image_url", "image_url": {"url": image_url}})
    return [{"role": "user", "content": content}]
