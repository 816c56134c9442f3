"""A ready-to-run Jupyter notebook of a study: the points table in pandas, its pictures, and any point's results.

The points table (``Study.frame``: one row per point) is small — a few
numbers per output per point — so it is always embedded, as CSV, and the
notebook opens anywhere. Each point is an ordinary run, whose sequences can
be many; ``load_point(k)`` fetches them when asked, from where the study is:

* ``"local"`` — the store on this machine, with Ancho (``ancho.api.Results``);
  the embedded store's folder is written in the notebook, a Cassandra store's
  URL (it holds a password) never is: set ``ANCHO_STORE`` instead;
* ``"api"`` — the server's REST API (``/api/v1/runs/{id}/results?format=parquet``)
  with the token in ``ANCHO_TOKEN`` when the notebook runs (no token is written in it).
"""

from __future__ import annotations

import pprint
from pathlib import Path

from ..stores.base import Store
from .notebook import IMPORTS, _md_escape, new_notebook, notebook_bytes
from .study_facts import StudyReportData, design_rows, gather_study, study_rows

#: mean-path values a study notebook embeds per trajectory output (steps are thinned to fit)
PATH_VALUES = 200_000


def build_study_notebook(
    store: Store, study_id: str, data: str = "local", *, owner: str | None = None, api_url: str | None = None
):
    """The notebook (an ``nbformat`` node) of ``study_id``; ``data`` says where a point's results are loaded from."""
    import nbformat.v4 as nbf

    if data not in ("local", "api"):
        raise ValueError(f"data must be local or api, not {data!r}")
    report = gather_study(store, study_id, owner)
    r = report.record
    home = getattr(store, "home", None)
    cells = [
        nbf.new_markdown_cell(_intro(report, data, api_url)),
        nbf.new_code_cell(_setup(report)),
        nbf.new_markdown_cell(
            "## Points\n\nOne row per point: `point`, the design's parameters, then per output `NAME.mean`, "
            "`NAME.ci95_low`, `NAME.ci95_high`, `NAME.std` and per target `p(EXPR)` with its interval."
        ),
        nbf.new_code_cell(_points(report)),
        nbf.new_markdown_cell(
            "## Pictures\n\nOne varied parameter: each output's mean with its 95% band against it; two: the mean "
            "over both; more: parallel coordinates, one line per point."
        ),
        nbf.new_code_cell(PICTURES_CODE),
    ]
    if report.paths:
        cells.append(
            nbf.new_markdown_cell(
                "## Mean paths\n\nEach point's mean path of each trajectory output, from its run's summary "
                "(`MEAN_PATHS[name][point]`, at the steps `STEPS[name][point]`: a point's parameters may "
                "set a trajectory's length)."
            )
        )
        cells.append(nbf.new_code_cell(_mean_paths(report) + "\n\n" + MEAN_PATHS_CODE))
    if report.summary.get("sensitivity"):
        cells.append(nbf.new_markdown_cell("## Sensitivity\n\nThe indices with their bootstrap 95% intervals."))
        cells.append(nbf.new_code_cell(SENSITIVITY_CODE))
    cells.append(
        nbf.new_markdown_cell(
            "## A point's results\n\nEvery point is an ordinary run: `load_point(k)` gives its sequences' outputs "
            "as a DataFrame (one row per sequence)."
        )
    )
    cells.append(nbf.new_code_cell(_load_point(data, str(home) if home else None, api_url)))
    cells.append(nbf.new_markdown_cell("## Your analysis\n\n`points` is the points table; `load_point(k)` any point."))
    cells.append(nbf.new_code_cell("points.describe()"))
    return new_notebook(cells, {"study": r.id, "data": data})


def write_study_notebook(store: Store, study_id: str, path: Path) -> list[Path]:
    """Write the notebook of a study on this machine to ``path`` (whole or not at all); returns the files written."""
    from ..exports import write_file

    path = Path(path).expanduser()
    nb = build_study_notebook(store, study_id, "local")
    write_file(path, lambda sink: sink.write(notebook_bytes(nb)))
    return [path]


def _intro(report: StudyReportData, data: str, api_url: str | None) -> str:
    r = report.record
    lines = [f"# {r.model}: study {r.id}", ""]
    if report.doc:
        lines += [report.doc, ""]
    if r.status != "succeeded":
        lines += [f"**The study {r.status}**" + (f": {r.error}" if r.error else "."), ""]
    lines += ["| | |", "|---|---|"] + [
        f"| {k} | {_md_escape(v)} |" for k, v in study_rows(report) + design_rows(report)
    ]
    where = {
        "local": "A point's results are read from the store on this machine with Ancho "
        "(set `ANCHO_STORE` to use another store).",
        "api": f"A point's results are fetched from the Ancho server at `{api_url}` (or `$ANCHO_URL`) with your API "
        "token: set the environment variable `ANCHO_TOKEN` before starting Jupyter.",
    }[data]
    return "\n".join([*lines, "", "The points table is embedded in this notebook. " + where])


def _setup(report: StudyReportData) -> str:
    r = report.record
    runs = {int(p["point"]): p.get("run") for p in r.points if p.get("run")}
    sensitivity = report.summary.get("sensitivity")
    return "\n".join(
        [
            IMPORTS,
            f"STUDY = {r.id!r}",
            f"PARAMETERS = {report.parameters!r}",
            f"OUTPUTS = {report.outputs!r}",
            f"TARGETS = {report.targets!r}",
            "# each point's run",
            f"RUNS = {pprint.pformat(runs, width=110, compact=True)}",
            f"sensitivity = {pprint.pformat(sensitivity, sort_dicts=False, width=110) if sensitivity else 'None'}",
        ]
    )


def _points(report: StudyReportData) -> str:
    text = report.frame.to_csv(index=False)
    return (
        "# the points table (Study.frame), as Ancho computed it (CSV)\n"
        f'CSV = """\\\n{text}"""\n'
        "points = pd.read_csv(io.StringIO(CSV), float_precision='round_trip')\n"
        "points"
    )


def _mean_paths(report: StudyReportData) -> str:
    """The points' mean paths as literals, each at its own steps (a point's parameters may set a trajectory's
    length), every k-th step so that each trajectory embeds at most about :data:`PATH_VALUES` numbers."""
    steps: dict[str, dict[int, list[int]]] = {}
    means: dict[str, dict[int, list[float | None]]] = {}
    for name, paths in report.paths.items():
        every = max(1, -(-sum(len(p.steps) for p in paths) // PATH_VALUES))
        steps[name], means[name] = {}, {}
        for p in paths:
            keep = range(0, len(p.steps), every)
            steps[name][p.point] = [p.steps[i] for i in keep]
            means[name][p.point] = [p.mean[i] for i in keep]
    return "\n".join(
        [
            "# per trajectory output and point: the steps drawn, and the mean at each (None: no finite mean)",
            f"STEPS = {pprint.pformat(steps, sort_dicts=False, width=110, compact=True)}",
            f"MEAN_PATHS = {pprint.pformat(means, sort_dicts=False, width=110, compact=True)}",
        ]
    )


def _load_point(data: str, home: str | None, api_url: str | None) -> str:
    if data == "local":
        return "\n".join(
            [
                "from ancho.api import Results",
                "from ancho.stores import open_store",
                "",
                f"store = open_store(os.environ.get('ANCHO_STORE', {home!r}))",
                "",
                "",
                "def load_point(k):",
                "    '''Point k's results: one row per sequence (its run's outputs).'''",
                "    return Results(store, store.get_run(RUNS[k])).frame",
                "",
                "",
                "load_point(min(RUNS)) if RUNS else 'no point has a run yet'",
            ]
        )
    return "\n".join(
        [
            "import urllib.request",
            "",
            f"ANCHO_URL = os.environ.get('ANCHO_URL', {api_url!r}).rstrip('/')",
            "",
            "",
            "def load_point(k):",
            "    '''Point k's results: one row per sequence, fetched from the server as Parquet.'''",
            "    token = os.environ.get('ANCHO_TOKEN')",
            "    if not token:",
            "        raise RuntimeError('set ANCHO_TOKEN to your API token (`ancho users add NAME` on the server prints one)')",
            "    request = urllib.request.Request(f'{ANCHO_URL}/api/v1/runs/{RUNS[k]}/results?format=parquet',",
            "                                     headers={'Authorization': f'Bearer {token}'})",
            "    with urllib.request.urlopen(request) as response:",
            "        return pd.read_parquet(io.BytesIO(response.read()))",
            "",
            "",
            "load_point(min(RUNS)) if RUNS else 'no point has a run yet'",
        ]
    )


MEAN_PATHS_CODE = """\
for name, paths in MEAN_PATHS.items():
    fig, ax = plt.subplots(figsize=(9, 3.4))
    colour = points.set_index('point')[PARAMETERS[0]] if PARAMETERS else None
    numeric = colour is not None and pd.api.types.is_numeric_dtype(colour)
    scale = plt.Normalize(colour.min(), colour.max()) if numeric else None
    for point, mean in paths.items():
        ax.plot(STEPS[name][point], np.array(mean, dtype=float), linewidth=0.7, color=plt.cm.viridis(scale(colour[point])) if numeric else None)
    if numeric:
        fig.colorbar(plt.cm.ScalarMappable(norm=scale, cmap='viridis'), ax=ax, label=PARAMETERS[0])
    ax.set_xlabel('step')
    ax.set_title(f'{name}: mean path of each point', loc='left')
    plt.show()"""

PICTURES_CODE = """\
series = [(f'{n}.mean', f'{n}.ci95_low', f'{n}.ci95_high', n) for n in OUTPUTS]
series += [(f'p({e})', f'p({e}).ci95_low', f'p({e}).ci95_high', f'p({e})') for e in TARGETS]
done = points.dropna(subset=[s[0] for s in series], how='all') if series else points
for value, low, high, label in series[:24]:  # the first 24; list others to see them
    fig, ax = plt.subplots(figsize=(9, 3.4))
    if len(PARAMETERS) == 1:
        p = PARAMETERS[0]
        d = done.sort_values(p)
        x = d[p] if pd.api.types.is_numeric_dtype(d[p]) else d[p].astype(str)
        ax.fill_between(x, d[low], d[high], alpha=0.2, linewidth=0, label='95% CI')
        ax.plot(x, d[value], marker='o', markersize=3, label='mean')
        ax.set_xlabel(p)
        ax.legend()
    elif len(PARAMETERS) == 2:
        a, b = PARAMETERS
        shown = ax.scatter(done[a], done[b], c=done[value], cmap='viridis')
        fig.colorbar(shown, ax=ax)
        ax.set_xlabel(a)
        ax.set_ylabel(b)
    else:
        scaled = done[PARAMETERS + [value]].apply(lambda c: (c - c.min()) / (c.max() - c.min() or 1))
        scaled['bin'] = pd.qcut(done[value], 4, duplicates='drop').astype(str)
        pd.plotting.parallel_coordinates(scaled, 'bin', ax=ax, alpha=0.5, linewidth=0.8)
    ax.set_title(label, loc='left')
    fig.tight_layout()
    plt.show()"""

SENSITIVITY_CODE = """\
rows = []
for output, entry in sensitivity.items():
    for index in ('S1', 'ST', 'mu_star', 'sigma'):
        for parameter, v in (entry.get(index) or {}).items():
            v = v if isinstance(v, dict) else {'value': v}
            low, high = v.get('ci95') or (None, None)
            rows.append({'output': output, 'index': index, 'parameter': parameter,
                         'value': v.get('value'), 'ci95_low': low, 'ci95_high': high})
    if entry.get('warning'):
        print(f"{output}: {entry['warning']}")
pd.DataFrame(rows)"""
