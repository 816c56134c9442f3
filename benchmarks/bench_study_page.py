"""Time to first view of a 2,000-point study's page on the web site, against the runs list page in the same run.

    .venv/bin/python benchmarks/bench_study_page.py [--points 2000] [--sequences 20] [--reps 5]

A real ``ancho serve`` on 127.0.0.1 with a scratch home and one user; a
study of ``--points`` points (gambler, ``p`` over a points design, one
target) is submitted over REST and run to its end. Then, signed in through
the sign-in form like a browser, each repetition restarts the server (so
the study page's cache is cold) and times, whole bodies read:

- baseline: ``GET /runs`` (the runs list page: the newest 100 runs, here the study's points);
- ``GET /studies/{id}``: the first view (the summary read, points table, pictures drawn);
- the same page again (the page's cache of ended studies).

Reported as medians and minima, the study's first view also as a ratio to the baseline.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.REPO))
from tests.server.conftest import Server, add_user, tar_gz  # noqa: E402  the tests' own server: one definition

GAMBLER = Path(C.GAMBLER).read_text()


def signed_in(url: str, token: str) -> httpx.Client:
    http = httpx.Client(base_url=url, timeout=600)
    csrf = re.search(r'name="csrf" value="([^"]+)"', http.get("/signin").text).group(1)
    assert http.post("/signin", data={"token": token, "csrf": csrf, "next": "/runs"}).status_code == 303
    return http


def timed(http: httpx.Client, path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = http.get(path)
    ms = (time.perf_counter() - t0) * 1000
    assert r.status_code == 200, (path, r.status_code)
    return ms, len(r.content)


def run_study(url: str, token: str, points: int, sequences: int) -> str:
    """Submit the gambler over ``points`` values of ``p`` and wait for its end; the study's id."""
    api = httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=600)
    upload = api.post("/models", files={"file": ("g.tar.gz", tar_gz({"model.py": GAMBLER}))}).json()["id"]
    values = [{"p": round(0.45 + 0.1 * k / max(1, points - 1), 6)} for k in range(points)]
    body = {"model": {"upload": upload}, "design": {"points": values}, "params": {"stake": 3, "goal": 10},
            "sequences": sequences, "seed": 1, "targets": ["rounds>=30"]}  # fmt: skip
    r = api.post("/studies", json=body)
    assert r.status_code == 201, r.text
    study_id = r.json()["id"]
    t0 = time.perf_counter()
    while (status := api.get(f"/studies/{study_id}").json()["status"]) not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.5)
    print(f"study {study_id}: {status} in {time.perf_counter() - t0:.0f} s")
    api.close()
    return study_id


def main() -> None:
    ap = C.base_parser(__doc__)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--sequences", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    C.header("Web: study pages", f"{args.points:,} points × {args.sequences} sequences, {args.reps} cold starts")
    C.use_pyc_here()  # the server and its workers too
    with C.scratch("study-page") as root:
        server = Server(root / "home", name="bench").start()
        try:
            token = add_user(server.home, "bench")
            study_id = run_study(server.url, token, args.points, args.sequences)
            runs, first, later, sizes = [], [], [], {}
            for rep in range(args.reps):
                if rep:  # a cold cache: the study page's is the server's own
                    server.stop()
                    server.start()
                http = signed_in(server.url, token)
                timed(http, "/runs")  # the server's own warm-up (templates, the store's connection)
                ms, sizes["runs"] = timed(http, "/runs")
                runs.append(ms)
                ms, sizes["study"] = timed(http, f"/studies/{study_id}")
                first.append(ms)
                later.append(timed(http, f"/studies/{study_id}")[0])
                http.close()
        finally:
            server.stop()
    base = C.med(runs)
    rows = [["runs list page (baseline)", C.fmt(base), C.fmt(min(runs)), f"{sizes['runs'] / 1024:.0f}", "1.00"]]
    for label, ms in (("study page, first view", first), ("study page, later views", later)):
        rows.append(
            [label, C.fmt(C.med(ms)), C.fmt(min(ms)), f"{sizes['study'] / 1024:.0f}", f"{C.med(ms) / base:.1f}"]
        )
    print(C.table(rows, ["page", "median ms", "min ms", "KiB", "× baseline (medians)"]))
    print(C.load_note())
    C.write_json(args.json, {"runs_ms": runs, "first_ms": first, "later_ms": later, "sizes": sizes})


if __name__ == "__main__":
    main()
