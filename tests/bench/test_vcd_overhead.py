"""bench/vcd_overhead.py runs end to end on a tiny model and reports VCD's per-token cost against plain greedy."""

import re
import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "vcd_overhead.py"


def test_the_bench_reports_vcd_per_token_cost_against_plain_greedy(tmp_path, capsys):
    main = runpy.run_path(str(BENCH))["main"]
    args = ["--model", "tiny", "--tasks", "T1", "--limit", "3", "--max-new-tokens", "4", "--batch-size", "2"]
    main([*args, "--check-alpha0", "--cache-dir", str(tmp_path / "suite")])
    out = capsys.readouterr().out
    rows = {
        m[0]: (float(m[1]), float(m[2]), int(m[3]))
        for m in re.findall(
            r"^(plain greedy|vcd) *: decode +([\d.]+) ms per token, prefill [\d.]+ s, whole run ([\d.]+) ms per token "
            r"\((\d+) tokens\)$",
            out,
            re.M,
        )
    }
    assert set(rows) == {"plain greedy", "vcd"}, out
    n = int(re.search(r"^model: .*; (\d+) mini-suite image prompts", out, re.M).group(1))
    assert rows["vcd"][2] == rows["plain greedy"][2] == 4 * n, "EOS is ignored: every answer has 4 tokens"
    ratio = float(re.search(r"^vcd / plain greedy, per-token decode: ([\d.]+)x \(goal <= 1.5x\)$", out, re.M).group(1))
    assert abs(ratio - rows["vcd"][0] / rows["plain greedy"][0]) < 0.02, out  # the printed ms are rounded
    assert re.search(r"^vcd / plain greedy, whole run per token: [\d.]+x$", out, re.M), out
    assert f"vcd with alpha 0 equals plain greedy: {n}/{n}" in out
