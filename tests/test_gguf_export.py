"""GGUF export (ftcli.exporting.gguf): round trip through transformers' own GGUF loader, which undoes
llama.cpp's conventions (tensor names, Q/K head order, tokenizer metadata): the loaded model must
generate what the original does, and the loaded tokenizer must encode as the original does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftcli.errors import ModelError, UserError
from ftcli.exporting.gguf import export_gguf
from ftcli.exporting.gguf_tokenizer import LLAMA3_SPLIT

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = REPO / "models" / "smollm2-135m-instruct"
TEXTS = ["Hello world!", "The quick brown fox jumps over the lazy dog. 12345",
         "<|im_start|>user\nWhy?<|im_end|>\n", "  two spaces\n\nnew lines\ttab, é ü ß 日本"]


@pytest.fixture(scope="module")
def varied_llama(tiny_llama, tmp_path_factory) -> Path:
    """A tiny Llama unlike `tiny_llama` in every way the exporter must handle: grouped-query
    attention (4 heads, 2 KV heads), head_dim 16 ≠ hidden/heads, untied output, embedding rows
    padded past the vocabulary, a non-default rope_theta, and hidden 48, whose rows do not split
    into Q8_0's 32-value blocks (so q8_0 falls back to f16 there). Weights drawn wide (std 0.2)
    so that greedy generation is not one repeated token, as it is for a model near zero."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tokenizer) + 16, hidden_size=48, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         max_position_embeddings=256, initializer_range=0.2, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    out = tmp_path_factory.mktemp("models") / "varied-llama"
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def spm_llama(tmp_path_factory) -> Path:
    """A tiny Llama with a Llama 2 / TinyLlama style tokenizer: sentencepiece-like BPE over "▁"-marked
    words, with <unk> <s> </s>, the 256 byte-fallback pieces <0x00>..<0xFF>, and BOS added."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from tiny_models import corpus

    specials, byte_pieces = ["<unk>", "<s>", "</s>"], [f"<0x{i:02X}>" for i in range(256)]
    trainer = Tokenizer(models.BPE())
    trainer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=400 - len(specials) - 256))
    trained = json.loads(trainer.to_str())["model"]
    pieces = specials + byte_pieces + sorted(trained["vocab"], key=trained["vocab"].get)
    tokenizer = LlamaTokenizer(vocab={p: i for i, p in enumerate(pieces)},
                               merges=[tuple(m) for m in trained["merges"]], unk_token="<unk>",
                               bos_token="<s>", eos_token="</s>", add_bos_token=True)
    tokenizer.chat_template = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         initializer_range=0.2, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    out = tmp_path_factory.mktemp("models") / "spm-llama"
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_gguf(path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def load_original(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


def chat_prompt(tokenizer, text: str = "Why is the sky blue?"):
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         return_tensors="pt", return_dict=True)["input_ids"]


def compare(original, exported, prompt, new_tokens: int = 16) -> tuple[float, bool]:
    """(max |logit difference| on the prompt relative to the largest |logit|, whether greedy
    generation is identical)."""
    import torch

    with torch.no_grad():
        logits = original(prompt).logits
        diff = (logits - exported(prompt).logits).abs().max().item() / logits.abs().max().item()
        a = original.generate(prompt, max_new_tokens=new_tokens, do_sample=False, min_new_tokens=new_tokens)
        b = exported.generate(prompt, max_new_tokens=new_tokens, do_sample=False, min_new_tokens=new_tokens)
    return diff, torch.equal(a, b)


def tensor_types(path: Path) -> dict[str, str]:
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def metadata(path: Path) -> dict:
    from gguf import GGUFReader

    return {name: field.contents() for name, field in GGUFReader(path).fields.items()}


# --- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model_name", ["tiny_llama", "varied_llama", "spm_llama"])
def test_f32_round_trip_is_exact(model_name, request, tmp_path):
    """f32 loses nothing, so any mistake in names or the Q/K permutation shows as a difference."""
    import torch

    model_dir = request.getfixturevalue(model_name)
    path = export_gguf(model_dir, tmp_path / "m.gguf", "f32")
    (original, _), (exported, _) = load_original(model_dir), load_gguf(path)
    a, b = original.state_dict(), exported.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for key in ("hidden_size", "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings",
                "max_position_embeddings"):
        assert getattr(exported.config, key) == getattr(original.config, key), key
    # GGUF stores floats as float32
    assert exported.config.rms_norm_eps == pytest.approx(original.config.rms_norm_eps, rel=1e-6)
    assert exported.config.rope_parameters["rope_theta"] == original.config.rope_parameters["rope_theta"]


# Measured relative differences: f16 0.02% (tiny_llama) and 0.15% (varied_llama), q8_0 0.5% and 1.6%.
@pytest.mark.parametrize("dtype, tolerance", [("f16", 0.005), ("q8_0", 0.05)])
@pytest.mark.parametrize("model_name", ["tiny_llama", "varied_llama", "spm_llama"])
def test_round_trip_generates_the_same(model_name, dtype, tolerance, request, tmp_path):
    model_dir = request.getfixturevalue(model_name)
    path = export_gguf(model_dir, tmp_path / f"m-{dtype}.gguf", dtype)
    (original, tokenizer), (exported, _) = load_original(model_dir), load_gguf(path)
    diff, same = compare(original, exported, chat_prompt(tokenizer), new_tokens=16)
    assert same
    assert diff < tolerance


def test_varied_model_generates_varied_text(varied_llama):
    """The generation comparison above means something: this model does not repeat one token."""
    original, tokenizer = load_original(varied_llama)
    prompt = chat_prompt(tokenizer)
    out = original.generate(prompt, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert len(set(out[0, prompt.shape[1]:].tolist())) > 3


@pytest.mark.parametrize("model_name", ["tiny_llama", "varied_llama", "spm_llama"])
def test_tokenizer_round_trip(model_name, request, tmp_path):
    model_dir = request.getfixturevalue(model_name)
    path = export_gguf(model_dir, tmp_path / "m.gguf", "f16")
    (_, original), (_, exported) = load_original(model_dir), load_gguf(path)
    for text in TEXTS:
        ids = original(text)["input_ids"]
        assert exported(text)["input_ids"] == ids, text
        assert exported.decode(ids) == original.decode(ids)
    assert exported.chat_template == original.chat_template
    for kind in ("bos", "eos", "pad"):
        assert getattr(exported, f"{kind}_token") == getattr(original, f"{kind}_token"), kind


# --- what the file holds -------------------------------------------------------------------------

def test_metadata_and_tensor_names(tiny_llama, tmp_path):
    from transformers import AutoTokenizer

    path = export_gguf(tiny_llama, tmp_path / "out" / "tiny.gguf", "f16")
    meta = metadata(path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    assert meta["general.architecture"] == "llama"
    assert meta["general.file_type"] == 1  # MOSTLY_F16
    expected = {"llama.context_length": 512, "llama.embedding_length": 32, "llama.block_count": 2,
                "llama.feed_forward_length": 64, "llama.attention.head_count": 2,
                "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16,
                "llama.rope.freq_base": 10000.0, "llama.vocab_size": 400,
                "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
                "tokenizer.ggml.bos_token_id": tokenizer.bos_token_id,
                "tokenizer.ggml.eos_token_id": tokenizer.eos_token_id,
                "tokenizer.ggml.padding_token_id": tokenizer.pad_token_id,
                "tokenizer.ggml.add_bos_token": False, "tokenizer.chat_template": tokenizer.chat_template}
    assert {k: meta.get(k) for k in expected} == expected
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert len(meta["tokenizer.ggml.tokens"]) == 400
    assert meta["tokenizer.ggml.token_type"][:4] == [3, 3, 3, 1]  # the 3 special tokens are CONTROL
    assert meta["tokenizer.ggml.merges"][0] == "Ġ t"

    types = tensor_types(path)
    per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                 "ffn_down"]
    assert set(types) == {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(2) for n in per_layer}  # tied: no output.weight
    assert types["token_embd.weight"] == "F16" and types["blk.1.attn_q.weight"] == "F16"
    assert types["output_norm.weight"] == "F32" and types["blk.0.ffn_norm.weight"] == "F32"
    assert [p.name for p in path.parent.iterdir()] == ["tiny.gguf"]  # no temporary file left behind


def test_q8_0_tensor_types(tiny_llama, varied_llama, tmp_path):
    """Q8_0 where a row splits into 32-value blocks; f16 for the other 2-D weights; norms f32."""
    small = tensor_types(export_gguf(tiny_llama, tmp_path / "tiny.gguf", "q8_0"))  # rows of 32 or 64
    assert {t for n, t in small.items() if "norm" not in n} == {"Q8_0"}
    assert {t for n, t in small.items() if "norm" in n} == {"F32"}
    varied = tensor_types(export_gguf(varied_llama, tmp_path / "varied.gguf", "q8_0"))  # rows of 48, down 64
    assert varied["blk.0.ffn_down.weight"] == "Q8_0"
    assert varied["blk.0.attn_q.weight"] == varied["token_embd.weight"] == varied["output.weight"] == "F16"
    assert varied["blk.0.attn_norm.weight"] == "F32"
    assert metadata(tmp_path / "varied.gguf")["tokenizer.ggml.token_type"][-1] == 5  # padding row: UNUSED


def test_sentencepiece_tokenizer_metadata(spm_llama, tmp_path):
    from transformers import AutoTokenizer

    meta = metadata(export_gguf(spm_llama, tmp_path / "spm.gguf", "f16"))
    tokenizer = AutoTokenizer.from_pretrained(spm_llama)
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.add_space_prefix"] is True and meta["tokenizer.ggml.add_bos_token"] is True
    types, tokens = meta["tokenizer.ggml.token_type"], meta["tokenizer.ggml.tokens"]
    assert types[:4] == [2, 3, 3, 6] and tokens[3] == "<0x00>"  # UNKNOWN, CONTROL ×2, BYTE
    assert types.count(6) == 256
    # llama.cpp joins the pair whose result scores highest: merge rank order, as BPE does.
    scores, merges = meta["tokenizer.ggml.scores"], meta["tokenizer.ggml.merges"]
    first, second = (tokenizer.convert_tokens_to_ids(m.replace(" ", "")) for m in merges[:2])
    assert scores[first] > scores[second] > scores[tokenizer.convert_tokens_to_ids("▁")]


PRE_TOKENIZERS = {  # tokenizer.json pre-tokenizers of byte-level BPE families → llama.cpp's names
    "llama-bpe": {"type": "Sequence", "pretokenizers": [  # Llama 3
        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
    "smollm": {"type": "Sequence", "pretokenizers": [  # digits one by one, then GPT-2's split
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
}


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_pre_tokenizer_families(pre, tiny_llama, tmp_path):
    """tiny_llama with another family's text splitting: named as llama.cpp names it, and read back
    by transformers to the same ids."""
    import shutil

    model_dir = shutil.copytree(tiny_llama, tmp_path / "model")
    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    spec["pre_tokenizer"] = PRE_TOKENIZERS[pre]
    (model_dir / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    path = export_gguf(model_dir, tmp_path / "m.gguf")
    assert metadata(path)["tokenizer.ggml.pre"] == pre
    (_, original), (_, exported) = load_original(model_dir), load_gguf(path)
    for text in TEXTS:
        if pre == "smollm" and any(c.isdigit() for c in text):
            # transformers' GGUF loader knows no "smollm": it keeps digits together (llama.cpp splits them)
            continue
        assert exported(text)["input_ids"] == original(text)["input_ids"], text


def test_unknown_pre_tokenizer_is_refused(tiny_llama, tmp_path):
    import shutil

    model_dir = shutil.copytree(tiny_llama, tmp_path / "model")
    spec = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Whitespace"}, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                 "use_regex": False}]}
    (model_dir / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(UserError, match="pre-tokenizer"):
        export_gguf(model_dir, tmp_path / "m.gguf")


# --- refusals and atomicity ----------------------------------------------------------------------

@pytest.mark.parametrize("model_name", ["tiny_bert", "tiny_t5"])
def test_non_llama_model_is_refused(model_name, request, tmp_path):
    with pytest.raises(UserError, match="supports only llama"):
        export_gguf(request.getfixturevalue(model_name), tmp_path / "m.gguf")
    assert not any(tmp_path.iterdir())


def test_bad_arguments(tiny_llama, tmp_path):
    with pytest.raises(UserError, match="unknown GGUF type 'q4_0'"):
        export_gguf(tiny_llama, tmp_path / "m.gguf", "q4_0")
    with pytest.raises(ModelError, match="not a model directory"):
        export_gguf(tmp_path / "missing", tmp_path / "m.gguf")


def test_failed_write_leaves_the_old_file(tiny_llama, tmp_path, monkeypatch):
    import gguf

    out = tmp_path / "m.gguf"
    out.write_bytes(b"previous")

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", fail)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(tiny_llama, out, "f16")
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


# --- a real model --------------------------------------------------------------------------------

@pytest.mark.slow
def test_smollm2_q8_0_generates_the_same(tmp_path):
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip(f"SmolLM2 not found at {SMOLLM2} (make models)")
    path = export_gguf(SMOLLM2, tmp_path / "smollm2-q8_0.gguf", "q8_0")
    (original, tokenizer), (exported, exported_tokenizer) = load_original(SMOLLM2), load_gguf(path)
    for text in TEXTS:
        assert exported_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"], text
    assert exported_tokenizer.chat_template == tokenizer.chat_template
    diff, same = compare(original, exported, chat_prompt(tokenizer), new_tokens=16)
    assert same, f"q8_0 generation differs (max logit difference {diff:.1%} of the largest logit)"
    assert diff < 0.1  # measured: 3.4% (f16: 0.1%)
