"""model.from_config: recipe checks, tokenizer training, seeded model building, and whole runs of a
model trained from scratch (its eval's base is the untrained initialisation)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import ftcli
from conftest import REPO, recipe_problems, write_jsonl
from ftcli.recipe import parse_recipe, resolve_paths

TINY_LLAMA = {"architecture": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 128,
              "tie_word_embeddings": True}


def stories(n: int) -> list[str]:
    return (REPO / "data" / "stories" / "train.txt").read_text(encoding="utf-8").splitlines()[:n]


def recipe_dict(task="causal-lm", from_config=None, tokenizer=None, **sections) -> dict:
    raw = {"task": task, "model": {"from_config": dict(from_config or TINY_LLAMA)},
           "tokenizer": tokenizer or {"train": {"vocab_size": 300}}, "data": {"train": "data.txt"}}
    raw.update(sections)
    return raw


problems = recipe_problems


# ---------------------------------------------------------------- recipe checks


def test_a_misspelled_architecture_suggests_the_model_type():
    assert problems(recipe_dict(from_config={"architecture": "lama"})) == [
        "model.from_config.architecture: 'lama' is not a transformers model type — did you mean llama?"]


def test_an_unknown_config_field_suggests_the_right_one():
    (msg,) = problems(recipe_dict(from_config={**TINY_LLAMA, "hidden_sizee": 64}))
    assert msg == "model.from_config.hidden_sizee: unknown key for LlamaConfig — did you mean hidden_size?"


def test_the_architecture_is_required():
    (msg,) = problems(recipe_dict(from_config={"hidden_size": 64}))
    assert msg.startswith("model.from_config.architecture: required key is missing")


@pytest.mark.parametrize("key", ["vocab_size", "eos_token_id", "pad_token_id"])
def test_vocabulary_and_special_token_ids_come_from_the_tokenizer(key):
    (msg,) = problems(recipe_dict(from_config={**TINY_LLAMA, key: 5}))
    assert msg.startswith(f"model.from_config.{key}: set by ftcli") and "remove it" in msg


@pytest.mark.parametrize("task, architecture, expected", [
    ("seq2seq", "llama", "llama has no seq2seq model in transformers (use one that does, e.g. t5, bart)"),
    ("causal-lm", "bert", "bert is an encoder (every token sees the whole text), not a causal LM"),
    ("masked-lm", "t5", "t5 has no masked-lm model in transformers"),
    ("masked-lm", "bart", "bart is an encoder-decoder; masked-lm trains an encoder"),
])
def test_the_architecture_must_fit_the_task(task, architecture, expected):
    (msg,) = problems(recipe_dict(task, from_config={"architecture": architecture}))
    assert msg.startswith(f"model.from_config.architecture: {expected}"), msg


def test_transformers_own_config_checks_are_reported():
    (msg,) = problems(recipe_dict(from_config={**TINY_LLAMA, "hidden_size": 30, "num_attention_heads": 4}))
    assert msg == "model.from_config: The hidden size (30) is not a multiple of the number of attention heads (4)."
    (msg,) = problems(recipe_dict(from_config={**TINY_LLAMA, "hidden_size": "big"}))
    assert msg.startswith("model.from_config.hidden_size: Field 'hidden_size' expected int")


def test_config_problems_are_reported_with_every_other_problem():
    raw = recipe_dict(from_config={"architecture": "llama", "num_layers": 2, "vocab_size": 9},
                      train={"batch_size": 0})
    found = problems(raw)
    assert found[0].startswith("train.batch_size:")
    assert "model.from_config.num_layers: unknown key for LlamaConfig — did you mean num_hidden_layers?" in found
    assert any(p.startswith("model.from_config.vocab_size:") for p in found)


@pytest.mark.parametrize("task, fields", [
    ("causal-lm", {"architecture": "gpt2", "hidden_size": 64, "n_layer": 2}),  # an alias and a field
    ("causal-lm", {"architecture": "bert", "is_decoder": True}),  # an encoder made a decoder
    ("masked-lm", {"architecture": "bert", "hidden_size": 64, "tie_word_embeddings": True}),
    ("seq2seq", {"architecture": "t5", "d_model": 64, "num_layers": 2}),
    ("sequence-classification", {"architecture": "llama", "hidden_size": 64}),
])
def test_valid_configs_pass(task, fields):
    assert parse_recipe(recipe_dict(task, from_config=fields)).model.from_config == fields


def test_a_pretrained_model_recipe_does_not_load_transformers():
    code = textwrap.dedent("""\
        import sys
        from ftcli.recipe import parse_recipe
        parse_recipe({"task": "causal-lm", "model": {"name_or_path": "m"}, "data": {"train": "a.jsonl"}})
        print("HEAVY=" + ",".join(m for m in ("torch", "transformers") if m in sys.modules))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stdout


# ---------------------------------------------------------------- tokenizer training


def trained(task="causal-lm", architecture="llama", kind="bpe", texts=None):
    from ftcli.recipe import TokenizerTraining
    from ftcli.modeling.tokenizer_training import special_tokens_for, train_tokenizer

    return train_tokenizer(texts or stories(300), TokenizerTraining(vocab_size=300, type=kind),
                           special_tokens_for(task, architecture))


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_the_same_text_trains_the_same_tokenizer(kind):
    # tokenizers' Unigram trainer alone gives a different vocabulary order on every call.
    first, second = trained(kind=kind), trained(kind=kind)
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert len(first) == 300 if kind == "bpe" else 100 < len(first) <= 300  # (unigram stops when its text runs out)
    other = trained(kind=kind, texts=stories(300)[::-1][:150])
    assert other.backend_tokenizer.to_str() != first.backend_tokenizer.to_str()


def test_a_decoder_tokenizer_ends_texts_and_pads_apart():
    tok = trained("causal-lm", "llama")
    assert tok.bos_token == tok.eos_token == "<|endoftext|>" and tok.pad_token == "<pad>"
    ids = tok("Tom went to the park.")["input_ids"]
    assert tok.decode(ids) == "Tom went to the park."  # byte-level: spaces and case survive
    assert tok.mask_token is None


def test_an_encoder_tokenizer_wraps_text_in_cls_and_sep():
    tok = trained("masked-lm", "bert")
    tokens = tok.convert_ids_to_tokens(tok("Tom went home.")["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert (tok.pad_token_id, tok.mask_token) == (0, "[MASK]")


def test_a_seq2seq_tokenizer_appends_eos_and_pads_with_id_0():
    tok = trained("seq2seq", "t5", kind="unigram")
    ids = tok("Tom went home.")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.eos_token == "</s>"
    assert tok.pad_token_id == 0 and tok.bos_token is None


def test_a_trained_tokenizer_reloads_the_same(tmp_path):
    from transformers import AutoTokenizer

    tok = trained("masked-lm", "bert", kind="unigram")
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Lily found a shiny stone by the pond."
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.mask_token_id == tok.mask_token_id


def test_training_texts_take_every_text_field_of_the_format():
    from ftcli.modeling.tokenizer_training import training_texts

    recipe = parse_recipe(recipe_dict())
    assert training_texts([{"prompt": "p", "response": "r", "id": "x"}], recipe, "prompt_response") == ["p", "r"]
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert training_texts([{"messages": chat}], recipe, "messages") == ["hi", "hello"]
    assert training_texts([{"instruction": "i", "input": "", "output": "o"}], recipe, "alpaca") == ["i", "o"]
    assert training_texts([{"prompt": chat[:1], "completion": chat[1:]}, {"prompt": "p", "completion": "c"}], recipe,
                          "prompt_completion") == ["hi", "hello", "p", "c"]
    sharegpt = {"system": "s", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}
    assert training_texts([sharegpt], recipe, "sharegpt") == ["s", "hi", "yo"]
    assert training_texts([{"text": "t", "label": "pos"}], recipe, "classification") == ["t"]
    assert training_texts([{"a": "x", "b": 3}], recipe, "some-new-format") == ["x"]


# ---------------------------------------------------------------- building the model


def test_the_same_seed_builds_the_same_weights():
    import torch
    from transformers import AutoModelForCausalLM

    from ftcli.modeling.from_config import new_model

    tok = trained()
    a, b = (new_model(AutoModelForCausalLM, TINY_LLAMA, tok, seed=7) for _ in range(2))
    c = new_model(AutoModelForCausalLM, TINY_LLAMA, tok, seed=8)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    config = a.config
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (len(tok), 32, 2)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)


def test_a_classifier_built_from_config_gets_the_data_labels():
    from ftcli.modeling.from_config import new_config

    tok = trained("sequence-classification", "bert")
    config = new_config({"architecture": "bert", "hidden_size": 32, "num_attention_heads": 2}, tok,
                        label2id={"negative": 0, "positive": 1})
    assert config.num_labels == 2 and config.id2label == {0: "negative", 1: "positive"}
    assert config.pad_token_id == tok.pad_token_id == 0 and config.vocab_size == len(tok)


def test_an_encoder_decoder_starts_decoding_from_pad():
    from transformers import AutoModelForSeq2SeqLM

    from ftcli.modeling.from_config import new_model

    tok = trained("seq2seq", "t5")
    fields = {"architecture": "t5", "d_model": 32, "d_ff": 64, "d_kv": 16, "num_layers": 1, "num_heads": 2}
    config = new_model(AutoModelForSeq2SeqLM, fields, tok, seed=0).config
    assert config.decoder_start_token_id == config.pad_token_id == 0
    assert config.eos_token_id == tok.eos_token_id and config.vocab_size == len(tok)


# ---------------------------------------------------------------- whole runs


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def run_recipe(workdir: Path, name: str, **raw) -> Path:
    recipe = resolve_paths(parse_recipe({**raw, "train": {"output_dir": str(workdir / "runs" / name), "max_steps": 40,
                                            "batch_size": 16, "learning_rate": 1e-2, "logging_steps": 10,
                                            "save_total_limit": 1, **raw.get("train", {})}}))
    return ftcli.finetune(recipe)


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory) -> Path:
    """A tiny Llama trained from scratch, with its own tokenizer, on 240 stories."""
    workdir = tmp_path_factory.mktemp("from-config")
    data = write_lines(workdir / "stories.txt", stories(240))
    return run_recipe(workdir, "pretrain", **recipe_dict(data={"train": str(data), "eval_fraction": 0.1,
                                                                "max_length": 64}))


def test_a_model_trained_from_scratch_has_the_configured_shape(pretrained_run):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(pretrained_run / "model")
    tokenizer = AutoTokenizer.from_pretrained(pretrained_run / "model")
    assert config.model_type == "llama" and config.hidden_size == 32 and config.num_hidden_layers == 2
    assert config.vocab_size == len(tokenizer) == 300
    assert config.eos_token_id == tokenizer.eos_token_id and config.pad_token_id == tokenizer.pad_token_id


def test_eval_compares_the_untrained_init_with_the_trained_model(pretrained_run):
    results = ftcli.evaluate(pretrained_run)
    base, tuned = results["base"], results["tuned"]
    print(f"perplexity: untrained {base['perplexity']:.1f} -> trained {tuned['perplexity']:.1f}")
    # An untrained model guesses about uniformly over its 300 tokens.
    assert 100 < base["perplexity"] < 900
    assert tuned["perplexity"] < base["perplexity"] / 5
    assert results["base_model"].startswith("untrained llama")
    assert ftcli.evaluate(pretrained_run)["base"] == base  # the same init every time


def test_generate_works_on_the_trained_model_and_its_untrained_base(pretrained_run):
    tuned = ftcli.generate("Once upon a time", pretrained_run, max_new_tokens=12)
    base = ftcli.generate("Once upon a time", pretrained_run, base=True, max_new_tokens=12)
    assert isinstance(tuned, str) and isinstance(base, str)
    assert tuned != base  # --base is the untrained model, not the trained one


def test_a_model_trained_from_scratch_can_be_fine_tuned(pretrained_run, tmp_path):
    rows = [{"prompt": f"Where did {name} go?", "response": f"{name} went to the {place}."}
            for name in ("Tom", "Lily", "Max", "Mia") for place in ("park", "beach", "farm", "forest", "river")]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    # `name_or_path:` the run itself, as the issue puts it: the run resolves to its model/ folder.
    run = run_recipe(tmp_path, "sft", task="causal-lm", model={"name_or_path": str(pretrained_run)},
                     data={"train": str(data), "template": "plain", "eval_fraction": 0.2}, train={"max_steps": 10})
    assert yaml.safe_load((run / "recipe.yaml").read_text())["model"]["name_or_path"] == str(pretrained_run / "model")
    results = ftcli.evaluate(run)
    assert results["base_model"] == str(pretrained_run / "model")
    assert results["tuned"]["loss"] < results["base"]["loss"]


def test_an_existing_tokenizer_can_be_reused(tmp_path, tiny_llama_plain):
    from transformers import AutoConfig, AutoTokenizer

    data = write_lines(tmp_path / "stories.txt", stories(64))
    run = run_recipe(tmp_path, "reuse", **recipe_dict(tokenizer={"name_or_path": str(tiny_llama_plain)},
                                                       data={"train": str(data), "eval_fraction": 0},
                                                       train={"max_steps": 4}))
    source, saved = AutoTokenizer.from_pretrained(tiny_llama_plain), AutoTokenizer.from_pretrained(run / "model")
    assert saved.get_vocab() == source.get_vocab()
    assert AutoConfig.from_pretrained(run / "model").vocab_size == len(source)
    assert f"name_or_path: {tiny_llama_plain}" in (run / "recipe.yaml").read_text()


def test_the_shipped_pretrain_recipe_lowers_perplexity(workdir):
    """recipes/pretrain-tiny-llama.yaml as shipped (its model, tokenizer and data), cut to 40 steps:
    held-out perplexity of the trained model well below that of its untrained initialisation
    (798 -> 45). Not slow: ~20 s on 2 cores (tokenizer training takes 1 s, the 40 steps ~10 s)."""
    recipe = ftcli.load_recipe(REPO / "recipes" / "pretrain-tiny-llama.yaml",
                               ["train.max_steps=40", f"train.output_dir={workdir / 'pretrain'}",
                                f"data.train={REPO / 'data' / 'stories' / 'train.txt'}"])
    run = ftcli.finetune(recipe)
    scores = ftcli.evaluate(run, limit=64)
    print(f"pretrain recipe, 40 steps: perplexity {scores['base']['perplexity']:.1f} -> "
          f"{scores['tuned']['perplexity']:.1f}")
    assert scores["tuned"]["perplexity"] < scores["base"]["perplexity"] / 10
