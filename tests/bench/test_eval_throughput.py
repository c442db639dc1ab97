"""bench/eval_throughput.py runs end to end on a tiny model and reports every mode against one at a time."""

import re
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "eval_throughput.py"


def test_the_bench_compares_the_loop_and_batched_generate_with_one_at_a_time(tmp_path, capsys):
    main = runpy.run_path(str(BENCH))["main"]
    args = ["--model", "tiny", "--tasks", "T1", "--limit", "2", "--max-new-tokens", "4", "--batch-size", "4"]
    main([*args, "--cache-dir", str(tmp_path / "suite")])
    out = capsys.readouterr().out
    rows = {
        m[0]: m[1:]
        for m in re.findall(
            r"^(one at a time|decode loop|batched generate) *: *([\d.]+) samples/s"
            r" +([\d.]+)x +identical greedy outputs (\d+)/(\d+)$",
            out,
            re.M,
        )
    }
    assert set(rows) == {"one at a time", "decode loop", "batched generate"}, out
    assert all(same == total and int(total) > 0 for _, _, same, total in rows.values()), out
    assert rows["one at a time"][1] == "1.00"
    assert re.search(r"decode loop time: processor .* prefill forwards .* decode steps .* other", out), out
