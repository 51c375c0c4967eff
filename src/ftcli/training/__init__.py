"""The training room: the one training path (`finetune`), its TrainingArguments (`arguments`), the
Trainer and its callbacks (`trainer`, `callbacks`), checkpoints and resuming (`checkpoints`,
`resume`), the exact speed levers (`lm_loss`, `micro_batches`, `sampling`), several processes
(`distributed`), experiment tracking (`tracking`), sharded final models (`final_model`), and what is
checked and prepared before any training (`preflight`: validate, data preview).

May import every room below it (recipe, data, modeling), the metrics and model cards it records
(evaluation.metrics, exporting.model_card), and the shared modules. Nothing imports training but the
CLI and the public API.
"""
