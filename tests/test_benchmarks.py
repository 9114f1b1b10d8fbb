"""The benchmark script keeps working (tiny sizes; figures are not asserted)."""

import subprocess
import sys
from pathlib import Path


def test_bench_script_runs_and_prints_every_comparison(tmp_path):
    out = tmp_path / "results.md"
    script = Path(__file__).parent.parent / "benchmarks" / "run.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    for figure in ("DuckDBStore / in-memory store, p50", "HTTP / in-process (same lab), p50", "insert one item", "first reply after the warm-up / without it", "import + ChatLab() + first reply",
                   "replay, one thread at a time", "lab.export / DuckDB's COPY of the same table", "memory the export added",
                   "bookkeeping, offline model", "a model that waits 100 ms per call", "memory the run added",
                   "LabServer + PostgresStore", "PostgresStore's first turn with the pool warmed at start"):
        assert figure in text
