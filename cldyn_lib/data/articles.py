"""CNN/DailyMail articles and the GPT-NeoX (Pythia) tokenizer: Yang et al.'s documents.

Each loader finds its files with :func:`cldyn_lib.data.fetch.locate` and records where they
came from in ``.source`` (a :class:`~cldyn_lib.data.fetch.DataSource`); see
``data/README.md`` for sources and licences.

Taught in the chapter *Anticipatory recovery in a language model*.
"""

from __future__ import annotations

import dataclasses
import json

from ..config import check_choice
from ..files import offline
from .fetch import DataNotFoundError, DataSource, locate

# ---------------------------------------------------------------- CNN/DailyMail

ARTICLE_POOLS = ("permissive", "all")
_ARTICLE_FILES = {
    "permissive": (
        "cnn_dailymail/articles_permissive.jsonl",
        "9a8e84f4fc3b16f1d91b7c5e151d1fed2cd168ef9eb89ed3dd741d7175b32424",
    ),
    "all": (
        "cnn_dailymail/articles.jsonl",
        "272a7decec309c05f94d8d7e0b8bf4e05630547c9e5a178f11a54f61cd6ce637",
    ),
}


@dataclasses.dataclass
class Articles:
    """News articles used as documents: ``texts[i]`` has identifier ``ids[i]``."""

    ids: list[str]
    texts: list[str]
    source: DataSource

    def __len__(self) -> int:
        return len(self.texts)


def load_articles(pool: str = "permissive", path=None) -> Articles:
    """CNN/DailyMail articles.

    ``pool="permissive"`` is the default: the 270 mirror articles whose source repositories
    are MIT/Apache licensed (FRANK and allennlp, all from the test split). ``"all"`` adds
    2,100 SumLLM articles (CC BY-NC 4.0, truncated to about 900 words). Without the mirror,
    the pool is the Hugging Face ``cnn_dailymail`` 3.0.0 *train* split, as in Yang et al.
    (needs the ``datasets`` package and internet); ``path`` may point at any ``.jsonl`` with
    ``{"id", "article"}`` lines.
    """
    check_choice("pool", pool, ARTICLE_POOLS)
    rel, sha = _ARTICLE_FILES[pool]
    try:
        found = locate("cnn_dailymail", path=path, mirror_path=rel, mirror_sha256=sha)
    except DataNotFoundError as err:
        return _articles_from_hub(err)
    ids, texts = [], []
    with open(found.path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                ids.append(str(row["id"]))
                texts.append(row["article"])
    return Articles(ids, texts, found.source)


def _articles_from_hub(err: DataNotFoundError) -> Articles:
    hint = "pip install datasets (and be online) to use the Hugging Face copy"
    if offline():
        raise DataNotFoundError(f"{err}\nHugging Face hub: skipped (CLDYN_OFFLINE is set)")
    try:
        import datasets  # optional: pip install "cldyn[online]"
    except ImportError:
        raise DataNotFoundError(f"{err}\nHugging Face hub: not tried ({hint})") from None
    try:
        ds = datasets.load_dataset("cnn_dailymail", "3.0.0", split="train")
    except Exception as hub_err:  # network errors come in many types
        raise DataNotFoundError(f"{err}\nHugging Face hub: failed ({hub_err})") from None
    src = DataSource(
        "cnn_dailymail", "hub", "hf:cnn_dailymail/3.0.0/train", note="full train split"
    )
    return Articles(list(ds["id"]), list(ds["article"]), src)


# ---------------------------------------------------------------- tokenizer

TOKENIZER_FILE = (
    "tokenizers/gpt-neox-20b/tokenizer.json",
    "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade",
)
PYTHIA_HUB_TOKENIZER = "EleutherAI/pythia-160m"


def load_tokenizer(path=None, return_source: bool = False):
    """The GPT-NeoX (Pythia) tokenizer as a ``transformers`` fast tokenizer.

    Offline it is built from the mirror's ``tokenizer.json`` (EleutherAI's 20B tokenizer,
    50,277 ids; "Hello world" -> [12092, 1533]); online from the Pythia repository on the hub.
    The end-of-text token (id 0) doubles as padding, as in Yang et al.'s code.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    rel, sha = TOKENIZER_FILE
    try:
        found = locate("gpt-neox-tokenizer", path=path, mirror_path=rel, mirror_sha256=sha)
        tok = PreTrainedTokenizerFast(
            tokenizer_file=str(found.path),
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
        )
        source = found.source
    except DataNotFoundError as err:
        if offline():
            raise
        try:
            tok = AutoTokenizer.from_pretrained(PYTHIA_HUB_TOKENIZER)
        except Exception as hub_err:
            raise DataNotFoundError(f"{err}\nHugging Face hub: failed ({hub_err})") from None
        source = DataSource("gpt-neox-tokenizer", "hub", f"hf:{PYTHIA_HUB_TOKENIZER}")
    tok.pad_token = tok.eos_token
    return (tok, source) if return_source else tok
