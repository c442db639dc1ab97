"""bench/vcd_overhead.py runs end to end on a tiny model and reports VCD's per-token cost against plain greedy."""

import re
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "vcd_overhead.py"


def test_the_bench_reports_vcd_per_token_cost_against_plain_greedy(tmp_path, capsys):
    main = runpy.run_path(str(BENCH))["main"]
    args = ["--model", "tiny", "--tasks", "T1", "--limit", "3", "--max-new-tokens", "4", "--batch-size", "2"]
    main([*args, "--cache-dir", str(tmp_path / "suite")])
    out = capsys.readouterr().out
    rows = dict(
        re.findall(r"^(plain greedy|vcd) *: +([\d.]+) ms per token \(\d+ tokens\), decode step [\d.]+ ms$", out, re.M)
    )
    assert set(rows) == {"plain greedy", "vcd"}, out
    ratio = float(re.search(r"^vcd / plain greedy per token: ([\d.]+)x \(goal <= 1.5x\)$", out, re.M).group(1))
    assert abs(ratio - float(rows["vcd"]) / float(rows["plain greedy"])) < 0.02, out  # the printed ms are rounded
    same, total = re.search(r"^vcd with alpha 0 equals plain greedy: (\d+)/(\d+)$", out, re.M).groups()
    assert same == total and int(total) > 0, out
