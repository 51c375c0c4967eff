"""`ftcli attention`: the weights are the model's own eager `output_attentions`, for encoders, decoders
and encoder-decoders, from a run (any task), its base, or a model directory; summary, --token, heatmaps."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from conftest import repo_rows, write_jsonl
from ftcli.cli import app

TEXT = "the dog runs on the street"


def run_cli(*args):
    return CliRunner().invoke(app, ["attention", *map(str, args)])


def as_json(*args) -> dict:
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout holds only the JSON object


def reference(model_class: str, path, text: str = TEXT, **inputs):
    """The model's own attentions, computed here as a user would: eager attention, float32."""
    import transformers

    model = getattr(transformers, model_class).from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        output = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                       output_attentions=True, **inputs)
    return tokenizer, encoded["input_ids"][0].tolist(), output


def stacked(attentions) -> torch.Tensor:
    return torch.stack([layer[0] for layer in attentions])  # [layer, head, query, key]


def check_weights(found: list, expected: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(found)
    assert weights.shape == expected.shape
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5)  # each row a distribution
    return weights


def test_decoder_weights_are_the_models_own_and_causal(tiny_llama):
    from transformers import AutoConfig

    out = as_json("--model", tiny_llama, TEXT)
    tokenizer, ids, output = reference("AutoModelForCausalLM", tiny_llama)
    assert out["tokens"] == tokenizer.convert_ids_to_tokens(ids)
    config = AutoConfig.from_pretrained(tiny_llama)
    n = len(ids)
    assert (len(out["attentions"]), len(out["attentions"][0]), len(out["attentions"][0][0]),
            len(out["attentions"][0][0][0])) == (config.num_hidden_layers, config.num_attention_heads, n, n)
    weights = check_weights(out["attentions"], stacked(output.attentions))
    assert torch.all(weights.triu(diagonal=1) == 0)  # no token sees a later one
    assert out["task"] == "causal-lm"


def test_encoder_weights_with_special_tokens(tiny_bert):
    out = as_json("--model", tiny_bert, TEXT)
    tokenizer, ids, output = reference("AutoModel", tiny_bert)
    assert out["tokens"] == tokenizer.convert_ids_to_tokens(ids)
    assert out["tokens"][0] == "[CLS]" and out["tokens"][-1] == "[SEP]"
    weights = check_weights(out["attentions"], stacked(output.attentions))
    assert weights.triu(diagonal=1).sum() > 0.1  # bidirectional: tokens attend to later ones too


def test_t5_encoder_by_default_and_decoder_and_cross_with_decoder_text(tiny_t5):
    out = as_json("--model", tiny_t5, TEXT)
    assert out["tokens"][-1] == "</s>" and "decoder_attentions" not in out

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    decoder_ids = torch.tensor([[0] + tokenizer("der hund läuft", add_special_tokens=False)["input_ids"]])
    _, ids, output = reference("AutoModelForSeq2SeqLM", tiny_t5, decoder_input_ids=decoder_ids)
    check_weights(out["attentions"], stacked(output.encoder_attentions))

    both = as_json("--model", tiny_t5, TEXT, "--decoder-text", "der hund läuft")
    assert both["attentions"] == both["encoder_attentions"] == out["attentions"]
    assert both["encoder_tokens"] == both["tokens"] == tokenizer.convert_ids_to_tokens(ids)
    assert both["decoder_tokens"] == tokenizer.convert_ids_to_tokens(decoder_ids[0].tolist())
    decoder = check_weights(both["decoder_attentions"], stacked(output.decoder_attentions))
    assert torch.all(decoder.triu(diagonal=1) == 0)
    cross = check_weights(both["cross_attentions"], stacked(output.cross_attentions))
    assert cross.shape[2:] == (decoder_ids.shape[1], len(ids))

    summary = run_cli("--model", tiny_t5, TEXT, "--decoder-text", "der hund läuft", "--token", "hund")
    assert summary.exit_code == 0, summary.output
    assert "cross-attention" in summary.stdout and "decoder self-attention" in summary.stdout
    assert "encoder self-attention" not in summary.stdout  # "hund" is only in the decoder text


def test_summary_and_token_rows(tiny_llama):
    """The summary's top tokens are the largest averaged weights; --token keeps only its rows."""
    full = as_json("--model", tiny_llama, "so the dog sees the cat")
    labels = [t.lstrip("Ġ") for t in full["tokens"]]
    mean = torch.tensor(full["attentions"]).mean(dim=(0, 1))
    rows = [i for i, label in enumerate(labels) if label == "the"]
    assert len(rows) == 2  # two "the"s: two rows

    result = run_cli("--model", tiny_llama, "so the dog sees the cat", "--token", "the", "--top", "2")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "->" in line]
    assert len(lines) == 2 and all(line.split()[0].startswith("the[") for line in lines)
    for row, line in zip(rows, lines):
        top = mean[row].topk(2)
        shown = line.split("->")[1].split()
        assert [float(v) for v in shown[1::2]] == [round(float(v), 2) for v in top.values]

    filtered = as_json("--model", tiny_llama, "so the dog sees the cat", "--token", "the")
    assert filtered["rows"] == rows
    assert torch.equal(torch.tensor(filtered["attentions"]), torch.tensor(full["attentions"])[:, :, rows])

    one = as_json("--model", tiny_llama, "so the dog sees the cat", "--layer", "1", "--head", "0")
    assert torch.equal(torch.tensor(one["attentions"]), torch.tensor(full["attentions"])[1:2, 0:1])


def test_heatmaps_are_real_images(tiny_llama, tmp_path):
    import matplotlib.image

    result = run_cli("--model", tiny_llama, TEXT, "--out", tmp_path / "maps")
    assert result.exit_code == 0, result.output
    assert "->" in result.stdout  # the summary still prints
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["average.png", "layer_00.png", "layer_01.png"]
    for name in ("average.png", "layer_00.png"):
        image = matplotlib.image.imread(tmp_path / "maps" / name)
        assert image.shape[0] >= 200 and image.shape[1] >= 200
        assert image[..., :3].std() > 0.05  # drawn, not blank

    long = " ".join(["the dog runs on the street"] * 20)  # > 64 tokens: the images show the first 64
    result = run_cli("--model", tiny_llama, long, "--out", tmp_path / "long", "--layer", "0", "--head", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "long").iterdir()) == ["average.png", "layer_00.png"]
    assert matplotlib.image.imread(tmp_path / "long" / "layer_00.png").shape[1] <= 1200


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory, tiny_bert):
    """A sequence-classification run (2 steps): not a generation target, but attention looks inside it."""
    import yaml

    root = tmp_path_factory.mktemp("attention-run")
    data = write_jsonl(root / "reviews.jsonl", repo_rows("reviews", 32))
    recipe = {"task": "sequence-classification", "model": {"name_or_path": str(tiny_bert)},
              "data": {"train": str(data), "eval_fraction": 0, "max_length": 32},
              "train": {"output_dir": str(root / "runs" / "cls"), "max_steps": 2, "batch_size": 16,
                        "learning_rate": 3e-2}}
    (root / "cls.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = CliRunner().invoke(app, ["finetune", str(root / "cls.yaml")])
    assert result.exit_code == 0, result.output
    return root


def test_run_recipe_latest_and_base(cls_run, tiny_bert, monkeypatch):
    run = cls_run / "runs" / "cls"
    _, _, tuned = reference("AutoModelForSequenceClassification", run / "model")
    _, _, base = reference("AutoModel", tiny_bert)
    out = as_json(run, TEXT)
    assert out["task"] == "sequence-classification"
    check_weights(out["attentions"], stacked(tuned.attentions))
    assert as_json(cls_run / "cls.yaml", TEXT)["attentions"] == out["attentions"]
    monkeypatch.chdir(cls_run)
    assert as_json(TEXT)["attentions"] == out["attentions"]  # the latest finished run here
    based = as_json("--base", TEXT)
    check_weights(based["attentions"], stacked(base.attentions))
    assert not torch.allclose(torch.tensor(based["attentions"]), torch.tensor(out["attentions"]))


def test_a_model_without_attention_weights_is_a_clear_error(tiny_llama, tmp_path):
    """Mamba (a state-space model) loads with eager attention but has no attention weights to give."""
    import shutil

    from transformers import MambaConfig, MambaForCausalLM

    folder = tmp_path / "mamba"
    config = MambaConfig(vocab_size=400, hidden_size=16, num_hidden_layers=1, state_size=4)
    MambaForCausalLM(config).save_pretrained(folder)
    for tokenizer_file in tiny_llama.glob("tokenizer*"):
        shutil.copy(tokenizer_file, folder)
    result = run_cli("--model", folder, TEXT)
    assert result.exit_code == 2
    assert "MambaForCausalLM does not return attention weights" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--token", "dgo"], "close matches: dog"),
    (["--layer", "7"], "layers 0..1"),
    (["--head", "5"], "heads 0..1"),
    (["--decoder-text", "der hund"], "--decoder-text is for encoder-decoder models"),
])
def test_user_errors(tiny_bert, args, message):
    result = run_cli("--model", tiny_bert, TEXT, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_model_and_a_run_together_is_refused(tiny_bert):
    result = run_cli("runs/x", TEXT, "--model", tiny_bert)
    assert result.exit_code == 2 and "cannot be combined" in result.output
    result = run_cli("--model", tiny_bert)
    assert result.exit_code == 2 and "no text given" in result.output


def test_help_imports_neither_torch_nor_matplotlib():
    code = textwrap.dedent("""\
        import sys
        from ftcli.cli import app
        try:
            app(["attention", "--help"], prog_name="ftcli", standalone_mode=False)
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        print("HEAVY=" + ",".join(m for m in ("torch", "transformers", "matplotlib") if m in sys.modules))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "[TARGET] [TEXT]" in proc.stdout
    assert proc.stdout.strip().endswith("HEAVY=")
