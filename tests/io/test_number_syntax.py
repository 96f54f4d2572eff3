"""One number syntax for every reader (g2o / TORO, BAL, TUM): ASCII decimal numbers separated by ASCII spaces or
tabs; what Python's float()/int() accept beyond that is refused with file:line. Non-unit quaternions are warned
about with file:line; values whose squares overflow are refused naming the vertex or edge."""
import logging
import warnings

import pytest

from mixslam.cli import main
from mixslam.errors import InputFormatError
from mixslam.io import read_pose_graph, read_tum
from mixslam.io.bal import read_bal
from mixslam.io.text import parse_float, parse_int

G2O = "VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n"
BAL = "1 2 2\n0 0 1.0 2.0\n0 1 3.0 4.0\n" + "\n".join(["0.1"] * 9 + ["1", "2", "10", "3", "4", "10"]) + "\n"
TUM = "# t x y z qx qy qz qw\n0 0 0 0 0 0 0 1\n1 1 0 0 0 0 0 1\n"


def g2o(tmp_path, text):
    p = tmp_path / "g.g2o"
    p.write_text(text, encoding="utf-8")
    return p


def bal(tmp_path, text):
    p = tmp_path / "b.txt"
    p.write_text(text, encoding="utf-8")
    return p


def tum(tmp_path, text):
    p = tmp_path / "t.tum"
    p.write_text(text, encoding="utf-8")
    return p


def raises_at(fn, path, line, *phrases):
    with pytest.raises(InputFormatError) as exc:
        fn(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    for ph in phrases:
        assert ph in msg, (ph, msg)
    return msg


def test_syntax_rule():
    for tok, v in [("1", 1.0), ("-1.5e-3", -1.5e-3), ("+.5", 0.5), ("7.", 7.0), ("1E3", 1e3)]:
        assert parse_float(tok) == v
    for tok in ["nan", "inf", "-Infinity", "1e999"]:  # parse; refused later by the finiteness checks
        assert parse_float(tok) is not None
    for tok in ["1_000", "１", "٣", "0x10", "1,5", "1.5.2", "", "e3"]:
        assert parse_float(tok) is None, tok
    assert parse_int("+7") == 7 and parse_int("1_0") is None and parse_int("３") is None and parse_int("3.0") is None


@pytest.mark.parametrize(
    "bad, phrase",
    [("1_000", "'_' digit separators"), ("１", "non-ASCII character U+FF11 (FULLWIDTH DIGIT ONE)")],
)
def test_g2o_and_bal_refuse_the_same_numbers(tmp_path, bad, phrase):
    # g2o: in a value, and in an id
    raises_at(read_pose_graph, g2o(tmp_path, G2O.replace("VERTEX_SE2 1 1 0 0", f"VERTEX_SE2 1 {bad} 0 0")), 2,
              "x = ", "is not a number", phrase)
    raises_at(read_pose_graph, g2o(tmp_path, G2O.replace("EDGE_SE2 0 1 ", f"EDGE_SE2 0 {bad} ")), 3,
              "j = ", "is not a non-negative integer", phrase)
    # TORO tags take the same path
    toro = "VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0\nEDGE2 0 1 1 0 0 1 0 1 1 0 0\n"
    raises_at(read_pose_graph, g2o(tmp_path, toro.replace("EDGE2 0 1 1 ", f"EDGE2 0 1 {bad} ")), 3, phrase)
    # TUM
    raises_at(read_tum, tum(tmp_path, TUM.replace("1 1 0 0", f"1 {bad} 0 0")), 3, "tx = ", phrase)
    # BAL: the same syntax (its messages name the field)
    if bad.isascii():
        raises_at(read_bal, bal(tmp_path, BAL.replace("0 1 3.0 4.0", f"0 1 {bad} 4.0")), 3, "x = ", "not a number")
    else:
        raises_at(read_bal, bal(tmp_path, BAL.replace("0 1 3.0 4.0", f"0 1 {bad} 4.0")), 3, "U+FF11")


@pytest.mark.parametrize("space, name", [("\u00a0", "NO-BREAK SPACE"), ("\u3000", "IDEOGRAPHIC SPACE"),
                                         ("\u2009", "THIN SPACE"), ("\x1c", "U+001C")])
def test_unicode_spaces_are_errors_naming_line_and_character(tmp_path, space, name):
    raises_at(read_pose_graph, g2o(tmp_path, G2O.replace("VERTEX_SE2 1 1 0", f"VERTEX_SE2 1{space}1 0")), 2,
              name, "column 13", "ASCII spaces or tabs")
    raises_at(read_tum, tum(tmp_path, TUM.replace("1 1 0 0", f"1 1{space}0 0")), 3, name)
    raises_at(read_bal, bal(tmp_path, BAL.replace("0 1 3.0 4.0", f"0 1{space}3.0 4.0")), 3, name, "column 4")


def test_tabs_and_crlf_are_fine(tmp_path):
    assert read_pose_graph(g2o(tmp_path, G2O.replace(" ", "\t").replace("\n", "\r\n"))).num_poses == 2
    assert read_bal(bal(tmp_path, BAL.replace(" ", "\t").replace("\n", "\r\n"))).num_cameras == 1


@pytest.mark.parametrize("value", ["nan", "inf", "-Infinity", "1e999"])
def test_non_finite_refused_by_both_readers(tmp_path, value):
    raises_at(read_pose_graph, g2o(tmp_path, G2O.replace("VERTEX_SE2 1 1 0 0", f"VERTEX_SE2 1 {value} 0 0")), 2,
              "finite")
    raises_at(read_bal, bal(tmp_path, BAL.replace("0 1 3.0 4.0", f"0 1 {value} 4.0")), 3, "finite")


def test_squares_that_overflow_are_refused_naming_the_object(tmp_path, capfd):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning either
        raises_at(read_pose_graph, g2o(tmp_path, G2O.replace("VERTEX_SE2 1 1 0 0", "VERTEX_SE2 1 1e308 0 0")), 2,
                  "vertex 1", "x = 1e+308", "square overflows")
        raises_at(read_pose_graph, g2o(tmp_path, G2O.replace("0 1 1 0 0 1 0 0 1 0 1", "0 1 1 0 0 1e308 0 0 1 0 1")),
                  3, "edge 0->1", "I11 = 1e+308", "square overflows")
        raises_at(read_pose_graph, g2o(tmp_path, G2O.replace("0 1 1 0 0 1", "0 1 1e200 0 0 1")), 3,
                  "edge 0->1", "dx = 1e+200")
        raises_at(read_tum, tum(tmp_path, TUM.replace("1 1 0 0", "1 1e300 0 0")), 3, "tx = 1e+300")
        # NaN information is still the information-matrix error (naming the edge), not a syntax error
        with pytest.raises(Exception, match="edge 0->1"):
            read_pose_graph(g2o(tmp_path, G2O.replace("0 1 1 0 0 1 0", "0 1 1 0 0 nan 0")))
    # the command line: one line, exit 2, nothing from numpy
    assert main(["pgo", str(g2o(tmp_path, G2O.replace("VERTEX_SE2 1 1 0 0", "VERTEX_SE2 1 1e308 0 0")))]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "vertex 1" in err and "RuntimeWarning" not in err


def test_non_unit_quaternion_is_warned_with_file_and_line(tmp_path, caplog):
    text = ("VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 1 1 0 0 0 0 0 2\n"
            "EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 " + " ".join("1" if r == c else "0" for r in range(6)
                                                             for c in range(r, 6)) + "\n")
    p = g2o(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger="mixslam.io"):
        graph = read_pose_graph(p)
    assert graph.warnings["nonunit_quaternions"] == 1
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{p}:2:") and "norm 2" in m and "normalized" in m for m in msgs), msgs
    caplog.clear()
    t = tum(tmp_path, TUM.replace("1 1 0 0 0 0 0 1", "1 1 0 0 0 0 0 3"))
    with caplog.at_level(logging.WARNING, logger="mixslam.io"):
        read_tum(t)
    assert any(r.getMessage().startswith(f"{t}:3:") for r in caplog.records)


def test_non_unit_quaternion_warning_reaches_the_cli_stderr(tmp_path, capsys):
    text = ("VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 1 1 0 0 0 0 0 1.5\n"
            "EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 " + " ".join("1" if r == c else "0" for r in range(6)
                                                             for c in range(r, 6)) + "\n")
    p = g2o(tmp_path, text)
    assert main(["pgo", str(p), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"{p}:2:" in err and "quaternion norm 1.5" in err
