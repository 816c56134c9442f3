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
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

GAMBLER = (Path(__file__).resolve().parents[1] / "examples" / "gambler.py").read_text()


def start(home: Path, port: int) -> subprocess.Popen:
    env = {**C.child_env(home), "ANCHO_WORKERS": "2"}
    env.pop("ANCHO_CONFIG", None)
    proc = subprocess.Popen([*C.ancho_cli(), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(60)


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


def main() -> None:
    ap = C.base_parser(__doc__)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--sequences", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    C.header("Web: study pages", f"{args.points:,} points × {args.sequences} sequences, {args.reps} cold starts")
    home = C.scratch_home("study-page")
    try:
        added = subprocess.run([*C.ancho_cli(), "users", "add", "bench"], env=C.child_env(home), capture_output=True,
                               text=True, check=True)  # fmt: skip
        token = added.stdout.strip().splitlines()[-1]
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        proc = start(home, port)
        api = httpx.Client(base_url=url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=600)
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            data = GAMBLER.encode()
            info = tarfile.TarInfo("model.py")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        upload = api.post("/models", files={"file": ("g.tar.gz", buf.getvalue())}).json()["id"]
        points = [{"p": round(0.45 + 0.1 * k / max(1, args.points - 1), 6)} for k in range(args.points)]
        body = {"model": {"upload": upload}, "design": {"points": points}, "params": {"stake": 3, "goal": 10},
                "sequences": args.sequences, "seed": 1, "targets": ["rounds>=30"]}  # fmt: skip
        r = api.post("/studies", json=body)
        assert r.status_code == 201, r.text
        study_id = r.json()["id"]
        t0 = time.perf_counter()
        while api.get(f"/studies/{study_id}").json()["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
        print(
            f"study {study_id}: {api.get(f'/studies/{study_id}').json()['status']} in {time.perf_counter() - t0:.0f} s"
        )
        runs, first, later, sizes = [], [], [], {}
        for rep in range(args.reps):
            if rep:
                stop(proc)
                proc = start(home, port)
            http = signed_in(url, token)
            timed(http, "/runs")  # the server's own warm-up (templates, the store's connection)
            ms, sizes["runs"] = timed(http, "/runs")
            runs.append(ms)
            ms, sizes["study"] = timed(http, f"/studies/{study_id}")
            first.append(ms)
            later.append(timed(http, f"/studies/{study_id}")[0])
            http.close()
        stop(proc)
        base = C.med(runs)
        rows = [
            ["runs list page (baseline)", C.fmt(base), C.fmt(min(runs)), f"{sizes['runs'] / 1024:.0f}", "1.00"],
            [
                "study page, first view",
                C.fmt(C.med(first)),
                C.fmt(min(first)),
                f"{sizes['study'] / 1024:.0f}",
                f"{C.med(first) / base:.1f}",
            ],  # fmt: skip
            [
                "study page, later views",
                C.fmt(C.med(later)),
                C.fmt(min(later)),
                f"{sizes['study'] / 1024:.0f}",
                f"{C.med(later) / base:.1f}",
            ],  # fmt: skip
        ]
        print(C.table(rows, ["page", "median ms", "min ms", "KiB", "× baseline (medians)"]))
        print(C.load_note())
        C.write_json(args.json, {"runs_ms": runs, "first_ms": first, "later_ms": later, "sizes": sizes})
    finally:
        C.cleanup(home)


if __name__ == "__main__":
    main()
