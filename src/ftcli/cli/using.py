"""Commands that use a finished run or a model: eval, generate, serve, export, import-gguf."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ftcli.cli.base import app, guarded
from ftcli.cli_args import (ExportAdapterOption, ExportBaseModelOption, ExportGgufOption, ExportGgufTypeOption,
                            ExportLicenseOption, ExportMergedOption, ExportOverwriteOption, ExportPrivateOption,
                            ExportPushToHubOption, ExportRunArg, ExportToOption, GenFileOption, GenModelOption,
                            GenOutputOption, GenPromptArg, GenStopOption, check_generate_arguments, export_kind)


@app.command("eval")
@guarded
def eval_(
    target: Annotated[Optional[str], typer.Argument(
        help="Run directory or recipe file (default: the latest finished run here).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON object on stdout.")] = False,
    no_base: Annotated[bool, typer.Option("--no-base", help="Skip the base model.")] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N examples.")] = None,
    compare: Annotated[Optional[list[str]], typer.Option(
        "--compare", help="Runs to show in one table (repeatable; uses each run's saved eval results).",
        show_default=False)] = None,
    harness: Annotated[Optional[list[str]], typer.Option(
        "--harness", help="lm-evaluation-harness tasks to run on both models too: names (hellaswag, needs the "
        "Hub) or task YAML files, comma-separated or repeated; needs `pip install 'ftcli[harness]'`.",
        show_default=False)] = None,
    harness_include: Annotated[Optional[list[str]], typer.Option(
        "--harness-include", help="A folder of your own lm-eval task YAML files, so --harness finds them by "
        "name (repeatable).", show_default=False)] = None,
    harness_chat_template: Annotated[Optional[bool], typer.Option(
        "--harness-chat-template/--harness-no-chat-template", help="Put harness prompts through the chat "
        "template (default: when the model has one, as ftcli prompts it).", show_default=False)] = None,
):
    """Metrics for the tuned model and its base model on the run's eval data."""
    import ftcli
    from ftcli.evaluation import reports

    if compare:
        from ftcli.evaluation.evaluate import compare_runs

        found = compare_runs(([target] if target else []) + compare)
        typer.echo(json.dumps([{k: r[k] for k in ("run", "tuned", "base") if k in r} for r in found])
                   if as_json else reports.compare_table(found))
        return
    results = ftcli.evaluate(target, base=not no_base, limit=limit, harness=harness,
                             harness_include=harness_include, harness_chat_template=harness_chat_template)
    if as_json:
        typer.echo(json.dumps({k: results[k] for k in ("run", "tuned", "base", "stderr") if k in results}))
        return
    typer.echo(reports.results_text(results))


@app.command()
@guarded
def generate(
    prompt: GenPromptArg = None,
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: latest run).")] = None,
    recipe: Annotated[Optional[Path], typer.Option(help="Recipe whose output_dir is the run.")] = None,
    base: Annotated[bool, typer.Option("--base", help="Use the run's base model instead.")] = False,
    model: GenModelOption = None,
    file: GenFileOption = None,
    output: GenOutputOption = None,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they are generated.")] = False,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="Chat on stdin until /exit "
                                              "or end of input, keeping the conversation.")] = False,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1)] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, help="0 → greedy (the default).")] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0.0, max=1.0)] = None,
    top_k: Annotated[Optional[int], typer.Option(min=1)] = None,
    repetition_penalty: Annotated[Optional[float], typer.Option(min=0.0)] = None,
    num_return_sequences: Annotated[Optional[int], typer.Option(
        "--num-return-sequences", "-n", min=1, help="Answers per prompt (needs a temperature > 0).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed (default: the run's train.seed).")] = None,
    stop: GenStopOption = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Prompts per batch with --file.")] = None,
    system_prompt: Annotated[Optional[str], typer.Option(help="Chat models: a system message.")] = None,
    template: Annotated[Optional[str], typer.Option(
        help="Plain models: a prompt template with {prompt}, e.g. 'Q: {prompt}\\nA:'.")] = None,
    few_shot: Annotated[Optional[str], typer.Option(
        help="A .jsonl file of {prompt, response} examples placed before the prompt.")] = None,
    tools: Annotated[Optional[str], typer.Option(
        help="Chat models: a .json file of tool (function) schemas handed to the chat template.")] = None,
):
    """Generate with a run's tuned model (or --base, or any --model); prints only the text on stdout.

    One PROMPT prints its answer (with -n N, the answers separated by lines `---`); --file prints
    one JSON object per prompt, in order: {"prompt": ..., "generated_text": ...} (a list with -n > 1).
    """
    from ftcli.generation.io import chat_loop, print_answers, read_prompts, write_results
    from ftcli.generation.load import load_for_generation

    check_generate_arguments(prompt, file, interactive, stream, output, run, recipe, base, model)
    prompts = read_prompts(file) if file is not None else None  # fail before loading a model

    loaded = load_for_generation(run or recipe, base=base, model=model, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, top_k=top_k,
                                 repetition_penalty=repetition_penalty,
                                 num_return_sequences=num_return_sequences, seed=seed, stop=stop,
                                 batch_size=batch_size, system_prompt=system_prompt, template=template,
                                 few_shot=few_shot, tools=tools)
    if interactive:
        chat_loop(loaded, stream=stream)
        return
    out = output.open("w", encoding="utf-8") if output is not None else sys.stdout
    try:
        if prompts is not None:
            count = write_results(loaded, prompts, out, batch_size)
            if output is not None:
                typer.echo(f"wrote {count} results to {output}", err=True)
        else:
            print_answers(loaded, prompt, out, stream=stream)
    finally:
        if output is not None:
            out.close()


@app.command()
@guarded
def serve(
    target: Annotated[Optional[str], typer.Argument(
        help="Run directory or recipe file (default: the latest finished run here).", show_default=False)] = None,
    model: GenModelOption = None,
    base: Annotated[bool, typer.Option("--base", help="Serve the run's base model instead.")] = False,
    host: Annotated[str, typer.Option(help="Address to listen on (another than 127.0.0.1 exposes the model).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", help="Require 'Authorization: Bearer KEY' on every request (default: $FTCLI_API_KEY).",
        show_default=False)] = None,
    engine: Annotated[str, typer.Option(help="transformers (ftcli's batched generate, with the page at /) or vllm "
                                             "(vLLM's own server in a child process; needs vLLM on a CUDA GPU).")]
    = "transformers",
    max_batch: Annotated[int, typer.Option(min=1, help="Most answers generated together in one batch.")] = 16,
    max_queue: Annotated[int, typer.Option(min=1, help="Most requests queued or running; more get 503.")] = 64,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most new tokens one answer may ask for.")] = 1024,
):
    """Serve a run's tuned model (or --base, or any --model) on an OpenAI-compatible API (/v1/chat/completions,
    /v1/completions, /v1/models), with a chat page at / (--engine vllm: through vLLM's own server, no page)."""
    from ftcli.serving.server import serve as run_server

    run_server(target, host=host, port=port, api_key=api_key, base=base, model=model, engine=engine,
               max_batch=max_batch, max_queue=max_queue, max_tokens=max_tokens)


@app.command()
@guarded
def export(
    run: ExportRunArg,
    merged: ExportMergedOption = False,
    adapter: ExportAdapterOption = False,
    gguf: ExportGgufOption = None,
    gguf_type: ExportGgufTypeOption = "f16",
    to: ExportToOption = None,
    overwrite: ExportOverwriteOption = False,
    push_to_hub: ExportPushToHubOption = None,
    private: ExportPrivateOption = False,
    license: ExportLicenseOption = None,
    base_model: ExportBaseModelOption = None,
):
    """Export a finished run: --merged or --adapter to a folder (--to), or --gguf FILE; each with a
    model card (README.md), optionally pushed with --push-to-hub."""
    import ftcli

    kind = export_kind(merged, adapter, gguf, gguf_type, to, push_to_hub)
    result = ftcli.export(run, gguf if gguf is not None else to, kind, gguf_type=gguf_type, overwrite=overwrite,
                          push_to_hub=push_to_hub, private=private, license=license, base_model=base_model)
    if result.path is not None:
        typer.echo(f"exported: {result.path}")
    if result.url:
        typer.echo(f"pushed: {result.url}")


@app.command("import-gguf")
@guarded
def import_gguf(
    gguf_file: Annotated[Path, typer.Argument(help="A .gguf model file.", show_default=False)],
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the safetensors model to.",
                                            show_default=False)],
):
    """Convert a GGUF model into a Hugging Face (safetensors) directory that loads fast."""
    from ftcli.modeling.load import import_gguf as convert

    typer.echo(f"converted: {convert(gguf_file, out_dir)}")
