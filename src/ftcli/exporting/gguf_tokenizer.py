"""A Hugging Face tokenizer as GGUF metadata, the way llama.cpp reads it: byte-level BPE (SmolLM2,
Llama 3: tokenizer.ggml.model "gpt2") or sentencepiece-style BPE with byte fallback (Llama 2,
TinyLlama: "llama"), with the special tokens, the pre-tokenizer's name and the chat template."""

from __future__ import annotations

import json

from ftcli.errors import ModelError, UserError


# The text-splitting regex of Llama 3's tokenizer (llama.cpp calls it "llama-bpe").
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def add_tokenizer(writer, tokenizer, config, vocab_rows: int) -> None:
    """The vocabulary, merges and special tokens under llama.cpp's keys (a GGUF has no tokenizer.json)."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UserError("GGUF export needs a fast (tokenizers) tokenizer")
    spec = json.loads(backend.to_str())
    kind = _tokenizer_kind(spec)
    if len(tokenizer) > vocab_rows:
        raise ModelError(f"the tokenizer has {len(tokenizer)} tokens but the embedding only {vocab_rows} rows")
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]

    id_to_token = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {t.content: t for t in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(vocab_rows):  # one entry per embedding row: llama.cpp indexes both by id
        token = id_to_token.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")  # an unused row (vocabulary padded to a round size)
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(token)  # added tokens are stored as plain text, the rest as the vocabulary spells them
        if token in added:
            special = added[token].special
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        elif kind == "llama" and len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            types.append(gguf.TokenType.BYTE)  # byte fallback pieces <0x00>..<0xFF>
        else:
            types.append(gguf.TokenType.NORMAL)
    if tokenizer.unk_token_id is not None and types[tokenizer.unk_token_id] != gguf.TokenType.UNUSED:
        types[tokenizer.unk_token_id] = gguf.TokenType.UNKNOWN

    writer.add_tokenizer_model(kind)
    if kind == "gpt2":
        writer.add_tokenizer_pre(_pre_tokenizer_name(spec.get("pre_tokenizer")))
    else:
        writer.add_tokenizer_pre("default")
        writer.add_token_scores(_merge_scores(tokens, merges))
        writer.add_add_space_prefix(_adds_space_prefix(spec))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)  # llama.cpp's BPE needs them; transformers' loader reads them for both

    for role, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                      ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        token_id = getattr(tokenizer, f"{role}_token_id", None)
        if token_id is None:
            token_id = getattr(config, f"{role}_token_id", None)
            token_id = token_id[0] if isinstance(token_id, list) else token_id
        if token_id is not None:
            add(int(token_id))
    # Whether encoding adds BOS/EOS, measured rather than read from settings that differ by class.
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(len(full) > len(plain) and full[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(full) > len(plain) and full[-1] == tokenizer.eos_token_id)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        writer.add_chat_template(template)


def _tokenizer_kind(spec: dict) -> str:
    """llama.cpp's tokenizer model: "gpt2" (byte-level BPE: SmolLM2, Llama 3, GPT-2) or "llama"
    (sentencepiece-style BPE with byte fallback: Llama 2, TinyLlama)."""
    model = spec["model"]
    if model.get("type") == "BPE" and _has_byte_level(spec.get("pre_tokenizer")):
        return "gpt2"
    if model.get("type") == "BPE" and model.get("byte_fallback") and "▁" in json.dumps(
            [spec.get("pre_tokenizer"), spec.get("normalizer")], ensure_ascii=False):
        return "llama"
    raise UserError(f"GGUF export supports byte-level BPE tokenizers (SmolLM2, Llama 3) and "
                    f"sentencepiece-style BPE ones (Llama 2, TinyLlama); this one is {model.get('type')}")


def _merge_scores(tokens: list[str], merges: list[str]) -> list[float]:
    """Scores for llama.cpp's sentencepiece tokenizer, which joins the adjacent pair whose joined
    text scores highest: the merge rank, negated, makes it join in the order BPE's merge list does.
    Tokens no merge makes (characters, bytes, specials) score below every merge."""
    rank: dict[str, int] = {}
    for r, merge in enumerate(merges):
        rank.setdefault(merge.replace(" ", ""), r)
    return [-float(rank[t]) if t in rank else -float(len(merges) + 1) for t in tokens]


def _adds_space_prefix(spec: dict) -> bool:
    """Sentencepiece prepends "▁" to the text: via the Metaspace pre-tokenizer (transformers 5) or
    a Prepend normalizer (older tokenizer.json files). One known difference remains: Metaspace's
    "first" scheme adds no "▁" to text that already starts with a space, llama.cpp always does."""
    pre, norm = spec.get("pre_tokenizer") or {}, spec.get("normalizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if any(s.get("type") == "Metaspace" and s.get("prepend_scheme", "always") != "never" for s in steps):
        return True
    norms = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm]
    return any(n.get("type") == "Prepend" for n in norms)


def _has_byte_level(pre) -> bool:
    if not pre:
        return False
    if pre.get("type") == "Sequence":
        return any(_has_byte_level(p) for p in pre.get("pretokenizers", []))
    return pre.get("type") == "ByteLevel"


def _pre_tokenizer_name(pre) -> str:
    """llama.cpp's name for how the text is split before BPE (`tokenizer.ggml.pre`; llama.cpp refuses
    a name it does not know). Recognised by the tokenizer's structure; an unknown split is refused,
    as guessing would silently tokenize differently in llama.cpp."""
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # GPT-2's own split (llama.cpp knows no "gpt2" here, only "gpt-2")
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    kinds = [s.get("type") for s in steps]
    if (kinds == ["Split", "ByteLevel"] and steps[0].get("pattern", {}).get("Regex") == LLAMA3_SPLIT
            and not steps[1].get("use_regex", True)):
        return "llama-bpe"
    if (kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits")
            and steps[1].get("use_regex", True)):
        return "smollm"  # digits one by one, then GPT-2's split
    raise UserError(f"GGUF export: this tokenizer's pre-tokenizer is not one llama.cpp is known to "
                    f"share ({json.dumps(pre)[:200]})")
