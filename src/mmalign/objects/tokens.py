"""Caption tokens exactly as the original CHAIR script gets them: NLTK's ``word_tokenize`` as of nltk 3.2.5.

CHAIR (Rohrbach et al., 2018; LisaAnne/Hallucination ``utils/chair.py``, whose ``requirements.txt`` pins
``nltk==3.2.5``) splits a lowercased caption with ``nltk.word_tokenize``: Punkt sentence splitting with
NLTK's English model, then the Treebank word tokenizer on each sentence. This module runs NLTK's own
classes (:class:`~nltk.tokenize.punkt.PunktSentenceTokenizer`,
:class:`~nltk.tokenize.treebank.TreebankWordTokenizer`) with the rules they had in nltk 3.2.5, because
later releases changed them in ways that move CHAIR counts:

* nltk ≥ 3.5 splits ``..`` and dashes ``—`` inside words (``"dogs.."`` becomes ``dog`` + ``..``, an object
  the original never counted) and treats ``'quoted'`` differently;
* nltk ≥ 3.8 ends a sentence at a period followed by a curly quote (``dog.’ cat``), which changes whether
  the period is split from ``dog``;
* Python 2's ``re`` (the original ran on Python 2) gave ``\\s`` and ``\\d`` their ASCII meaning unless a
  pattern asked for Unicode, so a no-break space is not whitespace to those patterns.

The English Punkt parameters cannot be downloaded at run time here; they ship with the package in NLTK's
own ``punkt_tab`` text format (``mmalign/assets/punkt_tab/english``, Apache-2.0, see the README there).

``tests/eval/test_chair_official.py`` checks the tokens caption by caption against the original script
run under Python 2.7 with nltk 3.2.5 on real captions, and on generated strings full of punctuation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from nltk.tokenize.punkt import PunktLanguageVars, PunktParameters, PunktSentenceTokenizer, PunktToken
from nltk.tokenize.treebank import TreebankWordTokenizer

PUNKT_ENGLISH = Path(__file__).resolve().parents[1] / "assets" / "punkt_tab" / "english"

_A = re.ASCII  # a pattern compiled without re.UNICODE under Python 2


class _LanguageVars(PunktLanguageVars):
    """Punkt's English language variables as in nltk 3.2.5: curly quotes neither end nor follow a sentence."""

    _re_non_word_chars = r"(?:[?!)\";}\]\*:@\'\({\[])"
    _period_context_fmt = r"""
        \S*                          # some word material
        %(SentEndChars)s             # a potential sentence ending
        (?=(?P<after_tok>
            %(NonWord)s              # either other punctuation
            |
            \s+(?P<next_tok>\S+)     # or whitespace and some other token
        ))"""
    re_boundary_realignment = re.compile(r"[\"\')\]}]+?(?:\s+|(?=--)|$)", re.MULTILINE | _A)


class _Token(PunktToken):
    """A Punkt token whose "number" type needs ASCII digits, as under Python 2 (``"٣."`` is not a number)."""

    _RE_NUMERIC = re.compile(r"^-?[\.,]?\d[\d,\.-]*\.?$", _A)


class _SentenceTokenizer(PunktSentenceTokenizer):
    """Punkt's sentence slicing as in nltk 3.2.5: one regex match per candidate end, word before it included.

    nltk 3.8 replaced the leading ``\\S*`` of the period-context pattern by a search for the last ASCII
    whitespace (a fix for slow matching on long words), which splits differently around no-break spaces and
    lone punctuation (``"x\\xa0.''st."``). Captions are short, so the original pattern is safe here.
    """

    def _slices_from_text(self, text: str) -> Iterator[slice]:
        last_break = 0
        for match in self._lang_vars.period_context_re().finditer(text):
            if self.text_contains_sentbreak(match.group() + match.group("after_tok")):
                yield slice(last_break, match.end())
                last_break = match.start("next_tok") if match.group("next_tok") else match.end()
        yield slice(last_break, len(text.rstrip()))


class _WordTokenizer(TreebankWordTokenizer):
    """The Treebank tokenizer as ``nltk.word_tokenize`` used it in nltk 3.2.5 (curly quotes split off)."""

    STARTING_QUOTES = (
        (re.compile("([«“‘])"), r" \1 "),
        (re.compile(r"^\"", _A), r"``"),
        (re.compile(r"(``)", _A), r" \1 "),
        (re.compile(r"([ (\[{<])\"", _A), r"\1 `` "),
    )
    PUNCTUATION = (
        (re.compile(r"([^\.])(\.)([\]\)}>\"\'»”’ ]*)\s*$"), r"\1 \2 \3 "),
        (re.compile(r"([:,])([^\d])", _A), r" \1 \2"),
        (re.compile(r"([:,])$", _A), r" \1 "),
        (re.compile(r"\.\.\.", _A), r" ... "),
        (re.compile(r"[;@#$%&]", _A), r" \g<0> "),
        (re.compile(r"([^\.])(\.)([\]\)}>\"\']*)\s*$", _A), r"\1 \2\3 "),
        (re.compile(r"[?!]", _A), r" \g<0> "),
        (re.compile(r"([^'])' ", _A), r"\1 ' "),
    )
    PARENS_BRACKETS = (re.compile(r"[\]\[\(\)\{\}\<\>]", _A), r" \g<0> ")
    DOUBLE_DASHES = (re.compile(r"--", _A), r" -- ")
    ENDING_QUOTES = (
        (re.compile("([»”’])"), r" \1 "),
        (re.compile(r"\"", _A), " '' "),
        (re.compile(r"(\S)('')", _A), r"\1 \2 "),
        (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') ", _A), r"\1 \2 "),
        (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", _A), r"\1 \2 "),
    )
    # Robert MacIntyre's contractions, as nltk 3.2.5 listed them ("mor'n", and "wanna" eats the space after).
    CONTRACTIONS2 = tuple(
        re.compile(rf"(?i)\b({a})(?#X)({b}){end}", _A)
        for a, b, end in (
            ("can", "not", r"\b"),
            ("d", "'ye", r"\b"),
            ("gim", "me", r"\b"),
            ("gon", "na", r"\b"),
            ("got", "ta", r"\b"),
            ("lem", "me", r"\b"),
            ("mor", "'n", r"\b"),
            ("wan", "na", r"\s"),
        )
    )
    CONTRACTIONS3 = (re.compile(r"(?i) ('t)(?#X)(is)\b", _A), re.compile(r"(?i) ('t)(?#X)(was)\b", _A))


def _lines(name: str) -> list[str]:
    with open(PUNKT_ENGLISH / name, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


@lru_cache(maxsize=1)
def _tokenizers() -> tuple[_SentenceTokenizer, _WordTokenizer]:
    """NLTK's English Punkt model (read as ``nltk.tokenize.punkt.load_punkt_params`` reads it) and the tokenizer."""
    params = PunktParameters()
    params.abbrev_types = set(_lines("abbrev_types.txt"))
    params.sent_starters = set(_lines("sent_starters.txt"))
    params.collocations = {tuple(line.split("\t")) for line in _lines("collocations.tab")}
    ortho = (line.split("\t") for line in _lines("ortho_context.tab"))
    params.ortho_context = defaultdict(int, {word: int(flags) for word, flags in ortho})
    return _SentenceTokenizer(params, lang_vars=_LanguageVars(), token_cls=_Token), _WordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)`` as nltk 3.2.5 returns it (sentences first, then words in each)."""
    sentences, words = _tokenizers()
    return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]
