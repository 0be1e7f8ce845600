"""`text_similarity` metrics, each from a well-kept library, scaled to [0, 1].

- `fuzzy_match`: rapidfuzz's `fuzz.ratio` (normalised Indel similarity) / 100.
- `bleu`: sacrebleu's sentence BLEU (its default 13a tokenizer, exponential smoothing) / 100.
- `gleu`: nltk's sentence GLEU on whitespace tokens.
- `meteor`: nltk's METEOR on lower-cased whitespace tokens, with WordNet synonyms read from the
  system's WordNet data (Debian's `wordnet-base`, in `/usr/share/wordnet`).
- `rouge_1` … `rouge_5`, `rouge_l`: rouge-score's F-measure (reference as target, input as prediction).
- `cosine`: the cosine of the two texts' embeddings from the catalogue's embeddings model, in
  [-1, 1] (`service.graders.embeddings`); refused (400) while the catalogue has none.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.graders.errors import GraderConfigError

if TYPE_CHECKING:
    from service.graders.embeddings import Embedder

METRICS = (
    "fuzzy_match", "bleu", "gleu", "meteor", "cosine",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
)  # fmt: skip

WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb", "index.adj",
                 "index.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc")  # fmt: skip
# nltk's reader also wants `lexnames`, which Debian ships only as a manual page
# (lexnames.5WN): the 45 lexicographer files, numbered as in that page.
_LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def check_metric(metric: Any, wordnet_dir: Path, cache_dir: Path, embedder: Embedder | None = None) -> None:
    """Refuse (400) a metric that is unknown or whose data or model is missing here (`embedder`: the
    catalogue's embeddings model, which `cosine` needs)."""
    if metric not in METRICS:
        raise GraderConfigError(
            f"Invalid `evaluation_metric` {metric!r}; expected one of {', '.join(METRICS)}.",
            param="grader.evaluation_metric",
        )
    if metric == "cosine" and embedder is None:
        raise GraderConfigError(
            "The `cosine` metric needs an embeddings model, and this service's catalogue has none: "
            "an operator adds one to the catalogue with `task: embed` (the built-in one: "
            "`ftserve models add tiny-embed --source builtin:tiny-embed --task embed`, or any "
            "sentence-transformers model vLLM's pooling runner serves), then restarts `ftserve up`.",
            param="grader.evaluation_metric",
            code="embeddings_model_missing",
        )
    if metric == "meteor":
        wordnet(str(wordnet_dir), str(cache_dir))


@functools.cache
def wordnet(wordnet_dir: str, cache_dir: str) -> Any:
    """nltk's WordNet reader over the system's WordNet files (linked into a private cache dir)."""
    source = Path(wordnet_dir)
    missing = [name for name in WORDNET_FILES if not (source / name).is_file()]
    if missing:
        raise GraderConfigError(
            f"The `meteor` metric needs WordNet's data, missing from {source} ({', '.join(missing[:3])}…): "
            "install the `wordnet-base` package (`apt-get install wordnet-base`) or set "
            "FTSERVE_WORDNET_DIR to a WordNet 3.0 dict directory.",
            param="grader.evaluation_metric",
            code="wordnet_missing",
        )
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    target = Path(cache_dir) / "wordnet"
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in WORDNET_FILES:
        # Copies (about 30 MB), not links: nltk refuses symlinks out of its root and hard links.
        if not (target / name).exists():
            partial = target / f"{name}.{os.getpid()}.partial"
            shutil.copyfile(source / name, partial)
            partial.replace(target / name)
    lexnames = "".join(f"{i:02d}\t{n}\t{_CATEGORY[n.split('.')[0]]}\n" for i, n in enumerate(_LEXNAMES))
    (target / "lexnames").write_text(lexnames)
    # nltk reads corpora only under the roots it is told about.
    if str(target) not in nltk.data.path:
        nltk.data.path.append(str(target))
    with warnings.catch_warnings():  # "multilingual functions are not available": none are used
        warnings.simplefilter("ignore")
        return _reader_class(WordNetCorpusReader)(str(target), None)


def _reader_class(base: type) -> type:
    class SystemWordNet(base):  # type: ignore[misc,valid-type]
        def map_wn(self, version: str = "wordnet") -> None:
            # Maps another WordNet version's synsets onto this one, for multilingual data only.
            return None

    return SystemWordNet


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def score(metric: str, text: str, reference: str, wordnet_dir: Path, cache_dir: Path) -> float:
    """The metric's similarity of `text` to `reference`, in [0, 1]."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return fuzz.ratio(text, reference) / 100.0
    if metric == "bleu":
        import sacrebleu

        return sacrebleu.sentence_bleu(text, [reference]).score / 100.0
    if metric == "gleu":
        from nltk.translate.gleu_score import sentence_gleu

        return float(sentence_gleu([_tokens(reference)], _tokens(text)))
    if metric == "meteor":
        from nltk.translate.meteor_score import meteor_score

        reader = wordnet(str(wordnet_dir), str(cache_dir))
        return float(meteor_score([_tokens(reference)], _tokens(text), wordnet=reader))
    if metric.startswith("rouge_"):
        return _rouge(metric)(reference, text)
    check_metric(metric, wordnet_dir, cache_dir)  # cosine (asynchronous: `embeddings`), or unknown: a 400
    raise AssertionError(metric)


@functools.cache
def _rouge(metric: str) -> Any:
    from rouge_score import rouge_scorer

    key = "rougeL" if metric == "rouge_l" else "rouge" + metric[-1]
    scorer = rouge_scorer.RougeScorer([key])
    return lambda reference, text: float(scorer.score(reference, text)[key].fmeasure)
