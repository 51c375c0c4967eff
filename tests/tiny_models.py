"""Tiny models with tiny tokenizers, built from scratch in seconds, for tests and `make smoke-test`.

Both are real transformers models (Llama, BERT) of 2 layers and a few hundred tokens of vocabulary,
so every code path runs as with a pretrained model, just ~1000x faster.

    python tests/tiny_models.py OUT_DIR     # writes OUT_DIR/tiny-llama and OUT_DIR/tiny-bert
"""

from __future__ import annotations

import json
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


def main(out: str) -> None:
    root = Path(out)
    for name, build in (("tiny-llama", build_llama), ("tiny-bert", build_bert)):
        path = build(root / name)
        print(f"built {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "models")
