"""What `ftcli plan` prints: the run's numbers, its peak memory part by part against this machine's,
and what to change when it does not fit."""

from __future__ import annotations

from ftcli.progress import duration
from ftcli.training.memory_estimate import human_bytes as h


def _memory_lines(plan) -> list[str]:
    m, shape = plan.memory, plan.shape
    kinds = ", ".join(f"{kind} {h(size)}" for kind, size in m.weights_by_kind.items())
    now, other = ("with", "without") if m.checkpointing else ("without", "with")
    alternative = m.activations_plain if m.checkpointing else m.activations_checkpointed
    rows = [("weights", m.weights, kinds),
            ("trainable", m.trainable, "the adapter's parameters" if m.trainable else "full fine-tune: the weights"),
            ("gradients", m.gradients, ""),
            ("optimizer", m.optimizer, ""),
            ("activations", m.activations, f"{now} gradient checkpointing; {h(alternative)} {other} it"),
            ("logits", m.logits, f"loss on {shape.label_positions:,} positions")]
    if m.device == "cpu":
        rows += [("heap", m.heap, "freed activation buffers glibc keeps"),
                 ("process", m.baseline, "Python, torch, libraries and data, measured")]
    lines = [f"    {name:<12}{h(size):>9}" + (f"  ({note})" if note else "") for name, size, note in rows]
    if m.device == "cpu" and m.load + m.baseline >= m.total:
        lines.append(f"    (loading the model peaks higher than training: {h(m.load)} of weights at once)")
    verdict = "fits" if plan.fits else "does NOT fit"
    lines.append(f"    {'total':<12}{h(m.total):>9}  peak, of {h(plan.capacity)} {plan.capacity_of}: {verdict}")
    return lines


def render(plan, source) -> str:
    """The plan as text (`plan`: training.plan.Plan; `source`: the recipe path it came from)."""
    p, shape, m = plan.parameters, plan.shape, plan.memory
    share = f" ({100 * p['trainable'] / p['total']:.2f}%)" if p["total"] else ""
    data = (f"{plan.examples:,} examples, {plan.tokens:,} tokens per epoch; " if plan.examples is not None
            else "streamed (length unknown); ")
    cut = f", {shape.passes} passes per batch" if shape.passes > 1 else ""
    lines = [f"{source}: plan for {m.device.upper()}",
             f"  parameters: {p['total']:,} total, {p['trainable']:,} trainable{share}",
             f"  data:       {data}{plan.steps:,} optimizer steps",
             f"  largest pass: {shape.rows} x {shape.width} tokens{cut}",
             "  memory (estimated peak):", *_memory_lines(plan)]
    lines += [f"    note: {note}" for note in m.notes]
    if plan.suggestions:
        lines.append("  to fit, change (largest saving first):")
        lines += [f"    {change}  -> {h(total)}" for change, total in plan.suggestions]
    if plan.probe:
        pr = plan.probe
        lines.append(f"  time:       {duration(plan.time_s)} for {plan.steps:,} steps ({pr['step_s']:.2f} s/step over "
                     f"{pr['steps']} probed steps; probe peak {h(pr['peak_bytes'])})")
    else:
        lines.append("  time:       not probed (--probe N times N training steps here)")
    return "\n".join(lines)
