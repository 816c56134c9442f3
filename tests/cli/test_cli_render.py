"""The terminal's summary tables fit an 80-column terminal, intervals on one line."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from ancho.cli.render import (
    POINTS_SHOWN,
    comparison_tables,
    runs_table,
    studies_table,
    study_tables,
    summary_tables,
    trajectories_table,
)


def _summary():
    out = {
        "count": 20000,
        "mean": 16.83342,
        "std": 17.0213,
        "sem": 0.12,
        "ci95": [16.5976123, 17.0692456],
        "min": 3,
        "p5": 3.0,
        "p25": 7.0,
        "p50": 11.0,
        "p75": 23.0,
        "p95": 51.0,
        "max": 235,
    }
    won = {
        "count": 20000,
        "mean": 0.12695,
        "std": 0.33292,
        "sem": 0.002,
        "ci95": [0.1224081, 0.1316362],
        "min": 0,
        "p5": 0,
        "p25": 0,
        "p50": 0,
        "p75": 0,
        "p95": 1,
        "max": 1,
    }
    return {
        "run": "62bf66992dba",
        "status": "succeeded",
        "sequences": 20000,
        "seed": 3,
        "params": {"stake": 3, "goal": 10, "p": 0.45},
        "outputs": {"won": won, "rounds": out},
        "targets": [{"expr": "rounds>=30", "probability": 0.15985, "ci95": [0.1548372, 0.1649941]}],
        "custom": {"median_rounds_when_won": 23.0},
        "failures": 0,
    }


def test_summary_fits_80_columns():
    text = _text(summary_tables(_summary()), 80)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for line in text.splitlines():
        assert line.count("[") == line.count("]"), f"an interval wrapped: {line!r}"
    assert "[16.598, 17.069]" in text and "[0.15484, 0.16499]" in text and "…" not in text


def _trajectory(means):
    return {"steps": len(means), "count": 200, "mean": means, "ci95_low": means, "ci95_high": means}


def test_trajectories_show_their_shape_and_fit_80_columns():
    summary = _summary()
    infected = [1.0, 4.0, 20.0, 62.5, 40.0, 10.0, 2.0, 0.5]
    summary["trajectories"] = {"infected": _trajectory(infected), "a_long_trajectory_name": _trajectory([0.0] * 365)}
    text = _text(summary_tables(summary), 100)
    row = next(line for line in text.splitlines() if line.startswith("infected"))
    # steps, shape, first, last, highest and the step it is at (from 0), count
    assert row.split() == ["infected", "8", "▁▁▃█▅▂▁▁", "1", "0.5", "62.5", "3", "200"], row
    text = _text(summary_tables(summary), 80)  # (the long name stays whole: the highest mean and its step go)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "a_long_trajectory_name" in text and "highest and at step left out to fit the terminal" in text
    assert "▄" * 20 in text  # a flat trajectory, drawn at mid height, 365 steps in 20 characters


def test_trajectories_with_long_numbers_leave_columns_out_rather_than_fold_their_names():
    """A run's walk at 80 columns was shown as ``wal``/``k`` under a header ``tra``/``jec``/``tor``/``y``."""
    walk = [-0.0062706, 0.012672, 0.05618, -0.0191130, 0.0086568] * 10
    summary = _summary()
    summary["trajectories"] = {"walk": {**_trajectory(walk), "count": 20_000}}
    for width, kept in [(100, 8), (80, 6), (60, 5)]:
        text = _text([trajectories_table(summary["trajectories"])], width)
        assert max(len(line) for line in text.splitlines()) <= width, text
        header = next(line for line in text.splitlines() if line.startswith("trajectory"))
        row = next(line for line in text.splitlines() if line.startswith("walk"))
        assert header.split()[0] == "trajectory" and len(row.split()) == kept, text
        assert ("left out to fit the terminal" in text) == (kept < 8)
    assert "highest and at step left out" in _text([trajectories_table(summary["trajectories"])], 80)


def test_a_run_of_trajectories_alone_has_no_empty_outputs_table():
    summary = _summary()
    summary["outputs"], summary["targets"], summary["custom"] = {}, [], {}
    summary["trajectories"] = {"walk": _trajectory([None, 0.5, 1.0])}
    text = _text(summary_tables(summary), 80)
    assert "outputs" not in text and "walk" in text
    row = next(line for line in text.splitlines() if line.startswith("walk"))
    assert row.split() == ["walk", "3", "▁█", "–", "1", "1", "2", "200"], row


def _text(parts, width: int) -> str:
    """What a terminal ``width`` columns wide shows of ``parts`` (a list of renderables), without colours."""
    console = Console(width=width, record=True, color_system=None)
    for part in parts:
        console.print(part)
    return console.export_text()


def _render(summary, width):
    return _text(summary_tables(summary), width)


def test_a_narrow_terminal_leaves_columns_out_rather_than_cut_names_or_numbers():
    """Long names and numbers made the table ~100 columns wide, and an 80-column terminal showed ``fina…`` and
    ``44.1…``: now the tails go first, then the spread, then the extremes, and the caption says which went."""
    summary = _summary()
    wide = dict(summary["outputs"]["rounds"], mean=44.11712, std=41.1098, min=0.0374791, p5=0.3383512, max=124.7412)
    summary["outputs"] = {"peak_infected_count": wide, "won": summary["outputs"]["won"]}
    full = _render(summary, 200)
    assert "p5" in full and "std" in full and "left out" not in full
    for width, gone in ((100, "p5 and p95"), (80, "p5, p95 and std"), (64, "p5, p95, std, min and max")):
        text = _render(summary, width)
        assert max(len(line) for line in text.splitlines()) <= width, text
        assert "…" not in text, text
        assert "peak_infected_count" in text and "44.117" in text and "[16.598, 17.069]" in text, text
        assert f"{gone} left out to fit the terminal (--json has them)" in " ".join(text.split()), text


def test_the_runs_table_fits_80_columns_whole():
    """Before, ``100,000/100,…`` and timestamps folded onto two lines: ids, counts and times are never cut now."""

    def run(id, model, status, done, total, created, seconds):
        return SimpleNamespace(id=id, model=model, status=status, done=done, total=total, created=created,
                               started=created + 0.5, finished=created + 0.5 + seconds)  # fmt: skip

    runs = [
        run("301a3365da42", "BSCall", "succeeded", 100_000_000, 100_000_000, 1_700_000_000, 2.75),
        run("bc7da349e1ea", "SIR", "failed", 0, 10_000, 1_700_000_100, 0.02),
    ]
    text = _text([runs_table(runs)], 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text
    first, second = (line.split() for line in text.splitlines()[2:4])
    assert first == ["301a3365da42", "BSCall", "succeeded", "100,000,000", "2023-11-14", "22:13:20", "UTC", "2.75", "s"]
    assert second[:4] == ["bc7da349e1ea", "SIR", "failed", "0/10,000"]  # (done/total only while they differ)


def _study(points: int, outputs: int = 1) -> dict:
    names = ["payoff", *(f"output_with_a_long_name_{i}" for i in range(1, outputs))]
    return {
        "study": "s48ed2c023cf",
        "status": "succeeded",
        "model": "BSCall",
        "seed": 7,
        "sequences": 2000,
        "design": {"kind": "sobol", "parameters": ["k", "sigma"], "points": points},
        "params": {},
        "points": [
            {
                "point": i,
                "run": f"{i:012x}",
                "params": {"s0": 100.0, "k": 90.0 + i, "sigma": 0.2, "t": 1.0},
                "status": "succeeded",
                "outputs": {name: {"mean": 10.0 + i / 3} for name in names},
                "targets": [{"expr": "payoff>0", "probability": 0.5}],
            }
            for i in range(points)
        ],
        "sensitivity": {
            "payoff": {
                "method": "sobol",
                "ST": {"k": {"value": 0.9, "ci95": [0.85, 0.95]}, "sigma": {"value": 0.1, "ci95": [0.05, 0.15]}},
                "S1": {"k": {"value": 0.88, "ci95": [0.8, 0.96]}, "sigma": {"value": 0.09, "ci95": [0.0, 0.18]}},
                "noise_share": 0.0123,
                "warning": "intervals too wide to rank the parameters",
            }
        },
    }


def test_a_study_reads_as_tables_that_fit_80_columns():
    """Before, each point was a line holding every parameter's value (a wall of dictionaries)."""
    text = _render_study(_study(45), 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text
    assert "params every point shares: s0=100.0, t=1.0" in text  # (k and sigma vary: they are columns)
    row = next(line for line in text.splitlines() if line.split()[:1] == ["2"])
    assert row.split() == ["2", "92", "0.2", "succeeded", "10.667", "0.5", "000000000002"], row
    assert f"{45 - POINTS_SHOWN:,} more points not shown" in " ".join(text.split())
    st = next(line for line in text.splitlines() if line.startswith("k "))
    assert st.split() == ["k", "0.9", "[0.85,", "0.95]", "0.88", "[0.8,", "0.96]"], st
    assert "noise_share 0.0123" in text and "intervals too wide to rank the parameters" in " ".join(text.split())


def test_a_study_of_many_outputs_leaves_columns_out_and_says_which():
    text = _render_study(_study(3, outputs=4), 80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text, text
    header = next(line for line in text.splitlines() if line.split()[:1] == ["point"])
    # the run ids go first, then the targets, then outputs from the last: point, parameters and status stay
    assert header.split() == ["point", "k", "sigma", "status", "payoff", "output_with_a_long_name_1"], header
    assert (
        "run, p(payoff>0), output_with_a_long_name_3 and output_with_a_long_name_2 left out to fit the terminal "
        "(--json has them)" in " ".join(text.split())
    ), text


def _render_study(summary, width):
    return _text(study_tables(summary), width)


def test_the_studies_table_fits_80_columns_whole():
    """Before, a study was a line of its own that folded; now a table, which loses its duration before anything is
    cut short."""
    study = SimpleNamespace(
        id="s48ed2c023cf", model="BSCall", status="succeeded", design={"kind": "sobol"}, points=[{}] * 32,
        done=64_000, total=64_000, created=1_700_000_000, started=1_700_000_000.5, finished=1_700_000_100.5,
    )  # fmt: skip
    for width, left_out in ((120, False), (80, True)):
        text = _text([studies_table([study])], width)
        assert max(len(line) for line in text.splitlines()) <= width and "…" not in text, text
        row = next(line.split() for line in text.splitlines() if line.startswith("s48ed2c023cf"))
        assert row[:7] == ["s48ed2c023cf", "BSCall", "succeeded", "sobol", "×", "32", "64,000"], row
        assert ("duration left out to fit the terminal" in text) == left_out and ("1m 40s" in text) != left_out


def _comparison(paired: bool) -> dict:
    return {
        "a": "1ae7644404ea",
        "b": "8eb565690da4",
        "paired": paired,
        "sequences": 5000,
        "sequences_a": 20000 if not paired else 5000,
        "sequences_b": 5000,
        "outputs": {
            "rounds": {
                "mean_a": 75.7806, "mean_b": 99.8904, "difference": 24.1098, "ci95": [22.7931994, 25.4264006],
                "variance_reduction": 1.0941 if paired else None, "p_value": 1.75e-273, "count": 5000,
            },
            "all_nan": {
                "mean_a": None, "mean_b": None, "difference": None, "ci95": None, "variance_reduction": None,
                "p_value": None, "count": 0,
            },
        },
        "targets": [
            {"expr": "rounds>=30", "probability_a": 0.8261, "probability_b": 0.8754, "difference": -0.0493,
             "ci95": [-0.0543, -0.0443], "p_value": 4.66e-83},
        ],
    }  # fmt: skip


def test_a_comparison_reads_as_tables():
    """Before, a line per output at four digits without the two means; a difference of null failed the command."""
    for paired, heading in ((True, "paired (same seed)  ·  5,000 sequences"), (False, "20,000 and 5,000 sequences")):
        text = _text(comparison_tables(_comparison(paired)), 120)
        assert text.splitlines()[0].startswith("8eb565690da4 − 1ae7644404ea  ·  ") and heading in text, text
        rounds = next(line.split() for line in text.splitlines() if line.startswith("rounds "))
        want = ["rounds", "75.781", "99.89", "+24.11", "[22.793,", "25.426]", "1.75e-273"]
        assert rounds == want + (["1.09×"] if paired else []), text
        assert next(line.split() for line in text.splitlines() if line.startswith("all_nan"))[1:4] == ["–"] * 3
        target = next(line.split() for line in text.splitlines() if line.startswith("rounds>=30"))
        assert target == ["rounds>=30", "0.8261", "0.8754", "-0.0493", "[-0.0543,", "-0.0443]", "4.66e-83"], text


def test_text_from_models_is_shown_as_written_never_as_markup():
    """A parameter value ``[/]`` raised Rich's MarkupError in ``ancho run`` and ``ancho show``; ``[red]x`` was shown
    as a red ``x``. Names, values, expressions and errors are plain text wherever they are shown."""
    summary = _summary()
    summary["params"] = {"label": "[/]", "colour": "[red]x"}
    summary["custom"] = {"note": "[bold]not bold[/bold]", "broken": "[/]"}
    text = "\n".join(_render(summary, 120).splitlines())
    assert "label='[/]'" in text and "colour='[red]x'" in text, text
    assert "[bold]not bold[/bold]" in text and "[/]" in text
    study = _study(2)
    for p in study["points"]:
        p["params"]["k"] = "[/]"
    study["sensitivity"]["payoff"]["warning"] = "[/] stays"
    text = _render_study(study, 120)
    assert text.count("[/]") >= 3 and "[/] stays" in text, text
    comparison = _comparison(True)
    comparison["outputs"] = {"x": dict(comparison["outputs"]["rounds"])}
    comparison["a"] = "[/]"
    assert "− [/]" in _text(comparison_tables(comparison), 120)


def test_a_points_table_keeps_columns_apart_that_share_a_name():
    """Cells were looked up by header: an output named ``status``, or named as a varied parameter, took their cells."""
    study = _study(1)
    study["design"]["parameters"] = ["a"]
    point = study["points"][0]
    point["params"] = {"a": 0.0}
    point["outputs"] = {"status": {"mean": 7.0}, "a": {"mean": 3.0}}
    point["targets"] = []
    text = _render_study(study, 120)
    header = next(line for line in text.splitlines() if line.split()[:1] == ["point"])
    row = next(line.split() for line in text.splitlines() if line.split()[:1] == ["0"])
    assert header.split() == ["point", "a", "status", "status", "(mean)", "a", "(mean)", "run"], header
    assert row == ["0", "0", "succeeded", "7", "3", "000000000000"], text


def test_a_terminal_too_narrow_for_the_fewest_columns_wraps_names_and_never_cuts_numbers():
    summary = _summary()
    wide = dict(summary["outputs"]["rounds"], mean=12345.678, ci95=[12300.25, 12391.5])
    summary["outputs"] = {"final_wealth_of_the_player": wide}
    text = _render(summary, 60)
    assert "…" not in text and "12,346" in text and "[12,300, 12,392]" in text and "20,000" in text, text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("final_wealth"))
    assert lines[first].split()[0] + lines[first + 1].split()[0] == "final_wealth_of_the_player", text  # (wrapped)


def test_titles_and_headers_from_models_are_plain_text():
    study = _study(2)
    study["points"][0]["targets"] = [{"expr": "y>[i]", "probability": 0.5}]
    study["sensitivity"]["p(y>[/])"] = study["sensitivity"]["payoff"]
    text = _render_study(study, 200)
    assert "p(y>[i])" in text and "sensitivity of p(y>[/])" in text, text


def test_the_progress_bar_says_summarising_once_every_sequence_is_done(monkeypatch):
    from rich.console import Console

    import ancho.cli.render as render

    monkeypatch.setattr(render, "err_console", Console(force_terminal=True, record=True, width=120))
    with render.RunProgress(True) as bar:
        bar(5, 10)
        assert bar._progress.tasks[0].fields["phase"] == "running"
        bar(10, 10)
        assert bar._progress.tasks[0].fields["phase"] == "summarising"
        bar(10, 20)  # (a precision goal asked for more)
        assert bar._progress.tasks[0].fields["phase"] == "running"


def test_a_heading_wraps_between_its_parts_and_notes_use_the_terminals_width():
    """At 80 columns a run's heading wrapped after a dangling '·' and split its parts; a note under a narrow table
    wrapped at the table's width (leaving 'them)' alone on a line), and said 'them' of one column."""
    from ancho.cli.render import Dotted

    parts = ["run b75d4144cdfc", "succeeded", "100 sequences", "seed 4351283694628778", "block 4,096", "5.19 s"]
    lines = _text([Dotted(parts)], 80).splitlines()
    assert lines == [
        "run b75d4144cdfc  ·  succeeded  ·  100 sequences  ·  seed 4351283694628778",
        "block 4,096  ·  5.19 s",
    ]
    assert _text([Dotted(parts)], 200).splitlines() == ["  ·  ".join(parts)]
    trajectory = {
        "steps": 3, "count": 10, "mean": [0.0, 1.0, 2.0], "ci95_low": [0.0, 0.9, 1.9], "ci95_high": [0.0, 1.1, 2.1],
    }  # fmt: skip
    text = _text([trajectories_table({"a_long_trajectory_name": trajectory})], 70)  # (the table: 56 wide)
    note = [line for line in text.splitlines() if "left out" in line]
    assert note == ["highest and at step left out to fit the terminal (--json has them)"], text
    study = SimpleNamespace(
        id="s48ed2c023cf", model="BSCall", status="succeeded", design={"kind": "sobol"}, points=[{}] * 32,
        done=64_000, total=64_000, created=1_700_000_000, started=1_700_000_000.5, finished=1_700_000_100.5,
    )  # fmt: skip
    text = _text([studies_table([study])], 80)
    assert "duration left out to fit the terminal (--json has it)" in text, text
