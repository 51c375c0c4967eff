"""ftcli attention: what the model attends to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ftcli.cli.base import app, guarded


@app.command()
@guarded
def attention(
    # `[TARGET] TEXT`: an optional argument before a required one, which Typer cannot declare, so both
    # are optional here and one word alone is the text.
    first: Annotated[Optional[str], typer.Argument(
        metavar="TARGET", help="Run directory or recipe file (default: the latest finished run here).",
        show_default=False)] = None,
    second: Annotated[Optional[str], typer.Argument(metavar="TEXT", help="The text to look at (required).",
                                                    show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help="Look inside this model (directory or hub id) directly; no run needed.",
        show_default=False)] = None,
    base: Annotated[bool, typer.Option("--base", help="Use the run's base model instead.")] = False,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Write heatmaps here: layer_NN.png (a grid of heads) per layer and average.png.",
        show_default=False)] = None,
    token: Annotated[Optional[str], typer.Option(
        "--token", help="Only this token's row(s): what it attends to (e.g. fox).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help='Print {"tokens": [...], "attentions": [layer][head][query][key]} on stdout.')] = False,
    layer: Annotated[Optional[int], typer.Option(min=0, help="Only this layer (0-based).", show_default=False)]
    = None,
    head: Annotated[Optional[int], typer.Option(min=0, help="Only this head (0-based).", show_default=False)]
    = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Attended tokens listed per token.")] = 3,
    decoder_text: Annotated[Optional[str], typer.Option(
        "--decoder-text", help="Encoder-decoder models: also the decoder's self- and cross-attention for "
        "this target text (default: the encoder's self-attention over TEXT only).", show_default=False)] = None,
):
    """What the model attends to: for each token of TEXT, the tokens it attends to most (averaged over
    layers and heads), with --out heatmaps, with --json every weight (eager attention, float32, CPU)."""
    import ftcli
    from ftcli.errors import UserError
    from ftcli.inspection.attention_summary import check_selection, rows_of, summary

    if first is None:
        raise UserError("no text given", hint='ftcli attention [TARGET] "The quick brown fox"')
    target, text = (None, first) if second is None else (first, second)
    result = ftcli.attention(text, target, base=base, model=model, decoder_text=decoder_text)
    for part in result.parts.values():  # before any file is written
        check_selection(part, layer, head)
    rows = rows_of(result.attentions, token) if token is not None and as_json else None
    if out is not None:
        from ftcli.inspection.attention_plots import write_heatmaps

        written = write_heatmaps(result, out, layer=layer, head=head)
        typer.echo(f"wrote {len(written)} heatmaps to {out}", err=True)
    if as_json:
        typer.echo(json.dumps(result.as_json([layer] if layer is not None else None,
                                             [head] if head is not None else None, rows)))
        return
    typer.echo(summary(result, top=top, token=token, layer=layer, head=head))
