"""Videos through the collator and the models: frames as images (tiny LLaVA), Qwen2-VL's native video path
(``pixel_values_videos``, ``video_grid_thw``, ``<|video_pad|>``, M-RoPE), whole frames only at ``max_length``, and
the shared-prefix forward equal to the plain one on video pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmalign.data.records import PreferenceRecord, VideoRef, assistant
from mmalign.errors import DataError
from mmalign.models import load
from mmalign.models.collate import Collator
from mmalign.models.logps import sequence_logps
from mmalign.models.prefix import plan_prefixes, shared_prefix_logps
from mmalign.models.video_inputs import qwen_video_patches, thin_frames

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200), (200, 0, 200), (90, 90, 90)]


def clip(n: int, size: int = 48) -> tuple[Image.Image, ...]:
    return tuple(Image.new("RGB", (size, size), COLOURS[i % len(COLOURS)]) for i in range(n))


def video_pair(i: int, n_frames: int, text: str = "Describe the clip.") -> PreferenceRecord:
    prompt = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    chosen, rejected = assistant("A red circle appears."), assistant(f"A blue star {'moves' if i % 2 else 'stays'}.")
    return PreferenceRecord(f"v-{i}", prompt, chosen, rejected, videos=[VideoRef(frames=clip(n_frames))])


@pytest.fixture(scope="module")
def llava(tiny_dir):
    return load(tiny_dir("tiny-llava"))


@pytest.fixture(scope="module")
def qwen(tiny_dir):
    return load(tiny_dir("tiny-qwen2-vl"))


def test_thin_frames_keeps_whole_frames_uniformly():
    # 3 of 8: centres of segments of 8/3 frames: 1.33, 4, 6.67 -> 1, 4, 6
    assert thin_frames(list(range(8)), 3) == [1, 4, 6]
    assert thin_frames(list(range(4)), 8) == [0, 1, 2, 3]


def test_qwen_video_patches_equal_the_video_processors_layout(qwen):
    """pixel_values_videos by hand, as transformers 5.23's Qwen2VLVideoProcessor.patchify lays them out: the clip
    padded to an even length with its last frame, rows ordered (t, h/2, w/2, 2, 2), each row (C, 2, p, p)."""
    image_processor = qwen.processor.image_processor
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    got, grid = qwen_video_patches(image_processor, frames)
    p, m = 8, 2
    mean, std = np.array(image_processor.image_mean), np.array(image_processor.image_std)
    norm = [((np.asarray(f, np.float64) / 255 - mean) / std).transpose(2, 0, 1) for f in frames]  # (C, H, W)
    norm.append(norm[-1])  # 3 frames -> 4: the last one repeated
    assert grid == [2, 4, 4]
    want = []
    for t in range(2):
        for bh in range(2):
            for bw in range(2):
                for mh in range(m):
                    for mw in range(m):
                        y, x = (bh * m + mh) * p, (bw * m + mw) * p
                        patch = np.stack([norm[2 * t + k][:, y : y + p, x : x + p] for k in range(2)], axis=1)
                        want.append(patch.reshape(-1))  # (C, temporal, p, p)
    np.testing.assert_allclose(got, np.stack(want), atol=1e-5)


def test_llava_sees_a_video_as_its_frames_in_order(llava):
    record = video_pair(0, 4)
    batch = Collator(llava.processor)([record])
    image_id = llava.model.config.image_token_index
    assert (batch.input_ids[0] == image_id).sum() == 4 * 9  # 9 tokens per 48 px frame, no separator
    # The same as the record with its four frames given as four images.
    still = PreferenceRecord(
        "s",
        [
            {
                "role": "user",
                "content": [*({"type": "image"} for _ in range(4)), {"type": "text", "text": "Describe the clip."}],
            }
        ],
        record.chosen,
        record.rejected,
        list(record.videos[0].frames),
    )
    want = Collator(llava.processor)([still])
    assert torch.equal(batch.input_ids, want.input_ids)
    torch.testing.assert_close(batch.extras["pixel_values"], want.extras["pixel_values"])


def test_qwen_native_video_tokens_grid_and_mrope(qwen):
    batch = Collator(qwen.processor)([video_pair(0, 8)])
    video_id = qwen.model.config.video_token_id
    # 8 frames of 48 px, patch 8: t = 8 / 2 = 4 temporal patches of 6 x 6, merged 2 x 2 -> 4 * 9 = 36 tokens
    assert batch.extras["video_grid_thw"].tolist() == [[4, 6, 6], [4, 6, 6]]
    assert tuple(batch.extras["pixel_values_videos"].shape) == (2 * 4 * 36, 3 * 2 * 8 * 8)
    is_video = batch.input_ids[0] == video_id
    assert int(is_video.sum()) == 36
    assert torch.equal(batch.extras["mm_token_type_ids"][0][is_video], torch.full((36,), 2))
    start = int(is_video.nonzero()[0])
    positions, _ = qwen.model.model.get_rope_index(
        batch.input_ids,
        batch.extras["mm_token_type_ids"],
        video_grid_thw=batch.extras["video_grid_thw"],
        attention_mask=batch.attention_mask,
    )
    k = torch.arange(36)  # token k of the video: temporal patch k // 9, row (k // 3) % 3, column k % 3
    assert torch.equal(positions[0, 0, start : start + 36], start + k // 9)
    assert torch.equal(positions[1, 0, start : start + 36], start + (k // 3) % 3)
    assert torch.equal(positions[2, 0, start : start + 36], start + k % 3)
    # Text after the video: transformers 5.23 advances by max(h, w) / merge = 3 whatever t is (the original Qwen2-VL
    # code continued at the largest index + 1 = start + 4); the shared-prefix path uses the same numbering.
    assert int(positions[0, 0, start + 36]) == start + 3


@pytest.mark.parametrize(("preset", "per_frame", "step"), [("tiny-llava", 9, 1), ("tiny-qwen2-vl", 9 / 2, 2)])
def test_a_long_video_never_leaves_a_partial_frame(preset, per_frame, step, tiny_dir):
    loaded = load(tiny_dir(preset))
    short = Collator(loaded.processor)([video_pair(0, 2)])
    text_tokens = int(short.prompt_lengths[0]) - int(2 * per_frame)  # the prompt without its video tokens
    max_length = text_tokens + int(5 * per_frame) + 1  # room for 5 frames' tokens and one response token
    record = video_pair(0, 16)
    with pytest.raises(DataError, match="leaves no room") as err:
        Collator(loaded.processor, max_length=max_length)([record])
    assert err.value.record_id == "v-0"
    collator = Collator(loaded.processor, max_length=max_length, video_overflow="thin")
    batch = collator([record])
    kept = 5 - 5 % step  # the most frames that fit, whole (and in pairs for Qwen2-VL's temporal patch of 2)
    ids = torch.tensor(
        [loaded.model.config.image_token_id if preset == "tiny-llava" else loaded.model.config.video_token_id]
    )
    visual = torch.isin(batch.input_ids, ids).sum(-1)
    assert visual.tolist() == [int(kept * per_frame)] * 2  # chosen and rejected rows: whole frames only
    assert collator.n_frames_dropped == 2 * (16 - kept)
    assert batch.input_ids.shape[1] <= max_length and bool((batch.labels != -100).any(-1).all())


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3"])
def test_shared_prefix_equals_the_plain_forward_on_video_pairs(preset, tiny_dir):
    loaded = load(tiny_dir(preset))
    loaded.model.eval()
    batch = Collator(loaded.processor)([video_pair(0, 6), video_pair(1, 4)])
    plan = plan_prefixes(loaded.model, batch)
    assert plan.reason is None and plan.row_prefix == [0, 1, 0, 1]  # each pair's prompt and video run once
    with torch.no_grad():
        plain = sequence_logps(loaded.model, batch)
        shared = shared_prefix_logps(loaded.model, batch)
    torch.testing.assert_close(shared.sum, plain.sum, atol=1e-5, rtol=0)
    assert bool(torch.isfinite(plain.sum).all()) and bool((plain.n_tokens > 0).all())


@pytest.mark.parametrize("preset", ["tiny-llava", "tiny-qwen2-vl"])
def test_generation_reads_a_video_evaluation_item(preset, tiny_dir):
    from mmalign.data.records import EvalItem
    from mmalign.models.generation import generate

    loaded = load(tiny_dir(preset))
    items = [
        EvalItem(f"q-{i}", "video_pope", "Does the clip turn green?", "yes", videos=[VideoRef(frames=clip(4 + 2 * i))])
        for i in range(2)
    ]
    batch = Collator(loaded.processor, mode="generate")(items)
    assert batch.padding_side == "left" and batch.labels is None
    video_rows = batch.extras.get("video_grid_thw", batch.extras.get("pixel_values"))
    assert video_rows is not None and video_rows.shape[0] == (2 if preset == "tiny-qwen2-vl" else 4 + 6)
    texts = generate(loaded, items, max_new_tokens=3, batch_size=2)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_a_video_that_cannot_fit_even_thinned_is_refused_or_skipped(llava):
    one = Collator(llava.processor)([video_pair(0, 1)])
    max_length = int(one.prompt_lengths[0])  # one frame fits, but then no response token: nothing can fit
    with pytest.raises(DataError, match="leaves no room") as err:
        Collator(llava.processor, max_length=max_length, video_overflow="thin")([video_pair(0, 8)])
    assert err.value.record_id == "v-0"
    collator = Collator(llava.processor, max_length=max_length, video_overflow="thin", on_overflow="skip")
    batch = collator([video_pair(0, 8), video_pair(1, 8, text="Describe.")])  # the shorter prompt fits at 1 frame
    assert batch.skipped == ["v-0"] and batch.ids == ["v-1", "v-1"]
    image_id = llava.model.config.image_token_index
    assert (batch.input_ids == image_id).sum(-1).tolist() == [9, 9]  # one whole frame on each side
