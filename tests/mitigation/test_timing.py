"""PhaseClock: each lap is the time since the previous one, in order, and is logged."""

from mitigation import timing


def test_laps_are_the_time_between_calls(monkeypatch):
    ticks = iter([10.0, 12.5, 12.5, 100.04])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    lines = []
    clock = timing.PhaseClock(lines.append)
    clock.lap("load")
    clock.lap("empty")
    clock.lap("train")
    assert clock.laps == {"load": 2.5, "empty": 0.0, "train": 87.5}
    assert lines == ["[load] 2.5s", "[empty] 0.0s", "[train] 87.5s"]
    assert clock.summary() == "load 2 s, empty 0 s, train 88 s"
