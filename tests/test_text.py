from pathlib import Path

import pytest

from dragoman.data import text
from dragoman.data.text import (
    check_parallel,
    check_readable,
    count_lines,
    iter_lines,
    iter_pairs,
    read_lines,
)
from dragoman.errors import DragomanError


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_line_counts_differ_names_both_files_and_counts(tmp_path):
    src = write(tmp_path / "a.en", b"one\ntwo\nthree\n")
    tgt = write(tmp_path / "a.de", b"eins\nzwei\n")
    with pytest.raises(DragomanError) as caught:
        check_parallel(src, tgt)
    assert f"{src} has 3 lines, {tgt} has 2" in str(caught.value)
    assert caught.value.fix


def test_check_parallel_returns_the_line_count(tmp_path):
    src = write(tmp_path / "a.en", b"one\ntwo")
    tgt = write(tmp_path / "a.de", b"eins\nzwei\n")
    assert check_parallel(src, tgt) == 2


def test_invalid_utf8_names_file_line_and_byte_offsets(tmp_path):
    path = write(tmp_path / "bad.txt", b"ok\nbad \xff here\n")
    with pytest.raises(DragomanError) as caught:
        list(iter_lines(path))
    message = str(caught.value)
    assert message.startswith(f"{path}:2: ")
    assert "byte offset 7" in message  # 3 bytes of "ok\n", then "bad "
    assert "byte 5 of the line" in message
    assert "iconv" in message


def test_invalid_utf8_truncated_multibyte_sequence(tmp_path):
    path = write(tmp_path / "cut.txt", "Größe\n".encode() + b"ab\xc3\n")
    with pytest.raises(DragomanError) as caught:
        read_lines(path)
    assert caught.value.line == 2
    assert "byte offset 10 (byte 3 of the line)" in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(DragomanError) as caught:
        check_readable(tmp_path / "nope.txt")
    assert str(caught.value).startswith(f"{tmp_path / 'nope.txt'}: file not found")


def test_missing_file_while_streaming(tmp_path):
    with pytest.raises(DragomanError, match="file not found"):
        list(iter_lines(tmp_path / "nope.txt"))


@pytest.mark.parametrize(
    "data, problem", [(b"", "file is empty"), (b"\n \n\t\n", "file is empty (only whitespace)")]
)
def test_empty_file(tmp_path, data, problem):
    path = write(tmp_path / "empty.txt", data)
    with pytest.raises(DragomanError) as caught:
        check_readable(path)
    assert str(caught.value).startswith(f"{path}: {problem}")


def test_directory(tmp_path):
    with pytest.raises(DragomanError) as caught:
        read_lines(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: is a directory")


def test_permission_denied(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(text, "open", refuse, raising=False)  # chmod does not stop root
    with pytest.raises(DragomanError) as caught:
        check_readable(tmp_path / "secret.txt")
    assert "permission denied" in str(caught.value)
    assert "chmod" in str(caught.value)


def test_crlf_line_endings_are_stripped(tmp_path):
    path = write(tmp_path / "dos.txt", b"one\r\ntwo\r\nlast\r")
    assert read_lines(path) == ["one", "two", "last\r"]  # a lone "\r" is content


def test_only_line_endings_are_stripped(tmp_path):
    path = write(tmp_path / "spaces.txt", b"  a b \t\n\nc")
    assert read_lines(path) == ["  a b \t", "", "c"]


@pytest.mark.parametrize(
    "data, lines",
    [(b"", 0), (b"\n", 1), (b"a", 1), (b"a\n", 1), (b"a\nb", 2), (b"a\nb\n", 2), (b"a\n\n", 2)],
)
def test_count_lines_counts_a_final_line_without_newline(tmp_path, monkeypatch, data, lines):
    monkeypatch.setattr(text, "_CHUNK", 1)  # every chunk boundary falls inside the data
    path = write(tmp_path / "f.txt", data)
    assert count_lines(path) == lines
    assert len(list(iter_lines(path))) == lines


def test_iter_pairs_zips_aligned_lines(tmp_path):
    src = write(tmp_path / "a.en", "Resize…\n%s file(s)\n".encode())
    tgt = write(tmp_path / "a.de", "Größe ändern…\r\n%s Datei(en)".encode())
    assert list(iter_pairs(src, tgt)) == [
        ("Resize…", "Größe ändern…"),
        ("%s file(s)", "%s Datei(en)"),
    ]


def test_iter_pairs_checks_before_the_first_pair(tmp_path):
    src = write(tmp_path / "a.en", b"one\ntwo\n")
    tgt = write(tmp_path / "a.de", b"eins\n")
    with pytest.raises(DragomanError, match="line counts differ"):
        iter_pairs(src, tgt)  # raises on the call, not on the first next()
