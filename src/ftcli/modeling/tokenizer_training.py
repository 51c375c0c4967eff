"""A run's tokenizer: trained on the run's own training text (`tokenizer.train`), loaded from
`tokenizer.name_or_path`, or the model's own. `run_tokenizer` is the one place training picks it.

A trained tokenizer gets the special tokens its kind of model expects: a decoder's end-of-text, an
encoder's [CLS] text [SEP] and [MASK], a seq2seq model's appended </s>. Training is deterministic:
the same texts and settings give the same vocabulary, so a resumed run rebuilds the same tokenizer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ftcli.data.chats import PROMPT_COMPLETION, SHAREGPT_FIELD
from ftcli.errors import UserError
from ftcli.modeling.load import load_tokenizer
from ftcli.recipe import ModelSection
from ftcli.recipe.from_config import is_encoder, task_architectures


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens of one kind of model. They come first, so `tokens[0]` gets id 0."""

    tokens: tuple[str, ...]
    unk: str
    pad: str
    bos: str | None = None
    eos: str | None = None
    cls: str | None = None
    sep: str | None = None
    mask: str | None = None
    template: str | None = None  # post-processor for one text, e.g. "[CLS] $A [SEP]"
    pair_template: str | None = None


# GPT-2's end-of-text token both starts and ends a text; padding gets its own token so that it is
# never mistaken for the end of a text.
DECODER = SpecialTokens(("<|endoftext|>", "<pad>", "<unk>"), unk="<unk>", pad="<pad>",
                        bos="<|endoftext|>", eos="<|endoftext|>")
ENCODER = SpecialTokens(("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), unk="[UNK]", pad="[PAD]",
                        cls="[CLS]", sep="[SEP]", mask="[MASK]", template="[CLS] $A [SEP]",
                        pair_template="[CLS] $A [SEP] $B [SEP]")
# T5's layout: pad is id 0 (and the decoder's start token), every text ends in </s>.
SEQ2SEQ = SpecialTokens(("<pad>", "</s>", "<unk>"), unk="<unk>", pad="<pad>", eos="</s>",
                        template="$A </s>", pair_template="$A </s> $B </s>")


def special_tokens_for(task: str, architecture: str) -> SpecialTokens:
    if task == "causal-lm":
        return DECODER
    if task == "masked-lm":
        return ENCODER
    if task == "seq2seq" or architecture in task_architectures("seq2seq"):
        return SEQ2SEQ  # (a bart classifier pools its </s> token)
    return ENCODER if is_encoder(architecture) else DECODER


def _strings(value) -> list[str]:
    """The text in one field: a string, or the contents of a list of chat messages (ShareGPT's: values)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        texts = [m.get("content", m.get("value")) for m in value if isinstance(m, dict)]
        return [t for t in texts if isinstance(t, str)]
    return []


def training_texts(rows, recipe, format: str) -> list[str]:
    """The text a tokenizer learns from: every text field a row's format has (both sides of SFT and
    seq2seq pairs, each chat message). An unknown format uses every text value of the row."""
    d = recipe.data
    pair = (d.prompt_field, d.response_field)
    fields = {"text": (d.text_field,), "classification": (d.text_field,), "sft": pair, "prompt_response": pair,
              "seq2seq": pair, "alpaca": ("instruction", "input", "output") + pair,
              "messages": (d.messages_field,) + pair, "prompt_completion": PROMPT_COMPLETION,
              "sharegpt": ("system", SHAREGPT_FIELD)}.get(format)
    texts = []
    for row in rows:
        values = [row.get(f) for f in fields] if fields else list(row.values())
        texts += [t for value in values for t in _strings(value) if t]
    return texts


def train_tokenizer(texts: list[str], settings, specials: SpecialTokens):
    """A PreTrainedTokenizerFast trained on `texts`: byte-level BPE (every byte is in the alphabet,
    so no text is ever unknown) or Unigram over SentencePiece-style ▁words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if settings.type == "bpe":
        tok = Tokenizer(models.BPE(unk_token=specials.unk))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=settings.vocab_size, min_frequency=settings.min_frequency,
                                      special_tokens=list(specials.tokens), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=settings.vocab_size, special_tokens=list(specials.tokens),
                                          unk_token=specials.unk, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    if settings.type == "unigram":
        tok.model = _stable_unigram(tok, specials)
    if specials.template:
        used = [t for t in specials.tokens if t in specials.template.split() + specials.pair_template.split()]
        tok.post_processor = processors.TemplateProcessing(
            single=specials.template, pair=specials.pair_template,
            special_tokens=[(t, tok.token_to_id(t)) for t in used])
    roles = {f"{role}_token": getattr(specials, role)
             for role in ("unk", "pad", "bos", "eos", "cls", "sep", "mask") if getattr(specials, role)}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def _stable_unigram(tok, specials: SpecialTokens):
    """The trained Unigram model made the same on every run: scores rounded and pieces ordered by
    them (ties by name). The trainer sums in hash-map order, so scores differ in their last bits
    from run to run; and it appends the characters its model dropped at the lowest score + 1e-4·k,
    k in hash-set order, so those rare characters all get the lowest score here."""
    import json

    from tokenizers import models

    vocab = [(piece, round(score, 8)) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]
    head = [v for v in vocab if v[0] in specials.tokens]
    rest = [v for v in vocab if v[0] not in specials.tokens]
    low = min(score for _, score in rest)
    rest = [(piece, low if len(piece) == 1 and score < low + 0.1 else score) for piece, score in rest]
    rest.sort(key=lambda v: (-v[1], v[0]))
    vocab = head + rest
    return models.Unigram(vocab, unk_id=[piece for piece, _ in vocab].index(specials.unk), byte_fallback=False)


def run_tokenizer(recipe, splits, log=None):
    """The tokenizer a run trains with: trained on `splits.train` (tokenizer.train), loaded
    (tokenizer.name_or_path), or the model's own. It is saved with the run's model."""
    section = recipe.tokenizer
    if section is None:
        return load_tokenizer(recipe.model, log=log)
    if section.name_or_path is not None:
        return load_tokenizer(ModelSection(name_or_path=section.name_or_path,
                                           trust_remote_code=recipe.model.trust_remote_code), log=log)
    if recipe.data.streaming:
        raise UserError("tokenizer.train needs all the training text at once, and data.streaming reads it lazily",
                        hint="train the tokenizer in a run without streaming and set tokenizer.name_or_path "
                             "to that run's model/ directory")
    texts = training_texts(splits.train, recipe, getattr(splits, "format", splits.mode))
    if not texts:
        raise UserError("tokenizer.train: the training rows have no text to learn a vocabulary from")
    architecture = recipe.model.from_config["architecture"]
    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, section.train, special_tokens_for(recipe.task, architecture))
    if log:
        log(f"tokenizer trained ({section.train.type}) on {len(texts):,} texts: {len(tokenizer):,} tokens "
            f"in {time.perf_counter() - start:.1f}s")
    return tokenizer
