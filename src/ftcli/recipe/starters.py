"""`ftcli init TASK`: a commented starter recipe for each task, valid as written.

Each starter names the repo's own example data and, where one exists, the example model `make models`
fetches, so `ftcli init causal-lm -o r.yaml && ftcli finetune r.yaml` runs offline from a checkout.
Only the keys a user is likely to change are written; `ftcli schema` lists the rest. A test loads every
starter with the strict recipe loader, so none can drift out of the schema.
"""

from __future__ import annotations

import json

from ftcli.errors import UserError, suggest

# The model each starter names when --model is not given: the example models of `make models` where
# one fits the task; seq2seq has none on PyPI, so the Hub's t5-small (users have internet).
_DEFAULT_MODELS = {
    "causal-lm": "models/smollm2-135m-instruct",
    "dpo": "models/smollm2-135m-instruct",
    "sequence-classification": "models/all-minilm-l6-v2",
    "masked-lm": "models/all-minilm-l6-v2",
    "seq2seq": "google-t5/t5-small",
    "reward-model": "models/smollm2-135m-instruct",
}

_HEAD = """\
# yaml-language-server: $schema=ftcli.schema.json
# (editors check this file against that schema; write it once with: ftcli schema --json > ftcli.schema.json)
# {title}
# Starter written by `ftcli init {name}`. Every key and its default: `ftcli schema`.
#   ftcli validate {{this file}} && ftcli finetune {{this file}} && ftcli eval
"""

_LORA = """\
lora:                          # absent → a full fine-tune
  r: 8
  alpha: 16
  target_modules: all-linear
"""


def _head(task: str, comment: str = "") -> str:
    return f"task: {task}\nmodel:\n  name_or_path: {{model}}{comment}\n"


def _pairs(max_length: int = 256) -> str:
    return f"""\
data:
  train: data/pirate-preferences/train.jsonl   # {{{{"prompt", "chosen", "rejected"}}}} rows
  eval_fraction: 0.1
  max_length: {max_length}
"""


def _train(output: str, epochs: int, batch_size: int, learning_rate: str) -> str:
    return f"""\
train:
  output_dir: runs/{output}
  epochs: {epochs}
  batch_size: {batch_size}
  learning_rate: {learning_rate}
  logging_steps: 10
"""


_STARTERS = {
    "causal-lm": ("Supervised fine-tuning (SFT) of a causal LM with LoRA: the loss is on the responses only.",
                  _head("causal-lm") + """\
data:
  train: data/pirate/train.jsonl   # prompt/response, alpaca, chat messages or plain text rows
  eval_fraction: 0.1               # held out for eval when data.eval is absent
  max_length: 256                  # longer examples are truncated
""" + _LORA + _train("causal-lm", 1, 8, "1.0e-4") + """\
generate:
  max_new_tokens: 64               # `ftcli generate` defaults
"""),
    "dpo": ("Preference tuning (DPO) with LoRA on chosen/rejected pairs.",
            _head("causal-lm") + _pairs() + _LORA + """\
preference:
  method: dpo                      # dpo | ipo | kto | orpo | simpo
  beta: 0.1                        # how far the tuned model may move from the reference
""" + _train("dpo", 1, 4, "5.0e-5")),
    "sequence-classification": ("Text classification: a new classification head on a pretrained encoder.",
                                _head("sequence-classification") + """\
data:
  train: data/reviews/train.jsonl  # {{"text": ..., "label": ...}} rows; labels may be strings
  text_field: text
  label_field: label
  eval_fraction: 0.2
  max_length: 128
""" + _train("sequence-classification", 3, 16, "5.0e-5") + """\
eval:
  metrics: [accuracy, f1]
"""),
    "masked-lm": ("Masked-language-model training (BERT-style) on plain text.", _head("masked-lm") + """\
data:
  train: data/stories/train.txt    # a .txt file is one example per line
  mlm_probability: 0.15            # share of tokens masked
  eval_fraction: 0.1
  max_length: 128
""" + _train("masked-lm", 1, 16, "5.0e-5")),
    "seq2seq": ("Sequence-to-sequence fine-tuning (T5, BART, Marian...): source → target.",
                _head("seq2seq", "            # a Hub id needs internet; or --model a local directory") + """\
data:
  train: data/pirate/train.jsonl   # prompt → source text, response → target text
  prompt_field: prompt
  response_field: response
  source_prefix: ''                # e.g. 'translate English to German: '
  eval_fraction: 0.1
  max_length: 128
""" + _train("seq2seq", 1, 8, "3.0e-4")),
    "reward-model": ("A reward model: one score per reply, trained on chosen/rejected pairs (TRL's RewardTrainer).",
                     _head("reward-model") + _pairs() + _LORA + _train("reward-model", 1, 4, "5.0e-5")),
}

STARTERS = tuple(_STARTERS)


def starter_recipe(name: str, model: str | None = None) -> str:
    """The commented starter recipe for a task (or `dpo`), naming `model` when given."""
    if name not in _STARTERS:
        raise UserError(f"no starter for '{name}'{suggest(name, STARTERS)}; choose one of {', '.join(STARTERS)}")
    title, body = _STARTERS[name]
    # JSON is YAML: a quoted string is safe for any path (spaces, colons, '#').
    chosen = json.dumps(model) if model else _DEFAULT_MODELS[name]
    return _HEAD.format(title=title, name=name) + body.format(model=chosen)
