from __future__ import annotations

from labeling.jobrows import ERROR_MAX, error_text


def test_the_error_text_names_the_exception_and_is_cut_to_the_column_limit() -> None:
    assert error_text(ValueError("bad row 3")) == "ValueError: bad row 3"
    long = error_text(RuntimeError("x" * 5000))
    assert len(long) == ERROR_MAX and long.startswith("RuntimeError: xxx")
