"""The generation room: a model ready to answer (`load`), prompts in exactly the training format
(`prompting`), batched generation (`batched`), the library's `generate` (`generate`), and the CLI's
prompts, streaming, chat and JSON-lines results (`io`).

May import: recipe, data, modeling and the shared modules. Never training, evaluation or exporting.
"""
