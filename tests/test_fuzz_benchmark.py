"""benchmarks/fuzz_readers.py with a few hundred files: every damaged file gives pages or an InputError (smoke test)."""

from __future__ import annotations

import re

from benchmark_runs import run_benchmark


def test_fuzzing_a_few_hundred_files_finds_no_traceback() -> None:
    result = run_benchmark("fuzz_readers.py", "--count", "300", "--seed", "7", timeout=300)
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"files=(\d+) ok=(\d+) input_errors=(\d+) tracebacks=(\d+)", last)
    assert match, last
    files, ok, input_errors, tracebacks = map(int, match.groups())
    assert files == 300 and tracebacks == 0 and ok + input_errors == files
    assert ok > 0 and input_errors > 0  # the mutations both break files and leave some readable
    mutations = {line.split()[0] for line in result.stdout.split("\n\n")[1].splitlines()[1:]}
    assert mutations == {"truncate", "bitflip", "overwrite", "structure", "splice", "huge", "random", "duplicate", "suffix"}
