"""The export room (named `exporting`: a subpackage `ftcli.export` would replace the public
`ftcli.export()` function on import): a finished run as a merged model, an adapter or a GGUF file
(`export`, `folders`, `gguf`, `gguf_tokenizer`), its model card (`model_card`, `card_sections`), and
pushing to the Hub (`hub`).

May import: recipe, data, modeling and the shared modules. Never training, evaluation or generation.
"""
