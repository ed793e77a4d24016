"""split_lines: the pure part of the logcollector, on edge cases."""

from __future__ import annotations

from collectors.logcollector.tail import split_lines


def test_complete_lines_partial_held_crlf_dropped():
    chunk = split_lines(b"a\r\nbb\npart", 100, False, 10)
    assert [(s, raw) for s, raw, *_ in chunk.lines] == [(100, b"a"), (103, b"bb")]
    assert chunk.end == 106 and chunk.skipping is False  # resumes at "part"


def test_final_flushes_the_partial_line():
    chunk = split_lines(b"a\npart", 0, False, 10, final=True)
    assert [raw for _, raw, *_ in chunk.lines] == [b"a", b"part"]
    assert chunk.end == 6


def test_long_line_with_its_newline_is_cut_without_skipping():
    chunk = split_lines(b"0123456789ABC\nnext\n", 0, False, 10)
    (s1, r1, t1, e1, k1), (s2, r2, t2, _, _) = chunk.lines
    assert (r1, t1, e1, k1) == (b"0123456789", True, 14, False)
    assert (s2, r2, t2) == (14, b"next", False)


def test_long_unterminated_line_is_cut_then_skipped_across_reads():
    first = split_lines(b"0123456789ABC", 0, False, 10)
    assert [(raw, t) for _, raw, t, *_ in first.lines] == [(b"0123456789", True)]
    assert first.end == 13 and first.skipping is True
    # Next read: still inside the long line, nothing to emit, state kept.
    second = split_lines(b"DEF", first.end, True, 10)
    assert second.lines == [] and second.end == 16 and second.skipping is True
    # Its newline arrives: the rest is skipped, the next line is whole.
    third = split_lines(b"GH\nok\n", second.end, True, 10)
    assert [(s, raw) for s, raw, *_ in third.lines] == [(19, b"ok")]
    assert third.end == 22 and third.skipping is False


def test_empty_lines_are_skipped():
    chunk = split_lines(b"\n\r\nx\n\n", 0, False, 10)
    assert [(s, raw) for s, raw, *_ in chunk.lines] == [(3, b"x")]
    assert chunk.end == 6
