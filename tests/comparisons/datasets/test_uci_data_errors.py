"""A broken copy of the UCI data (corrupt archive, missing or garbled manifest) is refused with one
message naming the file and what is wrong, as an ``OSError`` the command line reports in one
line; ``COMPARISONS_UCI_DATA_DIR`` points the loaders at such a copy (the packaged files are
never touched)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from comparisons.datasets import uci
from comparisons.datasets.uci import UCIDataError, check_uci_archives, load_uci, uci_info

DATA_DIR = Path(uci.__file__).parent / "data"


@pytest.fixture
def copy(tmp_path):
    """The manifest and yacht's archive, copied."""
    dest = tmp_path / "data"
    dest.mkdir()
    for name in ("uci_manifest.json", "yacht.npz"):
        shutil.copy(DATA_DIR / name, dest / name)
    return dest


def _corrupt(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


def test_uci_data_error_is_an_os_error():
    """``run_reporting_errors`` turns an ``OSError`` into one line and exit code 2; it stays a
    ``RuntimeError`` for the callers that caught that."""
    assert issubclass(UCIDataError, OSError) and issubclass(UCIDataError, RuntimeError)
    assert str(UCIDataError("the message")) == "the message"


def test_environment_variable_points_the_loaders_at_a_copy(copy, monkeypatch):
    monkeypatch.setenv(uci.DATA_DIR_ENV, str(copy))
    assert load_uci("yacht", 0).x_train.shape == (277, 6)
    _corrupt(copy / "yacht.npz")
    with pytest.raises(UCIDataError, match=f"corrupt: {copy / 'yacht.npz'} has SHA-256"):
        load_uci("yacht", 0)
    with pytest.raises(UCIDataError, match="UCI archive for concrete is missing"):
        load_uci("concrete", 0)  # listed in the manifest, not copied
    monkeypatch.delenv(uci.DATA_DIR_ENV)
    assert load_uci("yacht", 0).x_train.shape == (277, 6)  # the packaged data again


def test_check_uci_archives(copy):
    check_uci_archives(["yacht", "yacht-hydrodynamics"], data_dir=copy)
    check_uci_archives(["boston", "protein"])  # the packaged ones
    with pytest.raises(ValueError, match="unknown UCI data set 'nope'"):
        check_uci_archives(["nope"], data_dir=copy)
    _corrupt(copy / "yacht.npz")
    with pytest.raises(UCIDataError, match=r"yacht is corrupt: .*expected "
                                           + uci_info("yacht").sha256):
        check_uci_archives(["yacht"], data_dir=copy)


@pytest.mark.parametrize("text, expected", [
    ("{garbled", r"is unreadable \(JSONDecodeError: Expecting property name"),
    (b"\xff\xfe{}", r"is unreadable \(UnicodeDecodeError: "),
    ("[]", "is malformed: it must be a JSON object with a 'datasets' object"),
    ('{"datasets": {"yacht": 3}}', "is malformed: the entry of 'yacht' lacks file, sha256"),
    ('{"datasets": {"yacht": {"file": "yacht.npz", "sha256": "0"}}}',
     "is malformed: the entry of 'yacht' lacks rows, n_features"),
])
def test_garbled_manifest_names_the_file_and_the_fault(copy, text, expected):
    manifest = copy / "uci_manifest.json"
    if isinstance(text, bytes):
        manifest.write_bytes(text)
    else:
        manifest.write_text(text)
    for call in (lambda: uci_info("yacht", data_dir=copy),
                 lambda: check_uci_archives(["yacht"], data_dir=copy)):
        with pytest.raises(UCIDataError, match=expected) as err:
            call()
        assert str(manifest) in str(err.value) and "\n" not in str(err.value)
