"""Export a saved Hugging Face Llama-family causal LM (a run's `model/`) to one GGUF file for
llama.cpp, Ollama and friends — the reverse of `modeling.import_gguf`.

Written against llama.cpp's conventions (convert_hf_to_gguf.py) and checked by round trip through
transformers' own GGUF loader, which undoes each convention: same tensors, same tokenizer.
Tokenizers: byte-level BPE (SmolLM2, Llama 3: tokenizer.ggml.model "gpt2") and sentencepiece-style
BPE with byte fallback (Llama 2, TinyLlama: "llama").

    export_gguf(Path("runs/demo/model"), Path("demo.gguf"), dtype="q8_0")
"""

from __future__ import annotations

import os
from pathlib import Path

from ftcli.errors import ModelError, UserError
from ftcli.exporting.gguf_tokenizer import add_tokenizer
from ftcli.progress import Progress, progress_mode

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
    add_tokenizer(writer, tokenizer, config, vocab_rows)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    try:
        writer.write_header_to_file(tmp)
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=progress_mode() == "bar")  # gguf's own byte bar
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
    total = sum(len(safe_open(path, framework="pt").keys()) for path in weight_files)  # headers only
    with Progress("GGUF tensors", total) as progress:
        for path in weight_files:
            with safe_open(path, framework="pt") as f:
                for hf_name in f.keys():
                    progress.advance()
                    if (array := _converted(f, hf_name, tied, n_head, n_kv_head)) is None:
                        continue
                    name = _gguf_name(hf_name)
                    if name == "token_embd.weight":
                        vocab_rows = array.shape[0]
                    _add_tensor(writer, name, array, dtype)
                    seen.add(name)
    missing = [n for n in _expected_names(config.num_hidden_layers, tied) if n not in seen]
    if missing:
        raise ModelError(f"the weights lack {len(missing)} tensor(s) a Llama model needs, e.g. {missing[0]}")
    return vocab_rows


def _converted(f, hf_name: str, tied: bool, n_head: int, n_kv_head: int):
    """The tensor as llama.cpp lays it out (a numpy array), or None for one GGUF leaves out."""
    if hf_name.endswith("rotary_emb.inv_freq"):
        return None  # recomputed from rope_theta; old checkpoints saved it
    if hf_name == "lm_head.weight" and tied:
        return None  # tied: llama.cpp reuses token_embd when output.weight is absent
    name = _gguf_name(hf_name)
    array = f.get_tensor(hf_name).float().numpy()  # bf16 has no numpy dtype: via f32
    if name.endswith("attn_q.weight"):
        return _permute_qk(array, n_head)
    if name.endswith("attn_k.weight"):
        return _permute_qk(array, n_kv_head)
    return array


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
