"""Tiny models with tiny tokenizers, built from scratch in seconds, for tests and `make smoke-test`.

All are real transformers models (Llama, BERT, T5) of 2 layers and a few hundred tokens of vocabulary,
so every code path runs as with a pretrained model, just ~1000x faster.

    python tests/tiny_models.py OUT_DIR     # writes OUT_DIR/tiny-llama, tiny-bert and tiny-t5
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A small chat template in the ChatML shape SmolLM2 uses, so tests cover the chat path.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def corpus() -> list[str]:
    """Training text for the tokenizers: the repo's own example data plus the template's words."""
    texts = ["system user assistant", "The quick brown fox jumps over the lazy dog."]
    for path in (REPO / "data/pirate/train.jsonl", REPO / "data/reviews/train.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.extend(str(v) for v in json.loads(line).values())
    return texts


def build_llama(out_dir: Path, chat: bool = True, vocab_size: int = 400) -> Path:
    """A 2-layer Llama (hidden 32) with a byte-level BPE tokenizer; `chat` adds a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, set_seed

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos = "<|im_end|>" if chat else "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token=eos,
                                        pad_token="<|endoftext|>")
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE

    set_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_bert(out_dir: Path, vocab_size: int = 400) -> Path:
    """A 2-layer BERT encoder (hidden 32) with a WordPiece tokenizer ([CLS] text [SEP])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, set_seed

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    # The vocabulary is built here rather than by WordPieceTrainer, whose choice among equally
    # frequent words changes from run to run (and with it every test's numbers): every character
    # (alone and as a ##continuation), then the most frequent words, ties broken alphabetically.
    counts = Counter(word for text in corpus()
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    pieces = specials + chars + [f"##{c}" for c in chars]
    pieces += words[: max(0, vocab_size - len(pieces))]
    tok = Tokenizer(models.WordPiece(vocab={p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")

    set_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    # A bare encoder, like a pretrained checkpoint: the classification head is created at fine-tuning.
    BertModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# A toy English→German word list: the tokenizer holds each word whole, and tests build from it a
# small "translation" task that a tiny T5 learns in seconds.
EN_DE = {"the": "der", "a": "ein", "man": "mann", "woman": "frau", "dog": "hund", "cat": "katze",
         "child": "kind", "red": "rot", "blue": "blau", "green": "grün", "big": "groß", "small": "klein",
         "runs": "läuft", "sleeps": "schläft", "eats": "isst", "sees": "sieht", "house": "haus",
         "water": "wasser", "bike": "fahrrad", "street": "straße", "is": "ist", "and": "und",
         "riding": "fährt", "on": "auf"}


def build_t5(out_dir: Path, vocab_size: int = 500) -> Path:
    """A T5 of 2 encoder and 2 decoder layers (d_model 32) with a Unigram (SentencePiece-style)
    tokenizer that appends </s> to every text, as T5's own does."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration, set_seed

    specials = ["<pad>", "</s>", "<unk>"]  # T5's ids: pad 0 (also the decoder start), eos 1, unk 2
    normalizer = normalizers.NFKC()
    pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    # The pieces are chosen here rather than by UnigramTrainer, which is slow and not reproducible:
    # every character (alone and word-initial), the toy words, then the corpus' words by frequency
    # (ties alphabetical), scored by log frequency so that a known word beats spelling it out.
    toy = [f"▁{w}" for w in (*EN_DE, *EN_DE.values())]
    counts = Counter(word for text in corpus() + toy
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word.lstrip("▁")})
    single = ["▁"] + chars + [f"▁{c}" for c in chars]
    frequent = sorted(set(counts) - set(single) - set(toy), key=lambda w: (-counts[w], w))
    words = (toy + frequent)[: max(0, vocab_size - len(specials) - len(single))]
    total = sum(counts.values())
    pieces = [(p, -20.0) for p in single] + [(w, math.log(counts[w] / total)) for w in words]
    tok = Tokenizer(models.Unigram([(s, 0.0) for s in specials] + pieces, unk_id=specials.index("<unk>")))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", specials.index("</s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                        unk_token="<unk>")

    set_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2,
                      num_decoder_layers=2, num_heads=2, relative_attention_num_buckets=8,
                      dropout_rate=0.0,  # a few hundred steps on a toy task: dropout only slows them
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      decoder_start_token_id=tokenizer.pad_token_id)
    T5ForConditionalGeneration(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(out: str) -> None:
    root = Path(out)
    for name, build in (("tiny-llama", build_llama), ("tiny-bert", build_bert), ("tiny-t5", build_t5)):
        path = build(root / name)
        print(f"built {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models")
