"""Export a saved Hugging Face Llama-family causal LM (a run's `model/`) to one GGUF file for
llama.cpp, Ollama and friends — the reverse of `modeling.import_gguf`.

Written against llama.cpp's conventions (convert_hf_to_gguf.py) and checked by round trip through
transformers' own GGUF loader, which undoes each convention: same tensors, same tokenizer.
Tokenizers: byte-level BPE (SmolLM2, Llama 3: tokenizer.ggml.model "gpt2") and sentencepiece-style
BPE with byte fallback (Llama 2, TinyLlama: "llama").

    export_gguf(Path("runs/demo/model"), Path("demo.gguf"), dtype="q8_0")
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ftcli.errors import ModelError, UserError

SUPPORTED_ARCHITECTURES = ("llama",)  # model_type values; LlamaForCausalLM: SmolLM2, TinyLlama, Llama 2/3
DTYPES = ("f16", "q8_0", "f32")

# Per-layer tensors: Hugging Face name (after `model.layers.N.`) → llama.cpp name (after `blk.N.`).
LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}

# The text-splitting regex of Llama 3's tokenizer (llama.cpp calls it "llama-bpe").
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def export_gguf(model_dir: Path, out_file: Path, dtype: str = "f16") -> Path:
    """Write `model_dir` (safetensors weights + tokenizer) as the GGUF file `out_file`.

    dtype: "f16" (2-D weights f16), "q8_0" (2-D weights Q8_0 where their rows split into 32-value
    blocks, else f16) or "f32". Norms and other 1-D tensors stay f32 in every mode, as llama.cpp
    keeps them. The file appears complete or not at all (written to a temporary name, then renamed).
    """
    import gguf
    from transformers import AutoConfig, AutoTokenizer

    model_dir, out_file = Path(model_dir), Path(out_file)
    if dtype not in DTYPES:
        raise UserError(f"unknown GGUF type {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if not (model_dir / "config.json").is_file():
        raise ModelError(f"not a model directory (no config.json): {model_dir}")
    weight_files = sorted(model_dir.glob("*.safetensors"))
    if not weight_files:
        raise ModelError(f"no safetensors weights in {model_dir}")
    config = AutoConfig.from_pretrained(model_dir)
    _check_config(config)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    writer = gguf.GGUFWriter(path=None, arch="llama")
    _add_model_metadata(writer, config, model_dir, dtype)
    vocab_rows = _add_tensors(writer, config, weight_files, dtype)
    _add_tokenizer(writer, tokenizer, config, vocab_rows)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    try:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_file)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return out_file


def _check_config(config) -> None:
    """Refuse what this exporter (or llama.cpp's `llama` architecture) would get silently wrong."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"GGUF export supports only {', '.join(SUPPORTED_ARCHITECTURES)} models "
                        f"(LlamaForCausalLM: SmolLM2, TinyLlama, Llama 2/3); this model is {model_type!r}")
    problems = []
    if getattr(config, "hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {config.hidden_act!r} (llama.cpp's llama uses silu)")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        problems.append("bias tensors in attention or MLP")
    rope_type = (_rope_parameters(config) or {}).get("rope_type", "default")
    if rope_type != "default":
        # Llama 3.1+'s "llama3" scaling needs a computed rope_freqs tensor; not written here yet.
        problems.append(f"RoPE scaling {rope_type!r}")
    if problems:
        raise UserError(f"cannot export this Llama model to GGUF: {'; '.join(problems)} not supported")


def _rope_parameters(config) -> dict | None:
    # transformers 5 keeps rope_theta inside rope_parameters; older configs have rope_theta/rope_scaling.
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None)
    return dict(params) if params else None


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _add_model_metadata(writer, config, model_dir: Path, dtype: str) -> None:
    import gguf

    # A run's model/ is named after its run directory, not "model".
    name = model_dir.resolve().parent.name if model_dir.resolve().name == "model" else model_dir.resolve().name
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_dimension_count(_head_dim(config))
    if _head_dim(config) != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(_head_dim(config))  # llama.cpp assumes hidden/heads unless told
        writer.add_value_length(_head_dim(config))
    rope = _rope_parameters(config) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tensors(writer, config, weight_files: list[Path], dtype: str) -> int:
    """Add every weight under its llama.cpp name and type; return the embedding's row count."""
    from safetensors import safe_open

    n_head = config.num_attention_heads
    n_kv_head = config.num_key_value_heads or n_head
    tied = bool(getattr(config, "tie_word_embeddings", False))
    seen, vocab_rows = set(), None
    for path in weight_files:
        with safe_open(path, framework="pt") as f:
            for hf_name in f.keys():
                if hf_name.endswith("rotary_emb.inv_freq"):
                    continue  # recomputed from rope_theta; old checkpoints saved it
                if hf_name == "lm_head.weight" and tied:
                    continue  # tied: llama.cpp reuses token_embd when output.weight is absent
                name = _gguf_name(hf_name)
                array = f.get_tensor(hf_name).float().numpy()  # bf16 has no numpy dtype: via f32
                if name.endswith("attn_q.weight"):
                    array = _permute_qk(array, n_head)
                elif name.endswith("attn_k.weight"):
                    array = _permute_qk(array, n_kv_head)
                if name == "token_embd.weight":
                    vocab_rows = array.shape[0]
                _add_tensor(writer, name, array, dtype)
                seen.add(name)
    missing = [n for n in _expected_names(config.num_hidden_layers, tied) if n not in seen]
    if missing:
        raise ModelError(f"the weights lack {len(missing)} tensor(s) a Llama model needs, e.g. {missing[0]}")
    return vocab_rows


def _gguf_name(hf_name: str) -> str:
    if hf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[hf_name]
    parts = hf_name.split(".", 3)  # model . layers . N . rest
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[3] in LAYER_TENSORS:
        return f"blk.{int(parts[2])}.{LAYER_TENSORS[parts[3]]}"
    raise ModelError(f"unexpected tensor {hf_name!r} for a Llama model; cannot export it to GGUF")


def _expected_names(n_layers: int, tied: bool) -> list[str]:
    names = ["token_embd.weight", "output_norm.weight"] + ([] if tied else ["output.weight"])
    return names + [f"blk.{i}.{n}" for i in range(n_layers) for n in LAYER_TENSORS.values()]


def _permute_qk(weight, n_head: int):
    """Reorder each head's rows from Hugging Face's rotary layout (the two halves of a head are
    rotated together) to GGML's (adjacent pairs are rotated together), as llama.cpp's converter
    does; transformers' GGUF loader applies the inverse."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _add_tensor(writer, name: str, array, dtype: str) -> None:
    import gguf
    import numpy as np

    if array.ndim < 2 or dtype == "f32":
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
        return
    block_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    if dtype == "q8_0" and array.shape[-1] % block_size == 0:
        q8 = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(array, q8), raw_dtype=q8)
    else:
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float16))


def _add_tokenizer(writer, tokenizer, config, vocab_rows: int) -> None:
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
