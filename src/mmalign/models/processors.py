"""Loading a model directory's processor, with one fallback for machines without ``torchvision``.

``Qwen2VLProcessor`` and ``Qwen2_5_VLProcessor`` always build a video processor, and every video processor
in ``transformers`` needs ``torchvision``, whose CPU build is not installable beside the CPU torch here.
Images alone need no ``torchvision`` (their image processors have a PIL backend), so on such a machine the
same processor is built without its video half: the image-token expansion, ``image_grid_thw`` and
``mm_token_type_ids`` are exactly the upstream ones (the classes below only drop ``video_processor`` from
``__init__``) and videos come from :class:`mmalign.models.video_inputs.FrameVideoProcessor`, which makes
``pixel_values_videos`` and ``video_grid_thw`` from the image processor's patches. Saved directories keep the
upstream layout (``processor_class: Qwen2VLProcessor``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from mmalign.errors import ConfigError


def _image_only(base: type) -> type:
    """``base`` (a Qwen-VL processor class) with no video processor."""

    def __init__(self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kw: Any):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        from transformers.processing_utils import ProcessorMixin

        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def video_processor(self: Any) -> Any:
        """Videos from the image processor (no ``torchvision``): see :class:`FrameVideoProcessor`."""
        from mmalign.models.video_inputs import FrameVideoProcessor

        return FrameVideoProcessor(self.image_processor)

    namespace = {"__init__": __init__, "__module__": __name__, "video_processor": property(video_processor)}
    return type(f"{base.__name__}ImageOnly", (base,), namespace)


_IMAGE_ONLY_BASES = {"Qwen2VLProcessor": "Qwen2VLProcessor", "Qwen2_5_VLProcessor": "Qwen2_5_VLProcessor"}
_image_only_cache: dict[str, type] = {}


def image_only_processor_class(name: str) -> type:
    """The image-only variant of the processor class ``name`` (``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor``)."""
    if name not in _image_only_cache:
        import transformers

        _image_only_cache[name] = _image_only(getattr(transformers, _IMAGE_ONLY_BASES[name]))
    return _image_only_cache[name]


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def processor_class_name(path: Path) -> str | None:
    """``processor_class`` from a saved ``processor_config.json`` (None if absent)."""
    config = path / "processor_config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("processor_class")
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{config}: unreadable processor config ({err})") from None


def load_processor(path: Path, multimodal: bool, trust_remote_code: bool = False) -> Any:
    """The processor of a VLM directory (``AutoProcessor``) or the tokenizer of a text-only one."""
    from transformers import AutoProcessor, AutoTokenizer

    if not multimodal:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    name = processor_class_name(path)
    if name in _IMAGE_ONLY_BASES and not has_torchvision():
        return image_only_processor_class(name).from_pretrained(path)
    try:
        return AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"{path}: cannot load the processor ({err})") from None


def save_upstream_processor(processor: Any, path: Path) -> None:
    """Save ``processor``; an image-only Qwen-VL processor is saved as its upstream class, with the video
    processor config that class expects, so the directory loads with plain ``AutoProcessor`` anywhere."""
    processor.save_pretrained(path)
    name = type(processor).__name__
    if not name.endswith("ImageOnly"):
        return
    config_path = path / "processor_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["processor_class"] = name.removesuffix("ImageOnly")
    image = config.get("image_processor", {})
    config["video_processor"] = {
        "video_processor_type": "Qwen2VLVideoProcessor",
        **{k: image[k] for k in ("patch_size", "temporal_patch_size", "merge_size", "size") if k in image},
        **{k: image[k] for k in ("image_mean", "image_std", "do_normalize", "do_rescale") if k in image},
    }
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
