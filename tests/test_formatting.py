"""analysis.formatting: the one number and table formatting of the terminal and the page."""

from analysis.formatting import ci, count, num, pct, plain, signed_pct, text_table, titled_table


def test_numbers():
    assert num(6.6) == "6.6000" and num(40.04, 1) == "40.0" and num(None) == "-"
    assert num(float("inf")) == "inf" and num(True) == "-"
    assert count(1638400) == "1,638,400" and count(None) == "-" and count(float("nan")) == "-"
    assert pct(0.5) == "50%" and pct(0.123, 1) == "12.3%" and pct(None) == "-"
    assert signed_pct(1.25) == "+1.25%" and ci([6.4693, 6.91744]) == "[6.4693, 6.9174]"
    assert ci(None) == "-" and plain([1e-5, True, None]) == "[1e-05, true, -]"


def test_text_table_aligns_numbers_right():
    lines = text_table(["#", "name", "mean"], [[1, "a", "6.6000"], [10, "long name", None]])
    assert lines == [" #  name         mean", "--  ---------  ------", " 1  a          6.6000",
                     "10  long name       -"]  # a numeric column's header is right-aligned too
    assert titled_table("t", ["x"], [[1], [2], [3]], 2) == [
        "t", "x", "-", "1", "2", "... 1 more in summary.json", ""]
