"""An external judge model behind an OpenAI-compatible chat-completions API, with a local cache.

Used by data building (rate or compare candidate responses, Silkie / GPT-4V style) and by evaluation
(LLaVA-Bench style scores against a reference, pairwise battles). Nothing here imports torch.
"""

from mmalign.judge.cache import JudgeCache, judgment_key
from mmalign.judge.client import JudgeClient, JudgeConfig, Messages
from mmalign.judge.prompts import (
    PAIRWISE_RUBRIC_VERSION,
    RELATIVE_RUBRIC_VERSION,
    SCORE_RUBRIC_VERSION,
    combine_swapped,
    image_data_url,
    pairwise_messages,
    parse_score,
    parse_score_pair,
    parse_verdict,
    relative_messages,
    score_messages,
    swap_verdict,
    user_content,
)
from mmalign.judge.scoring import (
    PairItem,
    PairJudgment,
    ScoreItem,
    ScoreJudgment,
    compare_pairs,
    relative_score,
    score_answers,
)
from mmalign.judge.transport import (
    JudgeAuthError,
    JudgeError,
    JudgeRequestError,
    JudgeResponseError,
    JudgeStats,
    JudgeUnavailableError,
)

__all__ = [
    "PAIRWISE_RUBRIC_VERSION",
    "RELATIVE_RUBRIC_VERSION",
    "SCORE_RUBRIC_VERSION",
    "JudgeAuthError",
    "JudgeCache",
    "JudgeClient",
    "JudgeConfig",
    "JudgeError",
    "JudgeRequestError",
    "JudgeResponseError",
    "JudgeStats",
    "JudgeUnavailableError",
    "Messages",
    "PairItem",
    "PairJudgment",
    "ScoreItem",
    "ScoreJudgment",
    "combine_swapped",
    "compare_pairs",
    "image_data_url",
    "judgment_key",
    "pairwise_messages",
    "parse_score",
    "parse_score_pair",
    "parse_verdict",
    "relative_messages",
    "relative_score",
    "score_answers",
    "score_messages",
    "swap_verdict",
    "user_content",
]
