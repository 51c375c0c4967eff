"""The modeling room: models and tokenizers loaded (a directory, a Hub id, a GGUF file: `load`), built
from a config (`from_config`), tokenizers trained on a run's text (`tokenizer_training`), LoRA
(`lora`, with its faster dropout `fast_dropout`), and the final model saved (`save`).

May import: recipe, data, and the shared errors, io, runs, ranks, progress, versions. Never training,
evaluation, generation or exporting.
"""
