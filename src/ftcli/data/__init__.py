"""The data room: rows from files, folders, the Hub or parallel text (`readers`, `sources`), their
format (`row_formats`; chat rows in `chats`), cleaning, train/eval splits and weighted mixes
(`splits`), lazily read data (`streaming`), prompt templates (`templates`), tokenization and batching
(`tokenize`, `collators`), the two caches (`rows_cache`, `token_cache`), the examples a run trains on
(`prepare`) and what `ftcli data preview` shows (`preview`).

May import: recipe, and the shared errors, io, runs, ranks, progress, versions. Never modeling,
training, evaluation, generation or exporting: they build on this room.
"""
