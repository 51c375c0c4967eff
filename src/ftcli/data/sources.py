"""Where rows come from: a recipe's `data.train` / `data.eval` (a path or hub id, a source mapping,
or a list of them) read source by source, and a list mixed by weight.

A source is one of: a local file or folder (`path`), a Hugging Face Hub dataset (`name`), or two
aligned line files (`source` + `target`, e.g. a translation corpus).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from ftcli.data.readers import data_files, read_file, read_lines
from ftcli.errors import DataError, first_line
from ftcli.io import is_local_path
from ftcli.recipe import DataInput, DataSource


def as_sources(data: DataInput) -> list[DataSource]:
    """The recipe's data value as a list of sources. A plain string is a local path when it exists
    or looks like one (so a missing file is "not found", not a failed hub lookup), else a hub id."""
    items = data if isinstance(data, list) else [data]
    out = []
    for item in items:
        if isinstance(item, DataSource):
            out.append(item)
        elif Path(item).expanduser().exists() or is_local_path(item):
            out.append(DataSource(path=item))
        else:
            out.append(DataSource(name=item))
    return out


def is_mix(data: DataInput) -> bool:
    """Whether rows are mixed (weighted and shuffled) rather than used as read, in file order."""
    return isinstance(data, list) or (isinstance(data, DataSource) and data.weight != 1)


def describe_source(data: DataInput | None) -> str:
    """A short human name for a data value, for messages and reports."""
    if data is None:
        return "(none)"
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        return "mix of " + ", ".join(describe_source(item) for item in data)
    text = data.path or (f"{data.source} + {data.target}" if data.source else _describe_hub(data))
    return text + (f" (x{data.weight:g})" if data.weight != 1 else "")


def _describe_hub(source: DataSource) -> str:
    text = f"hub dataset {source.name}" + (f" ({source.config})" if source.config else "")
    text += f" split {source.split}"
    return text + (f" @ {source.revision}" if source.revision else "")


def source_fingerprint(data: DataInput | None) -> str | None:
    """A sha256 prefix over the bytes of every local file the data reads (None when any part comes
    from the hub, whose contents we cannot see without downloading). One file hashes as itself."""
    if data is None:
        return None
    files: list[Path] = []
    for source in as_sources(data):
        if source.name:
            return None
        paths = [Path(source.source), Path(source.target)] if source.source else [Path(source.path)]
        for path in paths:
            if not path.exists():
                return None
            files += data_files(path)
    digests = [_file_sha256(f) for f in files]
    if len(digests) == 1:
        return digests[0][:16]
    return hashlib.sha256("".join(digests).encode()).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- reading


def read_rows(data: str, text_field: str = "text") -> list[dict]:
    """All rows of a path or hub id, as dicts. A .txt file gives one row per line under `text_field`."""
    (source,) = as_sources(data)
    return read_source(source, text_field)


def read_source(source: DataSource, text_field: str = "text", prompt_field: str = "prompt",
                response_field: str = "response") -> list[dict]:
    """Every row of one source. Parallel text becomes {prompt_field: source line, response_field:
    target line}; raises DataError naming the file and what is wrong."""
    if source.name:
        return read_hub(source)
    if source.source:
        return read_parallel(Path(source.source), Path(source.target), prompt_field, response_field)
    path = Path(source.path).expanduser()
    if not path.exists():
        raise DataError(f"data file not found: {source.path}")
    return [row for file in data_files(path) for row in read_file(file, text_field)]


def read_hub(source: DataSource) -> list[dict]:
    import datasets

    try:
        data = datasets.load_dataset(source.name, source.config, split=source.split, revision=source.revision)
        return [dict(row) for row in data]
    except Exception as exc:  # offline, missing, gated, bad split: all are the user's to fix
        raise DataError(f"data '{source.name}' is not a local file and could not be loaded as a hub dataset: "
                        f"{type(exc).__name__}: {first_line(exc)}",
                        hint="use a local file path (.jsonl .json .csv .tsv .parquet), or connect to the Hub") from None


def read_parallel(source: Path, target: Path, source_field: str, target_field: str) -> list[dict]:
    """Two line-aligned files as rows. Blank lines are kept, so line i still pairs with line i; the
    cleaning step drops pairs with an empty side. Any suffix works (`train.en.gz` is a line file)."""
    for path in (source, target):
        if not path.is_file():
            raise DataError(f"parallel text file not found: {path}" if not path.exists()
                            else f"parallel text must be two files, but {path} is a folder")
    sources, targets = read_lines(source), read_lines(target)
    if len(sources) != len(targets):
        raise DataError(f"parallel text is not aligned: {source} has {len(sources)} lines but {target} has "
                        f"{len(targets)}", hint="line i of the source file must translate line i of the target")
    return [{source_field: s, target_field: t} for s, t in zip(sources, targets)]


# ---------------------------------------------------------------- mixing


def mix(parts: list[list[dict]], weights: list[float], seed: int) -> tuple[list[dict], list[int]]:
    """Rows of several sources, each used `weight` times on average, shuffled together (seeded).
    The whole part of a weight repeats every row; the fraction adds a seeded sample of the rest
    (1.5 → every row once, plus a random half again). Returns the rows and each one's part index."""
    rng = random.Random(seed)
    picked: list[tuple[int, int]] = []  # (part, row index)
    for p, (rows, weight) in enumerate(zip(parts, weights)):
        whole, fraction = int(weight), weight - int(weight)
        picked += [(p, i) for _ in range(whole) for i in range(len(rows))]
        picked += [(p, i) for i in sorted(rng.sample(range(len(rows)), round(len(rows) * fraction)))]
    rng.shuffle(picked)
    return [parts[p][i] for p, i in picked], [p for p, _ in picked]
