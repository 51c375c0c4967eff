"""The serving room: `ftcli serve`, a model behind an OpenAI-compatible API and a page to talk to it.

The request and response shapes (`schemas`), OpenAI-style errors (`api_errors`), the bearer key
(`auth`), turning a request into prompts and generation settings (`requests`), the batching engine
that owns the model (`engine`, one row of text per answer in `rows`), the routes (`app`), the page
and what it shows of the run (`page`, `run_info`), and starting it all (`server`).

May import: generation, recipe, data, modeling and the shared modules. Never training.
"""
