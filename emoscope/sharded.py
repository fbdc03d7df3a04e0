"""One file scored by several processes (``emoscope predict --input`` under ``accelerate launch``).

The file is cut into chunks of ``chunk_size`` rows, as a single process cuts it; process ``r`` of
``n`` scores chunks r, r + n, r + 2n… (``Predictor.predict_file(shard=(r, n))``) into its own part,
a JSONL file of output rows in a hidden folder beside the output (``.NAME.parts``). Every process
reads the whole file (parsing is cheap next to the model) but holds one chunk at a time. When all
parts are complete the main process merges them, chunk by chunk in input order, into the one
output (``fsutil.atomic_file``: it appears whole or not at all) in the output's own format, and
removes the folder. Each row goes through the same ``RowWriter`` a single process would use, and a
chunk's probabilities do not depend on which process scored it, so the output is the single
process's, byte for byte. A process that dies leaves at most the hidden folder (the next run
replaces it), never a partial output.
"""

from __future__ import annotations

import itertools
import json
import shutil
import warnings
from pathlib import Path

from emoscope import rowfiles
from emoscope.distributed import World
from emoscope.fsutil import atomic_file
from emoscope.predict import Predictor


def parts_folder(output: Path) -> Path:
    """The hidden folder beside ``output`` where the processes' parts are written."""
    return output.parent / f".{output.name}.parts"


def predict_file_sharded(predictor: Predictor, input_path: str | Path, output_path: str | Path, world: World, *,
                         text_column: str = "text", chunk_size: int = 512, progress: bool = False) -> dict[str, int]:
    """Score ``input_path`` into ``output_path`` with every process of ``world`` (see the module
    doc); returns the counts of the whole file (rows, predicted, empty) on every process."""
    input_path, output_path = Path(input_path), Path(output_path)
    rowfiles.check_job(input_path, output_path, chunk_size)
    folder = parts_folder(output_path)
    if world.is_main:
        shutil.rmtree(folder, ignore_errors=True)  # a killed run's leftovers
        folder.mkdir()
    world.wait()
    try:
        with warnings.catch_warnings():
            if not world.is_main:
                warnings.simplefilter("ignore")  # the main process warns about the file once
            stats = predictor.predict_file(input_path, folder / f"part-{world.rank}.jsonl", text_column=text_column,
                                           chunk_size=chunk_size, progress=progress and world.is_main,
                                           shard=(world.rank, world.size))
        world.wait()
        if world.is_main:
            columns = predictor.output_columns(rowfiles.scan(input_path, text_column).columns)
            merge_parts([folder / f"part-{r}.jsonl" for r in range(world.size)], output_path, columns, chunk_size)
    finally:
        if world.is_main:
            shutil.rmtree(folder, ignore_errors=True)
    total = world.total(stats)
    world.wait()
    return total


def merge_parts(parts: list[Path], output: Path, columns: list[str], chunk_size: int) -> None:
    """Interleave the parts chunk by chunk (chunk c is in part c mod n) into ``output``. Only the
    file's last chunk is short, so the first short read ends the merge."""
    files = [part.open(encoding="utf-8") for part in parts]
    try:
        with atomic_file(output) as tmp, rowfiles.RowWriter(tmp, rowfiles.format_of(output), columns) as writer:
            for c in itertools.count():
                lines = list(itertools.islice(files[c % len(files)], chunk_size))
                for line in lines:
                    writer.write(json.loads(line))
                if len(lines) < chunk_size:
                    break
            if any(f.readline() for f in files):
                raise RuntimeError(f"the parts of {output} do not line up with chunks of {chunk_size} rows")
    finally:
        for f in files:
            f.close()
