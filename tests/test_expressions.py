import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ancho.errors import ExpressionError
from ancho.expressions import Goal, Target, check_outputs


@pytest.mark.parametrize(
    "text,output,op,value",
    [
        ("rounds>=30", "rounds", ">=", 30.0),
        (" wealth >= 1e6 ", "wealth", ">=", 1e6),
        ("x<-0.5", "x", "<", -0.5),
        ("won==true", "won", "==", 1.0),
        ("won", "won", "==", 1.0),
        ("loss!=0", "loss", "!=", 0.0),
        ("y>.5", "y", ">", 0.5),
    ],
)
def test_targets_parse(text, output, op, value):
    t = Target.parse(text)
    assert (t.output, t.op, t.value) == (output, op, value)


@pytest.mark.parametrize("text", ["", ">=3", "x>=", "x=>3", "x>=3y", "__import__('os')", "x>=1;y", "1>=x"])
def test_bad_targets(text):
    with pytest.raises(ExpressionError, match="target"):
        Target.parse(text)


def test_target_hits_ignore_nan():
    t = Target.parse("x>=1")
    assert t.hits(np.array([0.0, 1.0, 2.0, np.nan])) == (2, 3)
    assert Target.parse("b").hits(np.array([True, False, True])) == (2, 3)


@pytest.mark.parametrize(
    "text,stat,output,width,relative",
    [
        ("mean(payoff)+-0.01", "mean", "payoff", 0.01, False),
        ("mean( payoff ) ± 1e-3", "mean", "payoff", 1e-3, False),
        ("p(rounds>=30)+-0.005", "p", "rounds", 0.005, False),
        ("mean(x)+-1%", "mean", "x", 0.01, True),
        ("mean(x)+/-2", "mean", "x", 2.0, False),
    ],
)
def test_goals_parse(text, stat, output, width, relative):
    g = Goal.parse(text)
    assert (g.statistic, g.output, g.width, g.relative) == (stat, output, width, relative)


@pytest.mark.parametrize(
    "text", ["mean(x)", "mean(x)+-0", "mean(x)+--1", "median(x)+-1", "mean(a,b)+-1", "p(x)+-0.1x", "p(1)+-0.1"]
)
def test_bad_goals(text):
    with pytest.raises(ExpressionError, match="precision goal"):
        Goal.parse(text)


def test_expressions_must_name_outputs():
    with pytest.raises(ExpressionError, match="target 'y>=1' names output 'y', but the model returns: x"):
        check_outputs({"x": "float"}, [Target.parse("y>=1")], None)
    with pytest.raises(ExpressionError, match="precision goal"):
        check_outputs({"x": "float"}, [], Goal.parse("mean(z)+-1"))


@given(st.text(max_size=40))
def test_parsers_never_crash(text):
    for parse in (Target.parse, Goal.parse):
        try:
            parse(text)
        except ExpressionError:
            pass
