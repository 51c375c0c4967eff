"""What a person sees while it trains, in place of Trainer's printed dicts: a live bar on a terminal
(`step 20/60  epoch 0.33  loss 5.41  lr 4.3e-3  312 tok/s  eta 1m40s`), the same text as a log line
every logging_steps elsewhere, and a line per evaluation (`eval step 20  loss 4.90  perplexity 134.3`).
All on stderr, rank 0 only (`ftcli.progress`).

Tokens/s counts the non-padding tokens trained, from Trainer's own counter
(`include_num_input_tokens_seen="non_padding"`, set in `arguments`), over the last logging_steps
steps and without the time spent evaluating or saving checkpoints.
"""

from __future__ import annotations

import time
from collections import deque

from transformers import PrinterCallback, TrainerCallback

from ftcli.progress import Progress, number, progress_mode

# Trainer's timing fields: the line shows what was learned, not how long eval took.
_EVAL_SKIPPED = ("runtime", "samples_per_second", "steps_per_second", "model_preparation_time", "epoch")


def learning_rate(value: float) -> str:
    return f"{value:.1e}".replace("e-0", "e-").replace("e+0", "e+")  # 4.3e-3


def eval_line(step: int, metrics: dict) -> str:
    shown = [f"{key.removeprefix('eval_')} {number(value)}" for key, value in metrics.items()
             if key.startswith("eval_") and isinstance(value, (int, float))
             and key.removeprefix("eval_") not in _EVAL_SKIPPED]
    return "  ".join([f"eval step {step}"] + shown)


class TrainingDisplay(TrainerCallback):
    """The training bar (or lines), and one line per evaluation. A context manager, so the bar is
    closed and transformers' own bars are back even when training fails."""

    def __init__(self, mode: str | None = None):
        self.mode = mode or progress_mode()  # decided before training: a bad FTCLI_PROGRESS fails early
        self.progress: Progress | None = None
        self.eval_bar: Progress | None = None
        self.loss: float | None = None
        self.lr: float | None = None
        self._library_bars = None

    def take_over(self, trainer) -> None:
        """Stand in for Trainer's printer (arguments set disable_tqdm, so that is the one it added)."""
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(self)

    # --- training ---------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        self._quiet_library_bars()
        self.progress = Progress("step", state.max_steps, every=None, initial=state.global_step,
                                 leave=True, mode=self.mode)
        self._mark, self._trained = time.monotonic(), 0.0
        # (seconds spent training so far, tokens seen) at the last steps: tokens/s over that window.
        self._window = deque([(0.0, state.num_input_tokens_seen)], maxlen=int(state.logging_steps or 1) + 1)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.monotonic()
        self._trained += now - self._mark
        self._mark = now
        self._window.append((self._trained, state.num_input_tokens_seen))
        if self.progress is not None:
            self.progress.update(state.global_step, self.fields(state))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs or "loss" not in logs:
            return  # eval logs: on_evaluate; the final summary: finetune's own "done" line
        self.loss, self.lr = logs["loss"], logs.get("learning_rate")
        self.progress.say(self.fields(state))

    def fields(self, state) -> str:
        parts = [f"epoch {state.epoch:.2f}" if state.epoch is not None else ""]
        if self.loss is not None:
            parts.append(f"loss {number(self.loss)}")
        if self.lr is not None:
            parts.append(f"lr {learning_rate(self.lr)}")
        if rate := self.tokens_per_second():
            parts.append(f"{rate:,.0f} tok/s")
        return "  ".join(p for p in parts if p)

    def tokens_per_second(self) -> float | None:
        (start, first), (end, last) = self._window[0], self._window[-1]
        return (last - first) / (end - start) if end > start and last > first else None

    def on_save(self, args, state, control, **kwargs):
        self._mark = time.monotonic()  # checkpoint writing is not training time

    # --- evaluation during training ---------------------------------------------------------------

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.mode != "bar" or eval_dataloader is None or not hasattr(eval_dataloader, "__len__"):
            return  # lines mode: one line with the result is enough
        if self.eval_bar is None:
            self.eval_bar = Progress("eval batch", len(eval_dataloader), mode=self.mode)
        self.eval_bar.advance()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._close_eval_bar()
        if self.progress is not None and metrics:
            self.progress.write(eval_line(state.global_step, metrics))
        self._mark = time.monotonic()  # evaluating is not training time

    def _close_eval_bar(self) -> None:
        if self.eval_bar is not None:
            self.eval_bar.close()
            self.eval_bar = None

    # --- the end ----------------------------------------------------------------------------------

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        self._close_eval_bar()
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        self._restore_library_bars()

    def _quiet_library_bars(self) -> None:
        # transformers draws a bar for every checkpoint it writes ("Writing model shards"): in the
        # middle of ours it tears the line on a terminal and fills a log file with \r.
        from transformers.utils import logging as hf_logging

        if self._library_bars is None:
            self._library_bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()

    def _restore_library_bars(self) -> None:
        from transformers.utils import logging as hf_logging

        if self._library_bars:
            hf_logging.enable_progress_bar()
        self._library_bars = None

    def __enter__(self) -> TrainingDisplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
