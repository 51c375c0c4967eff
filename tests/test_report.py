"""The run report: every finished run writes report.html and loss.png, `ftcli eval` adds its table,
`ftcli report` rebuilds one run's or compares several, and the page renders offline in headless
Chromium (screenshot kept under $FTCLI_TEST_ARTIFACTS, default tests/artifacts/report-page.png)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from browser import require_chromium
from conftest import repo_rows, write_jsonl
from serve_fixtures import keep_artifact

# matplotlib's default first and second line colours (C0 blue, C1 orange): the runs' curves.
BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)


def train_run(root: Path, tiny_llama: Path, name: str, learning_rate: float) -> Path:
    """A tiny chat model fine-tuned for 20 steps, evaluated during training every 10."""
    from ftcli.cli import app

    data = write_jsonl(root / "train.jsonl", repo_rows("pirate", 60))
    recipe = {"task": "causal-lm", "model": {"name_or_path": str(tiny_llama)},
              "data": {"train": str(data), "eval_fraction": 0.2, "max_length": 64},
              "train": {"output_dir": str(root / name), "max_steps": 20, "batch_size": 8,
                        "learning_rate": learning_rate, "logging_steps": 2, "eval_strategy": "steps",
                        "eval_steps": 10}}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = CliRunner().invoke(app, ["finetune", str(root / f"{name}.yaml")])
    assert result.exit_code == 0, result.output
    assert f"report: {root / name / 'report.html'}" in result.output  # finetune says where the page is
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
    """Run A (report read before and after `ftcli eval`) and run B (another learning rate, not evaluated)."""
    from ftcli.cli import app

    root = tmp_path_factory.mktemp("report")
    a = train_run(root, tiny_llama, "run-a", 5e-3)
    before_eval = (a / "report.html").read_text(encoding="utf-8")
    result = CliRunner().invoke(app, ["eval", str(a), "--limit", "6"])
    assert result.exit_code == 0, result.output
    return {"a": a, "b": train_run(root, tiny_llama, "run-b", 1e-3), "before_eval": before_eval}


def pixels(png: bytes):
    import matplotlib.image

    return (matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255).round()


def count_colour(image, colour, tolerance: int = 40) -> int:
    """Pixels within `tolerance` of `colour` on every channel (anti-aliased lines blend a little)."""
    import numpy

    return int((numpy.abs(image - numpy.array(colour)) <= tolerance).all(axis=-1).sum())


def inlined_images(page: str) -> dict[str, bytes]:
    return {m.group(1): base64.b64decode(m.group(2))
            for m in re.finditer(r"<img id='([\w-]+)' alt='[^']*' src='data:image/png;base64,([^']+)'>", page)}


def test_a_finished_run_writes_its_report_and_loss_plot(runs):
    a = runs["a"]
    png = (a / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = pixels(png)
    assert image.shape[:2] == (340, 700)
    assert count_colour(image, BLUE) > 300  # the train loss curve is drawn, not only the axes
    page = runs["before_eval"]
    train = json.loads((a / "train_results.json").read_text())
    assert (a / "recipe.yaml").read_text(encoding="utf-8").splitlines()[2].strip() in page  # model.name_or_path
    assert "learning_rate: 0.005" in page  # the resolved recipe
    assert "not evaluated yet" in page and "eval_loss" in page  # no ftcli eval yet; the eval during training
    lengths = train["example_lengths"]
    assert sum(lengths["counts"]) == lengths["n"] == train["train_samples"]
    assert f"over {lengths['n']} examples" in page and "rows kept" in page and "too_long" in page
    assert ">60<" in page  # the source's 60 rows read
    versions = train["environment"]["versions"]
    assert versions["transformers"] in page and versions["torch"] in page
    assert f"{train['peak_memory_bytes'] / 1e6:,.0f} MB" in page
    images = inlined_images(page)
    assert set(images) == {"loss-plot", "lr-plot", "throughput-plot", "lengths-plot"}
    assert images["loss-plot"] == png
    assert not re.search(r"(src|href)=['\"]https?:", page) and "<script" not in page  # nothing to fetch
    history = json.loads((a / "history.json").read_text())
    assert [e["step"] for e in history if "loss" in e] == list(range(2, 21, 2))


def test_eval_refreshes_the_report_with_base_vs_tuned(runs):
    a = runs["a"]
    results = json.loads((a / "eval_results.json").read_text())
    page = (a / "report.html").read_text(encoding="utf-8")
    assert "not evaluated yet" not in page
    table = page[page.index("id='eval-table'"):]
    table = table[:table.index("</table>")]
    for metric, tuned in results["tuned"].items():
        base = results["base"][metric]
        assert f"<td>{metric}</td><td>{base:.4f}</td><td>{tuned:.4f}</td>" in table
        assert f"{tuned - base:+.4f}" in table


def test_report_rebuilds_a_run_s_report(runs):
    from ftcli.cli import app

    a = runs["a"]
    before = (a / "report.html").read_text(encoding="utf-8")
    (a / "report.html").unlink()
    (a / "loss.png").unlink()
    result = CliRunner().invoke(app, ["report", str(a)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str((a / "report.html").resolve())
    assert (a / "report.html").read_text(encoding="utf-8") == before
    assert (a / "loss.png").read_bytes() == inlined_images(before)["loss-plot"]


def test_report_of_two_runs_overlays_them_and_tables_what_differs(runs, tmp_path):
    from ftcli.cli import app

    out = tmp_path / "compare.html"
    result = CliRunner().invoke(app, ["report", str(runs["a"]), str(runs["b"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    assert "run-a" in page and "run-b" in page
    differs = page[page.index("id='diff-table'"):]
    differs = differs[:differs.index("</table>")]
    rows = re.findall(r"<tr><td>([^<]+)</td>", differs)
    assert rows == ["train.learning_rate", "train.output_dir"]  # all that the two recipes change
    assert "<td>0.005</td><td>0.001</td>" in differs
    overlay = pixels(inlined_images(page)["overlay-plot"])
    assert count_colour(overlay, BLUE) > 300 and count_colour(overlay, ORANGE) > 300  # both runs' curves
    metrics = page[page.index("id='metrics-table'"):]
    assert "<td>train_loss</td>" in metrics and "<td>ftcli eval (tuned): loss</td>" in metrics  # run A's ftcli eval


def test_a_folder_that_is_not_a_finished_run_is_a_user_error(runs, tmp_path):
    from ftcli.cli import app

    (tmp_path / "notes.txt").write_text("hello")
    for args in (["report", str(tmp_path)], ["report", str(tmp_path / "missing")],
                 ["report", str(runs["a"]), str(tmp_path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "not a finished run" in result.output or "not found" in result.output
    result = CliRunner().invoke(app, ["report", str(runs["a"]), "--out", str(tmp_path / "one.html")])
    assert result.exit_code == 2 and "--out is for comparisons" in result.output
    assert not list(tmp_path.glob("*.html"))


def test_a_report_that_cannot_be_written_is_a_warning(tmp_path, monkeypatch):
    from ftcli.reporting.report import refresh_report

    said = []
    monkeypatch.delenv("FTCLI_DEBUG", raising=False)
    assert refresh_report(tmp_path, said.append) is None
    assert said and said[0].startswith("warning: could not write the run report")
    monkeypatch.setenv("FTCLI_DEBUG", "1")
    with pytest.raises(Exception, match="not a finished run"):
        refresh_report(tmp_path, said.append)


def test_length_histogram_and_throughput():
    from ftcli.reporting.history import length_histogram, throughput

    h = length_histogram([3, 5, 5, 40, 41], bins=4)
    assert h["edges"] == [3, 13, 23, 33, 43] and h["counts"] == [3, 0, 0, 2] and h["max"] == 41
    assert length_histogram([]) is None
    log = [{"step": 2, "loss": 1.0, "num_input_tokens_seen": 100, "train_runtime": 1.0},
           {"step": 3, "eval_loss": 2.0},
           {"step": 4, "loss": 0.9, "num_input_tokens_seen": 400, "train_runtime": 2.5}]
    assert throughput(log) == [(2, 100.0), (4, 200.0)]


def test_a_preference_run_s_reward_margins_and_accuracies_are_plotted(runs):
    # TRL's DPO/KTO log the implicit reward's margin and accuracy at each step and eval: the page draws
    # them beside the loss; an SFT run, which logs neither, gets no such panels.
    from ftcli.reporting.run_files import read_run
    from ftcli.reporting.run_page import loss_plot, run_page

    sft = read_run(runs["a"])
    assert "rewards-margins-plot" not in run_page(sft, loss_plot(sft))
    sft.history = sft.history + [
        {"step": 1, "loss": 0.69, "rewards/margins": 0.0, "rewards/accuracies": 0.0},
        {"step": 2, "loss": 0.60, "rewards/margins": 0.4, "rewards/accuracies": 0.75},
        {"step": 2, "eval_loss": 0.62, "eval_rewards/margins": 0.3, "eval_rewards/accuracies": 0.7}]
    page = run_page(sft, loss_plot(sft))
    for plot in ("rewards-margins-plot", "rewards-accuracies-plot"):
        match = re.search(rf"<img id='{plot}' alt='[^']*' src='data:image/png;base64,([^']+)'>", page)
        assert match, plot
        assert base64.b64decode(match.group(1))[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_renders_offline_in_headless_chromium(runs, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    binary = require_chromium()
    page_file = runs["a"] / "report.html"
    fetched = []

    def only_local(route):  # anything but the file itself or an inlined data: URI is a failure
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            fetched.append(url)
            route.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.route("**/*", only_local)
            requests = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            sizes = page.evaluate("[...document.images].map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])")
            headings = [h.inner_text() for h in page.locator("h1, h2").all() if h.is_visible()]
            eval_text = page.inner_text("#eval-table")
            plot = page.locator("#loss-plot").screenshot()
            shot = tmp_path / "report-page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    kept = keep_artifact(shot)
    print(f"screenshot: {kept}")
    assert fetched == [] and all(u.startswith(("file:", "data:")) for u in requests)
    assert [s[0] for s in sizes] == ["loss-plot", "lr-plot", "throughput-plot", "lengths-plot"]
    assert all(complete and width == 700 and height == 340 for _, complete, width, height in sizes), sizes
    assert headings == ["ftcli run report: run-a", "Summary", "Training curves", "Eval metrics", "Data",
                        "Environment", "Recipe (resolved)"]
    assert "perplexity" in eval_text and "tuned" in eval_text
    # The loss plot as the browser painted it: the blue curve and more than a blank frame.
    painted = pixels(plot)
    assert painted.shape[1] >= 690 and count_colour(painted, BLUE) > 300
    full = pixels(shot.read_bytes())
    assert full.shape[1] == 1500 and full.shape[0] > 1500  # the whole page, long past one screen


def test_a_classifier_s_confusion_matrix_is_in_the_eval_section(runs, tmp_path):
    import shutil

    from ftcli.evaluation.reports import confusion_png
    from ftcli.reporting.report import write_report

    run = Path(shutil.copytree(runs["a"], tmp_path / "classifier"))
    png = confusion_png([[5, 1], [0, 6]], ["negative", "positive"], run / "confusion_matrix.png", "classifier")
    results = json.loads((run / "eval_results.json").read_text())
    (run / "eval_results.json").write_text(json.dumps({**results, "confusion_matrix_png": str(png)}))
    page = write_report(run).read_text(encoding="utf-8")
    assert inlined_images(page)["confusion-plot"] == png.read_bytes()
    assert "confusion-plot" not in (runs["a"] / "report.html").read_text(encoding="utf-8")  # none without one
