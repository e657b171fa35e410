"""segr1.data.safe_pickle: plain refer pickles load; anything that imports or calls is refused unexecuted."""

from __future__ import annotations

import copyreg
import os
import pickle

import pytest

from segr1.data.safe_pickle import UnsafePickleError, safe_load, safe_loads

REFS = [
    {
        "ref_id": 0,
        "ann_id": 1719310,
        "image_id": 581857,
        "split": "train",
        "category_id": 1,
        "file_name": "COCO_train2014_000000581857_1719310.jpg",
        "sent_ids": [0, 1],
        "sentences": [
            {"tokens": ["the", "lady"], "raw": "THE LADY", "sent_id": 0, "sent": "the lady"},
            {"tokens": ["woman"], "raw": "woman ", "sent_id": 1, "sent": "woman"},
        ],
        "score": 0.5,
        "flags": (True, False, None),
    }
]


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips(protocol):
    assert safe_loads(pickle.dumps(REFS, protocol=protocol)) == REFS


def test_python2_protocol0_pickle_with_utf8_str():
    # What Python 2's pickle.dump writes for [{'sent': 'caf\xc3\xa9'}] (a byte str holding UTF-8), by hand.
    data = b"(lp0\n(dp1\nS'sent'\np2\nS'caf\\xc3\\xa9'\np3\nsa."
    assert safe_loads(data) == [{"sent": "café"}]


def test_python2_latin1_str_falls_back():
    data = b"(lp0\nS'caf\\xe9'\np1\na."  # not valid UTF-8: decoded as Latin-1 instead of failing
    assert safe_loads(data) == ["café"]


class _Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_reduce_to_os_system_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps([{"ref_id": 1, "x": _Evil(f"touch {marker}")}], protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"system"):
        safe_loads(payload)
    assert not marker.exists()


def test_inst_opcode_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n."  # INST os.system
    with pytest.raises(UnsafePickleError):
        safe_loads(payload)
    assert not marker.exists()


def test_extension_registry_opcode_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    code = 0x7FFF0001
    command = f"touch {marker}".encode()
    # EXT4 <code> (looked up in copyreg's registry), the argument, TUPLE1, REDUCE, STOP.
    payload = (
        b"\x80\x02"
        + pickle.EXT4
        + code.to_bytes(4, "little")
        + pickle.BINUNICODE
        + len(command).to_bytes(4, "little")
        + command
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.STOP
    )
    copyreg.add_extension("os", "system", code)  # registered: a plain unpickler would call os.system
    try:
        with pytest.raises(UnsafePickleError):
            safe_loads(payload)
    finally:
        copyreg.remove_extension("os", "system", code)
    assert not marker.exists()


def test_harmless_builtin_class_import_is_refused_too():
    with pytest.raises(UnsafePickleError, match="builtins.set|__builtin__.set"):
        safe_loads(pickle.dumps({1, 2}, protocol=2))  # protocol 2 pickles a set as a call to builtins.set


@pytest.mark.parametrize("value", [{1, 2}, frozenset({3}), b"raw", bytearray(b"x"), 1j])
def test_non_plain_types_built_by_opcodes_are_refused(value):
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps([{"k": value}], protocol=pickle.HIGHEST_PROTOCOL))


def test_persistent_id_is_refused():
    payload = b"Pfoo\n."  # PERSID opcode
    with pytest.raises(UnsafePickleError, match="persistent"):
        safe_loads(payload)


def test_garbage_is_an_unpickling_error_not_a_crash():
    for data in (b"", b"\x80\x05", b"not a pickle at all", b"(lp0\n"):
        with pytest.raises(pickle.UnpicklingError):
            safe_loads(data)


def test_safe_load_names_the_file(tmp_path):
    good = tmp_path / "refs(unc).p"
    good.write_bytes(pickle.dumps(REFS, protocol=2))
    assert safe_load(good) == REFS
    bad = tmp_path / "bad.p"
    bad.write_bytes(pickle.dumps(_Evil("true")))
    with pytest.raises(UnsafePickleError, match="bad.p"):
        safe_load(bad)
    with pytest.raises(FileNotFoundError):
        safe_load(tmp_path / "missing.p")
