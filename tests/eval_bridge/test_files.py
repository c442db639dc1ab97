"""write_atomically: the target is replaced whole, and a failed write leaves it (and no stray file) behind."""

import pytest

from eval_bridge.files import write_atomically


def test_write_atomically_replaces_the_file_whole(tmp_path):
    path = tmp_path / "deep" / "queue" / "000000060.json"
    seen = []

    def write(tmp):
        assert not path.exists() and tmp.parent == path.parent and tmp.name.startswith(".")
        tmp.write_text('{"step": 60}')
        seen.append(tmp)

    assert write_atomically(path, write) == path
    assert path.read_text() == '{"step": 60}'
    assert not seen[0].exists() and sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("old\n")

    def write(tmp):
        tmp.write_text("half a")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, write)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["eval.jsonl"]
