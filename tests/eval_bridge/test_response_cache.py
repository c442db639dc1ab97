"""The response and judge caches never trust a corrupt entry: each is reported with its file and line, and left
out (so it is generated again); entries written after a line cut short by a kill stay intact."""

import json
import logging

from eval_bridge.cache import JudgeCache, ResponseCache
from eval_bridge.samples import Sample


def key(i):
    return ResponseCache.key("T1", "d-basic-object", Sample(f"s{i}", "Q"), f"h{i}")


def row(i, response="fine"):
    task, dataset, sample_id, digest = key(i)
    return {"task": task, "dataset": dataset, "sample_id": sample_id, "hash": digest, "response": response}


def test_corrupt_entries_are_reported_with_file_and_line_and_not_trusted(tmp_path, caplog):
    cache = ResponseCache(tmp_path, "model", "none", "gen")
    lines = [
        json.dumps(row(0)),  # line 1: good
        "{not json",  # line 2
        json.dumps([1, 2]),  # line 3: JSON, not an object
        json.dumps({k: v for k, v in row(3).items() if k != "response"}),  # line 4: no response
        json.dumps(row(4, response=17)),  # line 5: response of the wrong type
        "",  # a blank line is not an entry
        json.dumps(row(5)),  # line 7: good
        json.dumps(row(6))[:-9],  # line 8: cut short by a kill
    ]
    cache.path.write_text("\n".join(lines))
    with caplog.at_level(logging.WARNING, logger="eval_bridge.cache"):
        cache.reload()
    assert [cache.get(key(i)) for i in range(7)] == ["fine", None, None, None, None, "fine", None]
    reported = [r.getMessage() for r in caplog.records]
    assert [m.split(": corrupt")[0] for m in reported] == [f"{cache.path} line {n}" for n in (2, 3, 4, 5, 8)]
    assert "not JSON" in reported[0] and "not an object" in reported[1]
    assert "response" in reported[2] and "response" in reported[3] and "regenerated" in reported[4]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="eval_bridge.cache"):
        cache.reload()  # the runner reloads several times a run: each entry is reported once
    assert not caplog.records


def test_entries_appended_after_a_cut_line_stay_intact(tmp_path):
    cache = ResponseCache(tmp_path, "model", "none", "gen")
    cache.path.write_text(json.dumps(row(0)) + "\n" + json.dumps(row(1))[:20])  # the kill cut line 2
    cache.put_many([(key(2), "two"), (key(3), "three")])
    fresh = ResponseCache(tmp_path, "model", "none", "gen")
    assert [fresh.get(key(i)) for i in range(4)] == ["fine", None, "two", "three"]
    assert len(cache.path.read_text().splitlines()) == 4  # the cut line stayed a line of its own


def test_a_corrupt_judge_reply_is_asked_again(tmp_path, caplog):
    cache = JudgeCache(tmp_path, "judge-a")
    cache.put_many([("prompt one", "Yes"), ("prompt two", "No")])
    text = cache.path.read_text().splitlines()
    cache.path.write_text(text[0] + "\n" + json.dumps({"prompt": json.loads(text[1])["prompt"], "reply": None}) + "\n")
    with caplog.at_level(logging.WARNING, logger="eval_bridge.cache"):
        again = JudgeCache(tmp_path, "judge-a")
    assert (again.get("prompt one"), again.get("prompt two")) == ("Yes", None)
    assert f"{cache.path} line 2: corrupt cache entry" in caplog.text
