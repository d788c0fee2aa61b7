"""A reward model: any supported vision-language model with a scalar head on the last response token.

``r(x, images, y) = w · h_L[last] + b``: ``h_L`` is the language model's last hidden state (after its final norm,
what ``model.base_model(...).last_hidden_state`` returns), read at each row's last non-padding token, which in a
training batch is the response's last token (its end-of-turn token); ``w, b`` is a ``Linear(hidden, 1)`` kept in
float32. This is the reward model of InstructGPT (Ouyang et al., 2022, §3.5) and of TRL's ``RewardTrainer``
(a sequence-classification head on the last token), on a VLM.

Saved as a normal Hugging Face folder: the base model exactly as ``save_pretrained`` writes it (``config.json``,
``model.safetensors``, the processor), plus ``reward_head.safetensors`` (tensors ``weight`` (1, H) and ``bias``
(1,)); ``config.json`` names the head under ``mmalign_reward_head`` (``hidden_size``, ``token``, ``file``), and
the head file's metadata repeats it. With LoRA, ``save_pretrained`` writes the adapter (peft's files) and the head
file. ``load_reward_model(dir)`` loads it back; plain ``transformers`` code needs a few lines more::

    import json
    from pathlib import Path

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(path)            # AutoModelForCausalLM: text-only
    processor = AutoProcessor.from_pretrained(path)
    spec = json.loads(Path(path, "config.json").read_text())["mmalign_reward_head"]
    head = torch.nn.Linear(spec["hidden_size"], 1)
    head.load_state_dict(load_file(Path(path, spec["file"])))
    text = processor.apply_chat_template(prompt + response, tokenize=False)  # record messages, TRL layout
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    hidden = model.base_model(**inputs).last_hidden_state                # (B, T, H)
    last = (inputs["attention_mask"] * torch.arange(hidden.shape[1])).argmax(-1)   # last non-padding token
    reward = head(hidden[torch.arange(len(hidden)), last].float()).squeeze(-1)

(mmalign's :class:`~mmalign.models.collate.Collator` tokenizes the templated prompt and the rest of the conversation
separately; on the tiny LLaVA that gives the same tokens as this one call, and tests/models/test_reward_model.py
runs these lines. Padded batches: right or left padding both work, the index reads the last non-padding token.)

**Critique-then-score** (MM-RLHF, Zhang et al., 2025): a reward model trained with ``rm.critique`` has
``critique_request`` set and its spec says ``"critique": true`` and the request; the head then reads the last token
of a critique the model writes first, so such a model is scored by :mod:`mmalign.models.critique`
(``critique_rewards``, or ``score_with`` for either kind), and :func:`score_examples` refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from mmalign.errors import ConfigError
from mmalign.models.collate import Batch, Collator
from mmalign.models.examples import Example
from mmalign.models.loading import LoadedModel, load
from mmalign.models.logps import model_device_dtype, unwrap_model

HEAD_KEY = "mmalign_reward_head"
"""The ``config.json`` entry that makes a model folder a reward model."""
HEAD_FILE = "reward_head.safetensors"
TOKEN = "last_non_padding"
"""Which token the head reads: each row's last non-padding token (the response's last token)."""


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def last_token_index(attention_mask: Tensor) -> Tensor:
    """(B,) the position of each row's last non-padding token (right or left padding; 0 for an empty row)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(-1)


def new_head(hidden_size: int, seed: int = 0) -> torch.nn.Linear:
    """A ``Linear(hidden_size, 1)`` in float32: weights ~ N(0, 1 / (H + 1)²) (OpenRLHF's value-head init, small
    rewards at start), bias 0; seeded, so the same seed gives the same head."""
    head = torch.nn.Linear(hidden_size, 1, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(1, hidden_size, generator=generator) / (hidden_size + 1))
        head.bias.zero_()
    return head


class RewardModel(torch.nn.Module):
    """A model (``transformers``, or ``peft`` around one) and its scalar head; ``forward`` gives (B,) rewards."""

    def __init__(
        self, base: Any, head: torch.nn.Linear | None = None, seed: int = 0, critique_request: str | None = None
    ) -> None:
        super().__init__()
        self.base = base
        """The language (or vision-language) model; a ``peft`` model with LoRA."""
        self.config = unwrap_model(base).config
        hidden = self.config.get_text_config().hidden_size
        self.reward_head = head if head is not None else new_head(hidden, seed)
        """``Linear(hidden, 1)``, float32."""
        if self.reward_head.in_features != hidden:
            raise ConfigError(f"the reward head reads {self.reward_head.in_features} features; the model has {hidden}")
        self.critique_request = critique_request
        """None: the head scores the response. Else a critique model (:mod:`mmalign.models.critique`): this user turn
        asks for a critique of the response, and the head scores the sequence ending with the critique."""

    def head_spec(self) -> dict[str, Any]:
        """What ``config.json`` says about the head (``mmalign_reward_head``); a critique model adds
        ``"critique": true`` and its ``critique_request``."""
        spec: dict[str, Any] = {"hidden_size": self.reward_head.in_features, "token": TOKEN, "file": HEAD_FILE}
        if self.critique_request is not None:
            spec |= {"critique": True, "critique_request": self.critique_request}
        return spec

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        *,
        shared: Batch | None = None,
        min_saving: float = 0.0,
        with_logits: bool = False,
        **inputs: Any,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """(B,) float32 rewards of the rows (other model inputs, e.g. pixels, as keywords).

        ``shared``: a right-padded training batch whose rows are scored with each distinct prompt + images computed
        once (:mod:`mmalign.models.prefix`; the other arguments are ignored), where that leaves out at least
        ``min_saving`` of the token positions (else, and where nothing is shared, the plain forward).
        ``with_logits``: also the LM head's (B, T, V) logits, from the same forward (the full model with
        ``output_hidden_states``, whose last hidden state is the backbone's ``last_hidden_state``, tested)."""
        if with_logits:
            out = self.base(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False, output_hidden_states=True, **inputs
            )
            return self.head_at(out.hidden_states[-1], last_token_index(attention_mask)), out.logits
        if shared is not None:
            return self._shared(shared, min_saving)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **inputs)
        return self.head_at(hidden.last_hidden_state, last_token_index(attention_mask))

    @property
    def backbone(self) -> Any:
        """The model under the LM head, whose ``last_hidden_state`` the head reads (LoRA layers sit inside it)."""
        return unwrap_model(self.base).base_model

    def head_at(self, states: Tensor, last: Tensor) -> Tensor:
        """(B,) the head on ``states`` (B, T, H) at columns ``last`` (B,)."""
        picked = states[torch.arange(len(states), device=states.device), last.to(states.device)]
        return self.reward_head(picked.to(self.reward_head.weight.dtype)).squeeze(-1)

    def _shared(self, batch: Batch, min_saving: float) -> Tensor:
        from mmalign.models.prefix import continuation_inputs, on_device, plan_shared

        plan = plan_shared(self.base, batch, min_saving)
        if plan.reason is not None:  # nothing shared, or the model cannot share: the plain forward
            return self(**batch.to(*model_device_dtype(self)).model_inputs())
        batch = on_device(self.base, batch, plan)
        inputs, _, valid = continuation_inputs(self.base, batch, plan)  # the prefixes run through the full model
        hidden = self.backbone(**inputs).last_hidden_state  # (B, W): last prompt token + response, on the cache
        return self.head_at(hidden, valid.sum(-1) - 1)

    # ------------------------------------------------------------------------------------ saving and loading

    def save_pretrained(self, save_directory: str | Path, state_dict: dict[str, Tensor] | None = None, **kw: Any):
        """The base model's files (with LoRA: the adapter's) and ``reward_head.safetensors`` into the folder;
        ``state_dict`` (e.g. gathered by ``Trainer`` from shards) holds this module's keys (``base.``,
        ``reward_head.``)."""
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        base_state = head_state = None
        if state_dict is not None:
            base_state = {k.removeprefix("base."): v for k, v in state_dict.items() if k.startswith("base.")}
            head_state = {
                k.removeprefix("reward_head."): v for k, v in state_dict.items() if k.startswith("reward_head.")
            }
        spec = self.head_spec()
        unwrap_model(self.base).config.mmalign_reward_head = spec
        kw.pop("safe_serialization", None)
        self.base.save_pretrained(out, state_dict=base_state, **kw)
        head = head_state or self.reward_head.state_dict()
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in head.items()}
        save_file(tensors, str(out / HEAD_FILE), metadata={HEAD_KEY: json.dumps(spec)})

    def restore(self, folder: str | Path) -> None:
        """Load a checkpoint this model saved (full weights or the LoRA adapter, and the head) in place."""
        folder = Path(folder)
        if is_peft(self.base):
            from peft import set_peft_model_state_dict

            adapter = load_file(str(folder / "adapter_model.safetensors"))
            result = set_peft_model_state_dict(self.base, adapter)
            if getattr(result, "unexpected_keys", None):
                raise ConfigError(f"{folder}: adapter keys this model does not have: {result.unexpected_keys[:3]}")
        else:
            dtype = next(self.base.parameters()).dtype
            fresh = load(folder, dtype=str(dtype).removeprefix("torch.")).model
            self.base.load_state_dict(fresh.state_dict(), strict=True)
            del fresh
        self.reward_head.load_state_dict(read_head(folder).state_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: Any = "float32", **_: Any) -> RewardModel:
        """The reward model saved in ``path`` (what ``Trainer``-style restoring calls)."""
        name = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
        return load_reward_model(path, dtype=name).model

    def merge_and_unload(self) -> RewardModel:
        """With LoRA: the model with the adapter merged into the base weights, and the same head."""
        return RewardModel(self.base.merge_and_unload(), self.reward_head, critique_request=self.critique_request)


def head_spec_of(path: str | Path) -> dict[str, Any] | None:
    """The ``mmalign_reward_head`` entry of a model folder's ``config.json`` (None: not a reward model)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    spec = json.loads(config.read_text(encoding="utf-8")).get(HEAD_KEY)
    if spec is not None and not (isinstance(spec, dict) and isinstance(spec.get("hidden_size"), int)):
        raise ConfigError(f"{config}: {HEAD_KEY} must be a mapping with an integer hidden_size, got {spec!r}")
    if spec is not None and spec.get("critique", False) is not False:
        request = spec.get("critique_request")
        if spec["critique"] is not True or not isinstance(request, str) or not request.strip():
            raise ConfigError(f"{config}: {HEAD_KEY}.critique must be true with a non-empty critique_request string")
    return spec


def critique_request_of(spec: dict[str, Any] | None) -> str | None:
    """The critique request of a (checked) head spec; None: the head scores the response itself."""
    return spec["critique_request"] if spec is not None and spec.get("critique") is True else None


def read_head(path: str | Path) -> torch.nn.Linear:
    """The head saved in a reward-model folder (``reward_head.safetensors``)."""
    file = Path(path) / HEAD_FILE
    if not file.is_file():
        raise ConfigError(f"{path} has no {HEAD_FILE}: not a reward model saved by mmalign")
    tensors = load_file(str(file))
    if set(tensors) != {"weight", "bias"} or tensors["weight"].ndim != 2 or tensors["weight"].shape[0] != 1:
        raise ConfigError(f"{file}: expected tensors weight (1, H) and bias (1,), got {sorted(tensors)}")
    head = torch.nn.Linear(tensors["weight"].shape[1], 1, dtype=torch.float32)
    head.load_state_dict({k: v.float() for k, v in tensors.items()})
    return head


def reward_model_for(base: Any, path: str | Path, seed: int = 0, critique_request: str | None = None) -> RewardModel:
    """``base`` (loaded from ``path``) with the head saved in ``path`` when it is a reward model, else a new
    head drawn with ``seed`` (training a reward model from a policy or SFT checkpoint); ``critique_request``: the
    mode being trained (a critique model, :class:`RewardModel`), whatever the saved model's was."""
    head = read_head(path) if head_spec_of(path) is not None else None
    return RewardModel(base, head, seed=seed, critique_request=critique_request)


def load_reward_model(path: str | Path, **options: Any) -> LoadedModel:
    """Load a reward-model folder saved by mmalign: a :class:`~mmalign.models.loading.LoadedModel` whose ``model``
    is the :class:`RewardModel` (``options`` as :func:`~mmalign.models.loading.load`'s, e.g. ``dtype``, ``lora``)."""
    spec = head_spec_of(path)
    if spec is None:
        raise ConfigError(f"{path} is not a reward model: its config.json has no {HEAD_KEY} entry")
    head = read_head(path)  # before the model: a folder without its head fails at once
    loaded = load(path, **options)
    loaded.model = RewardModel(loaded.model, head, critique_request=critique_request_of(spec))
    return loaded


def batch_rewards(model: RewardModel | Any, batch: Batch, share_prefix: bool | str = False) -> Tensor:
    """(B,) rewards of a collated batch's rows (moved to the model's device; pixels to its dtype). With
    ``share_prefix`` each distinct prompt + images is computed once (:mod:`mmalign.models.prefix`; equal rewards,
    ~1e-7 in fp32); ``"auto"``: where that leaves out at least 25% of the token positions. ``model`` may be wrapped
    (DDP): it is called, never bypassed."""
    device, dtype = model_device_dtype(model)
    batch = batch.to(device, dtype)
    if share_prefix:
        from mmalign.models.prefix import AUTO_MIN_SAVING

        saving = AUTO_MIN_SAVING if share_prefix == "auto" else 0.0
        return model(batch.input_ids, batch.attention_mask, shared=batch, min_saving=saving)
    return model(**batch.model_inputs())


@torch.no_grad()
def score_examples(
    loaded: LoadedModel,
    examples: list[Example],
    batch_size: int = 8,
    image_root: str | Path | None = None,
    share_prefix: bool | str = "auto",
    max_length: int | None = None,
    progress: Any = None,
    critiqued: bool = False,
) -> list[float]:
    """The reward of each example's (prompt, images, response), in order: ``loaded.model`` is a
    :class:`RewardModel` (:func:`load_reward_model`), the examples are collated ``batch_size`` at a time (right
    padding, as in training) and scored with :func:`batch_rewards` in eval mode. ``progress(n)`` is called with
    the number of examples scored after each batch. A critique model is refused unless ``critiqued`` (the
    examples already end with their critiques, as :mod:`mmalign.models.critique` makes them)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if getattr(loaded.model, "critique_request", None) is not None and not critiqued:
        raise ConfigError(
            f"{loaded.path} is a critique reward model: it scores a critique it writes first; use "
            "mmalign.models.critique.critique_rewards (or score_with, for either kind of reward model)"
        )
    for example in examples:
        if not example.response:
            raise ConfigError(f"example {example.id!r} has no response to score")
    collator = Collator(loaded.processor, mode="train", image_root=image_root, max_length=max_length)
    model = loaded.model
    was_training = model.training
    model.eval()
    rewards: list[float] = []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            rewards += batch_rewards(model, collator(chunk), share_prefix).float().cpu().tolist()
            if progress is not None:
                progress(len(chunk))
    finally:
        model.train(was_training)
    return rewards
