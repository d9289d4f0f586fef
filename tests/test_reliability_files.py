"""Reports, JSON and npz files are written atomically: a temporary file in the target's directory,
then a rename. Readers never see half a file; a failure or an interrupt leaves the old file and no
temporary behind."""
import json
import os
import threading

import numpy as np
import pytest

from xvalidate.errors import OptionError
from xvalidate.report import files


def test_a_reader_sees_the_old_file_or_the_new_one_never_half(tmp_path):
    target = tmp_path / "report.json"
    versions = [json.dumps({"v": i, "pad": "x" * 2_000_000}) for i in range(2)]
    files.write_atomic(target, versions[0])
    stop, seen, bad = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            text = target.read_text()
            try:
                seen.add(json.loads(text)["v"])
            except ValueError:
                bad.append(len(text))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(40):
        files.write_atomic(target, versions[i % 2])
    stop.set()
    reader.join()
    assert not bad and seen <= {0, 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.html"
    files.write_atomic(target, "old")

    def interrupted(f):
        f.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files._atomic(target, interrupted)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_npz_outputs_are_written_atomically_and_read_back(tmp_path):
    target = tmp_path / "outputs.npz"
    arrays = {"conv": np.arange(12, dtype=np.float32).reshape(3, 4), "relu": np.zeros(3)}
    assert files.save_npz_atomic(target, arrays) == str(target)
    with np.load(target) as back:
        assert sorted(back.files) == ["conv", "relu"]
        np.testing.assert_array_equal(back["conv"], arrays["conv"])
    assert [p.name for p in tmp_path.iterdir()] == ["outputs.npz"]
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~_umask()


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    with pytest.raises(OptionError, match=r"missing/r\.json: directory .*missing does not exist"):
        files.write_atomic(tmp_path / "missing" / "r.json", "{}")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OptionError, match=r"does not exist"):
        files.write_atomic(blocker / "r.json", "{}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
