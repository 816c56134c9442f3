"""A ready-to-run Jupyter notebook (nbformat) with a run's results loaded into a pandas DataFrame.

Its first cells describe the run and load every sequence's outputs into
``frame``; the next ones show the run's summary (as Ancho computed it, next
to the same means recomputed from ``frame``), a histogram and the running
mean with its 95% band per output, and the failures; the last cell is the
reader's. The code uses only pandas, NumPy and Matplotlib (not Ancho), so
the notebook runs wherever it is opened and every step can be changed.

The summary (``summary``) is written as JSON read with ``json.loads``, not as
a Python literal, and a long trajectory's per-step statistics as base64 of
their float64 values (``PER_STEP``): both read back exactly, and a
100,000-step trajectory's notebook is 8.6 MB, not 52, and its first cell
runs in seconds, not 70 (see :func:`json_literal` and :func:`_pack`).

Where the data come from (``data``):

* ``"embed"`` — the rows are in the notebook itself, as CSV text: runs of at
  most :data:`EMBED_MAX_VALUES` values (sequences × columns), a few MB of
  notebook at most;
* ``"parquet"`` — read from a Parquet file beside the notebook (``ancho report
  RUN --notebook FILE`` writes ``FILE`` and ``FILE-stem.parquet``);
* ``"api"`` — fetched from the server's REST API (``…/results?format=parquet``)
  with the token in the ``ANCHO_TOKEN`` environment variable when the
  notebook runs. A token never goes into the file: notebooks get shared.
"""

from __future__ import annotations

import base64
import json
import pprint
from pathlib import Path

from ..chunk import trajectory_steps
from ..stores.base import RunRecord, Store
from .facts import ReportData, gather, run_rows

#: runs with at most this many values (sequences × (outputs + 1)) are embedded in the notebook
EMBED_MAX_VALUES = 200_000
#: a trajectory's per-step statistics are packed (base64 float64) from this many steps on; shorter ones stay JSON
PACK_STEPS = 1000
#: outputs plotted by the notebook's loop (the reader can change the list)
PLOTTED_OUTPUTS = 24
DTYPES = {"bool": "bool", "int": "int64", "float": "float64"}
#: the first lines of a notebook's setup cell (run and study notebooks alike)
IMPORTS = (
    "import io\nimport json\nimport os\n\nimport matplotlib.pyplot as plt\nimport numpy as np\nimport pandas as pd\n"
)


def data_mode(record: RunRecord, large: str) -> str:
    """``"embed"`` for a small run, else ``large`` (``"parquet"`` or ``"api"``)."""
    return "embed" if record.done * (len(record.schema) + 1) <= EMBED_MAX_VALUES else large


def build_notebook(
    store: Store,
    run_id: str,
    data: str = "embed",
    *,
    owner: str | None = None,
    parquet_name: str | None = None,
    api_url: str | None = None,
):
    """The notebook (an ``nbformat`` node) of ``run_id``; ``data`` says where its results are loaded from."""
    import nbformat.v4 as nbf

    from ..plotdata import run_fans

    if data not in ("embed", "parquet", "api"):
        raise ValueError(f"data must be embed, parquet or api, not {data!r}")
    report = gather(store, run_id, owner)
    r = report.record
    cells = [nbf.new_markdown_cell(_intro(report, data, parquet_name, api_url)), nbf.new_code_cell(_setup(report))]
    cells.append(nbf.new_code_cell(_load(store, r, data, parquet_name, api_url)))
    cells.append(
        nbf.new_markdown_cell(
            "## Summary\n\nThe statistics as Ancho computed them"
            + (" (over the sequences stored before the run ended; the run has no summary)" if report.partial else "")
            + ": the mean with its 95% confidence interval (Student t; Wilson for true/false outputs), "
            "standard deviation and percentiles. The second table recomputes count, mean and standard "
            "deviation from `frame`."
        )
    )
    cells.append(nbf.new_code_cell(SUMMARY_CODE))
    cells.append(nbf.new_code_cell(CHECK_CODE))
    if report.summary and (
        report.summary.get("targets") or report.summary.get("custom") or report.summary.get("until")
    ):
        cells.append(nbf.new_code_cell(EXTRAS_CODE))
    cells.append(
        nbf.new_markdown_cell(
            "## Plots\n\nPer output: its distribution, and the running mean in sequence order with a "
            "95% band (mean ± 1.96 standard errors; Ancho's own plots use Student t and Wilson "
            "intervals, which agree with it beyond a few dozen sequences)."
        )
    )
    cells.append(nbf.new_code_cell(PLOT_CODE.replace("PLOTTED_OUTPUTS", str(PLOTTED_OUTPUTS))))
    fans = run_fans(store, run_id, report.summary) if report.stored else []
    if fans:
        cells.append(
            nbf.new_markdown_cell(
                "## Trajectories\n\nPer trajectory output, step by step, from the run's summary: the median, the "
                "50% band (p25 to p75) and the 90% band (p5 to p95) of the sequences' values, the mean with its "
                "95% confidence band, and the first sequences' own paths (`PATHS`)."
            )
        )
        cells.append(nbf.new_code_cell(_paths(fans) + "\n\n" + FAN_CODE))
    if r.failures:
        cells.append(
            nbf.new_markdown_cell(
                f"## Failures\n\n{r.failures:,} sequences raised an exception"
                + (f"; the first {len(report.failures)} are listed." if len(report.failures) < r.failures else ".")
            )
        )
        cells.append(nbf.new_code_cell(_failures(report)))
    cells.append(
        nbf.new_markdown_cell(
            "## Your analysis\n\n`frame` holds one row per sequence: `sequence`, then one column per output."
        )
    )
    cells.append(nbf.new_code_cell("frame.describe()"))
    return new_notebook(cells, {"run": r.id, "data": data})


def new_notebook(cells: list, ancho: dict):
    """A Python 3 notebook of ``cells``, its ``metadata.ancho`` saying what it reports and where its data come from."""
    import nbformat.v4 as nbf

    nb = nbf.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["ancho"] = ancho
    return nb


def write_notebook(store: Store, run_id: str, path: Path) -> list[Path]:
    """Write the notebook of a local run to ``path`` (and, for a large run, its results beside it); returns the files.

    A small run is embedded; a large one is written to :func:`parquet_path`
    (``<stem>.parquet`` in the same folder), which the notebook reads by that
    name: keep the two together. Each file appears whole or not at all.
    """
    from ..exports import write_file, write_parquet

    path = Path(path).expanduser()
    record = store.get_run(run_id)
    mode = data_mode(record, "parquet")
    parquet = parquet_path(path)
    written = [path]
    if mode == "parquet":
        write_file(parquet, lambda sink: write_parquet(store, run_id, sink))
        written.append(parquet)
    nb = build_notebook(store, run_id, mode, parquet_name=parquet.name)
    write_file(path, lambda sink: sink.write(notebook_bytes(nb)))
    return written


def parquet_path(notebook: Path) -> Path:
    """Where a local notebook's results go: ``run.ipynb`` → ``run.parquet`` beside it."""
    return (
        notebook.with_suffix(".parquet")
        if notebook.suffix == ".ipynb"
        else notebook.with_name(notebook.name + ".parquet")
    )


def notebook_bytes(nb) -> bytes:
    import nbformat

    return nbformat.writes(nb).encode()


# -- cells ----------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _intro(report: ReportData, data: str, parquet_name: str | None, api_url: str | None) -> str:
    r = report.record
    lines = [f"# {r.model}: run {r.id}", ""]
    if report.doc:
        lines += [report.doc, ""]
    if r.status != "succeeded":
        lines += [
            f"**The run {r.status}**"
            + (f": {r.error}" if r.error and r.status != "cancelled" else ".")
            + (" The cells below look at the sequences stored before it ended." if report.summary else ""),
            "",
        ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {_md_escape(v)} |" for k, v in run_rows(r)]
    if r.params:
        lines += ["", "Parameters: " + ", ".join(f"`{k}={v!r}`" for k, v in r.params.items())]
    where = {
        "embed": "The results are embedded in this notebook.",
        "parquet": f"The results are read from `{parquet_name}`, which must be in the same folder as this notebook.",
        "api": f"The results are fetched from the Ancho server at `{api_url}` (or `$ANCHO_URL`) with your API token: "
        "set the environment variable `ANCHO_TOKEN` before starting Jupyter.",
    }[data]
    lines += ["", where, "Run all cells (Kernel → Restart & Run All) to load them into the pandas DataFrame `frame`."]
    return "\n".join(lines)


def _setup(report: ReportData) -> str:
    r = report.record
    series = [n for n, k in r.schema.items() if trajectory_steps(k) is not None]
    summary, packed = _pack(report.summary)
    lines = [
        ("import base64\n" if packed else "") + IMPORTS,
        f"RUN = {r.id!r}",
        f"OUTPUTS = {[n for n in r.schema if n not in series]!r}",
        f"TRAJECTORIES = {series!r}",
        f"DTYPES = { ({'sequence': 'int64'} | {n: DTYPES[k] for n, k in r.schema.items() if n not in series})!r}",
        "# the run's summary as Ancho computed it (JSON: read back exactly)"
        + ("; long trajectories' per-step statistics are in PER_STEP, below" if packed else ""),
        f"summary = {json_literal(summary) if summary else 'None'}",
    ]
    if packed:
        lines += ["", PACKED_CODE.replace("PACKED", "{\n" + "".join(_packed_lines(packed)) + "}")]
    return "\n".join(lines)


def _pack(summary: dict | None) -> tuple[dict | None, dict[str, dict[str, str]]]:
    """The summary with each long per-step array (at least :data:`PACK_STEPS` numbers) left null, and those arrays
    as base64 of their float64 bytes (NaN for None): 10.7 characters a number instead of about 20 as JSON.

    Jupyter's kernel (ipykernel) hashes every cell's code in pure Python before running it, about 0.4 s a MB:
    a 100,000-step trajectory's eight arrays, 16 MB as JSON, made its cell take 12.7 s; packed, 8.5 MB, 6 s.
    """
    import numpy as np

    packed: dict[str, dict[str, str]] = {}
    if not summary or not summary.get("trajectories"):
        return summary, packed
    trajectories = {}
    for name, stats in summary["trajectories"].items():
        kept = dict(stats)
        for key, values in stats.items():
            # floats and None only (no int, no NaN: NaN stands for None), so that they unpack to themselves
            if isinstance(values, list) and len(values) >= PACK_STEPS and set(map(type, values)) <= {float, type(None)}:
                array = np.array(values, dtype="<f8")  # None → NaN
                if int(np.isnan(array).sum()) == values.count(None):
                    packed.setdefault(name, {})[key] = base64.b64encode(array.tobytes()).decode()
                    kept[key] = None
        trajectories[name] = kept
    return summary | {"trajectories": trajectories}, packed


def _packed_lines(packed: dict[str, dict[str, str]]):
    for name, arrays in packed.items():
        yield f"    {name!r}: {{\n"
        for key, text in arrays.items():
            yield f"        {key!r}: {text!r},\n"
        yield "    },\n"


def json_literal(value) -> str:
    """Python code that evaluates to ``value`` (JSON-safe, as summaries are): ``json.loads`` of a raw string.

    A long trajectory's summary is a million numbers: as a Python literal its
    cell took seconds and a GB to compile, a string compiles at once and
    ``json.loads`` reads it back bit for bit (floats are written as ``repr``
    writes them). The JSON is laid out like ``pprint``: a dict's entries one a
    line, indented, unless it fits on one; a list of numbers on one line.
    """
    # no ' in the text (JSON spells it \u0027), so nothing in it ends the raw string early; it ends with a newline
    return "json.loads(r'''\n" + _json_lines(value, 0).replace("'", "\\u0027") + "\n''')"


def _json_lines(value, depth: int, width: int = 110) -> str:
    if not isinstance(value, (dict, list)):
        return json.dumps(value)
    flat = _json_within(value, width - depth)
    if flat is not None:
        return flat
    if isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value):
        return json.dumps(value)  # numbers (a trajectory's steps) on one line: 100,000 lines would only be longer
    pad = "\n" + " " * (depth + 1)
    if isinstance(value, list):
        items = [_json_lines(v, depth + 1, width) for v in value]
        return "[" + pad + ("," + pad).join(items) + "\n" + " " * depth + "]"
    items = [f"{json.dumps(k)}: {_json_lines(v, depth + 1, width)}" for k, v in value.items()]
    return "{" + pad + ("," + pad).join(items) + "\n" + " " * depth + "}"


def _json_within(value, room: int) -> str | None:
    """``value`` as JSON on one line if it takes at most ``room`` characters, else None (found without writing it all)."""
    text, size = [], 0
    for chunk in json.JSONEncoder().iterencode(value):
        size += len(chunk)
        if size > room:
            return None
        text.append(chunk)
    return "".join(text)


def _load(store: Store, record: RunRecord, data: str, parquet_name: str | None, api_url: str | None) -> str:
    if data == "embed":
        from ..exports import csv_chunks

        text = b"".join(csv_chunks(store, record.id)).decode()
        return (
            "# every sequence's outputs, as Ancho stored them (CSV)\n"
            f'CSV = """\\\n{text}"""\n'
            "frame = pd.read_csv(io.StringIO(CSV), dtype=DTYPES, float_precision='round_trip')\n"
            "frame"
        )
    if data == "parquet":
        return (
            f"# every sequence's outputs, as Ancho stored them: {parquet_name} sits beside this notebook\n"
            f"frame = pd.read_parquet({parquet_name!r})\n"
            "frame"
        )
    return "\n".join(
        [
            "# every sequence's outputs, fetched from the server's REST API as Parquet",
            "import urllib.request",
            "",
            f"ANCHO_URL = os.environ.get('ANCHO_URL', {api_url!r}).rstrip('/')",
            "token = os.environ.get('ANCHO_TOKEN')",
            "if not token:",
            "    raise RuntimeError('set ANCHO_TOKEN to your API token (`ancho users add NAME` on the server prints one), then run again')",
            "request = urllib.request.Request(f'{ANCHO_URL}/api/v1/runs/{RUN}/results?format=parquet',",
            "                                 headers={'Authorization': f'Bearer {token}'})",
            "with urllib.request.urlopen(request) as response:",
            "    frame = pd.read_parquet(io.BytesIO(response.read()))",
            "frame",
        ]
    )


def _paths(fans: list) -> str:
    """The first sequences' paths of each trajectory, at the fan's steps, as a literal the reader can reuse."""
    paths = {f.name: {"steps": f.steps, "sequences": f.path_sequences, "values": f.paths} for f in fans}
    return "# the first sequences' paths of each trajectory (at the drawn steps)\nPATHS = " + pprint.pformat(
        paths, sort_dicts=False, width=110, compact=True
    )


def _failures(report: ReportData) -> str:
    rows = [{"sequence": f.sequence, "error": f.error, "traceback": f.traceback} for f in report.failures]
    return (
        f"failures = pd.DataFrame({pprint.pformat(rows, sort_dicts=False, width=110)}, columns=['sequence', 'error', 'traceback'])\n"
        "print(failures.traceback.iloc[0] if len(failures) else 'no failures listed')\n"
        "failures[['sequence', 'error']]"
    )


SUMMARY_CODE = """\
if summary is None:
    print('no sequence results were stored, so there is nothing to summarise')
    table = pd.DataFrame()
else:
    table = pd.DataFrame(summary['outputs']).T
    table[['ci95_low', 'ci95_high']] = pd.DataFrame(
        [ci if ci else [None, None] for ci in table.pop('ci95')], index=table.index)
    table = table[['count', 'mean', 'ci95_low', 'ci95_high', 'std', 'sem', 'min', 'p5', 'p25', 'p50', 'p75', 'p95', 'max']]
table"""

CHECK_CODE = """\
values = frame[OUTPUTS].astype(float).replace([np.inf, -np.inf], np.nan)
recomputed = pd.DataFrame({'count': values.count(), 'mean': values.mean(), 'std': values.std()})
if len(table):
    recomputed['summary mean'] = table['mean'].astype(float)
recomputed"""

EXTRAS_CODE = """\
if summary.get('targets'):
    display(pd.DataFrame(summary['targets']))
if summary.get('until'):
    print('precision goal:', summary['until'])
if summary.get('custom'):
    display(pd.Series(summary['custom'], name='custom summaries', dtype=object).to_frame())"""

PLOT_CODE = """\
def plot_output(name):
    x = frame[name].to_numpy(dtype=float)
    ok = np.isfinite(x)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
    if frame[name].dtype == bool:
        counts = [int((~frame[name]).sum()), int(frame[name].sum())]
        left.bar([0, 1], counts, width=0.8)
        left.set_xticks([0, 1], ['false', 'true'])
    else:
        left.hist(x[ok], bins=40)
    left.set_title(f'{name}: distribution', loc='left')
    left.set_ylabel('sequences')
    n = np.arange(1, len(x) + 1)
    count = np.cumsum(ok)
    total = np.cumsum(np.where(ok, x, 0.0))
    squares = np.cumsum(np.where(ok, x * x, 0.0))
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = total / count
        sem = np.sqrt(np.maximum(squares - count * mean * mean, 0) / (count - 1) / count)
    right.fill_between(n, mean - 1.96 * sem, mean + 1.96 * sem, alpha=0.2, linewidth=0, label='95% band')
    right.plot(n, mean, label='running mean')
    right.set_xscale('log')
    settled = n >= min(20, len(n))
    lo, hi = np.nanmin((mean - 1.96 * sem)[settled]), np.nanmax((mean + 1.96 * sem)[settled])
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        right.set_ylim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
    right.set_title(f'{name}: running mean and 95% band', loc='left')
    right.set_xlabel('sequences')
    fig.tight_layout()
    plt.show()


for name in OUTPUTS[:PLOTTED_OUTPUTS]:  # the first PLOTTED_OUTPUTS outputs; list others to see them
    if len(frame):
        plot_output(name)"""

PACKED_CODE = """\
# per trajectory and statistic: base64 of the float64 values, step by step (NaN stands for None: no finite value)
PER_STEP = PACKED
for name, packed in PER_STEP.items():
    for key, text in packed.items():
        values = np.frombuffer(base64.b64decode(text), dtype='<f8').tolist()
        summary['trajectories'][name][key] = [None if v != v else v for v in values]"""

FAN_CODE = """\
def plot_fan(name):
    t = summary['trajectories'][name]
    step = np.arange(t['steps'])
    band = lambda key: np.array([np.nan if v is None else v for v in t[key]], dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
    left.fill_between(step, band('p5'), band('p95'), alpha=0.18, linewidth=0, label='90% band')
    left.fill_between(step, band('p25'), band('p75'), alpha=0.35, linewidth=0, label='50% band')
    left.plot(step, band('p50'), label='median')
    left.fill_between(step, band('ci95_low'), band('ci95_high'), alpha=0.35, linewidth=0)
    left.plot(step, band('mean'), linestyle='--', label='mean (95% band)')
    left.set_title(f'{name}: fan chart over {t["count"]:,} sequences', loc='left')
    p = PATHS[name]
    for number, values in zip(p['sequences'], p['values']):
        right.plot(p['steps'], [np.nan if v is None else v for v in values], linewidth=0.8, label=f'sequence {number}')
    right.set_title(f'{name}: the first sequences', loc='left')
    for ax in (left, right):
        ax.set_xlabel('step')
        ax.legend(fontsize=7)
    fig.tight_layout()
    plt.show()


for name in TRAJECTORIES:
    if summary and name in summary.get('trajectories', {}):
        plot_fan(name)"""
