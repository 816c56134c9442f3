"""The server's resident memory under the multi-user load of tests/server/test_load.py, against the same server under
as many framework-only requests.

    .venv/bin/python benchmarks/bench_server_memory.py [--waves 3]

The test asserts what the server holds as counts (threads, open files, worker
processes after a second wave no more than after the first); the bytes depend
on the machine and the allocator, so they are measured here. A real
``ancho serve`` on 127.0.0.1 (scratch home, 6 users) first answers as many
``GET /api/v1/health`` requests as one wave makes (the baseline: what the
framework alone grows by), then runs the load's waves (every user uploads a
model and submits runs while all poll; results read back). Reported: RSS after
start, after the baseline, after each wave; the growth of each wave against
the baseline's. Goal: the last wave's growth ≤ 10 MB (bounded, not per run).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.REPO))
from tests.server.conftest import Server, add_user  # noqa: E402  the test's own server and scenario: one definition
from tests.server.test_load import USERS, Load, settled  # noqa: E402

MB = 2**20


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--waves", type=int, default=3)
    a = p.parse_args()
    C.header("bench_server_memory: server RSS under the load test's scenario")
    tmp = Path(tempfile.mkdtemp(prefix="ancho-bench-srvmem-", dir=C.SCRATCH_ROOT))
    server = Server(tmp / "home", name="bench").start()
    try:
        tokens = {f"user{i}": add_user(server.home, f"user{i}") for i in range(USERS)}
        rss = [("after start", server.process.memory_info().rss)]
        requests = 3000  # about what one wave makes
        with server.client() as c:
            for _ in range(requests):
                c.get("/health")
        settled(server)
        rss.append((f"after {requests:,} GET /health (baseline)", server.process.memory_info().rss))
        load = Load(server, tokens)
        for wave in range(a.waves):
            before = sum(load.statuses.values())
            load.wave(wave)
            held = settled(server)
            rss.append(
                (
                    f"after wave {wave + 1} ({sum(load.statuses.values()) - before:,} requests, {held})",
                    server.process.memory_info().rss,
                )
            )
    finally:
        server.kill()
        C.cleanup(tmp)
    base_growth = rss[1][1] - rss[0][1]
    rows = []
    for k, (label, value) in enumerate(rss):
        growth = value - rss[k - 1][1] if k else 0
        rows.append([label, value / MB, growth / MB, growth / base_growth if k and base_growth > 0 else None])
    print(C.table(rows, ["", "RSS MB", "growth MB", "× baseline growth"]))
    print()
    print(C.goal_line("last wave's growth", (rss[-1][1] - rss[-2][1]) / MB, 10, " MB"))
    print(C.load_note())
    C.write_json(a.json, {"rss": rss})


if __name__ == "__main__":
    main()
