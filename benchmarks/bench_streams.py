"""Cost per sequence of getting that sequence's random generator.

    .venv/bin/python benchmarks/bench_streams.py [--n 200000] [--reps 7]

Ways to get an independent generator for sequence i of a run with seed s:

* ``np.random.default_rng(SeedSequence(s, spawn_key=(i,)))`` — NumPy's
  recommended spawning (PCG64 behind SeedSequence hashing);
* a fresh ``Generator(Philox(key=k, counter=[0, 0, 0, i]))`` per sequence,
  key precomputed (ancho's documented construction minus the key hashing);
* ``ancho.streams.reference_generator(s, i)`` — the documented construction
  in full (SeedSequence-hashes the key every time);
* one Philox whose ``.state`` dict is set per sequence
  (``StreamFactory._at_state``, ancho's fallback);
* ``StreamFactory.at(i)`` — ancho's fast path (writes the counter into
  the bit generator's C state).

Each is timed alone ("get") and followed by one ``random()`` draw ("get +
draw": a rewound Philox must compute a fresh block). Baselines in the same
run: an empty Python function call (every way is called through one
the same way, so "call excluded" subtracts it), and ``rng.random()`` on one shared
Generator (what the trivial model's sequence costs without any stream).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402

from ancho.streams import StreamFactory, reference_generator, run_key  # noqa: E402


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="sequences per timing (the slow ways use n/10)")
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args()
    C.header("bench_streams: per-sequence generator cost", f"{a.reps} repetitions")
    seed = 12345
    key = run_key(seed)
    factory = StreamFactory(seed)
    state_factory = StreamFactory(seed)
    SeedSequence, default_rng, Generator, Philox = (
        np.random.SeedSequence,
        np.random.default_rng,
        np.random.Generator,
        np.random.Philox,
    )

    shared = np.random.default_rng(seed)

    ways = {
        "baseline: empty function call": (lambda i: None, a.n),
        "baseline: shared rng.random() (no stream)": (lambda i: shared.random(), a.n),
        "default_rng(SeedSequence(s, spawn_key=(i,)))": (
            lambda i: default_rng(SeedSequence(seed, spawn_key=(i,))),
            a.n // 10,
        ),
        "Generator(Philox(key, counter=[0,0,0,i])) fresh": (
            lambda i: Generator(Philox(key=key, counter=[0, 0, 0, i])),
            a.n // 10,
        ),
        "ancho reference_generator(s, i)": (lambda i: reference_generator(seed, i), a.n // 10),
        "one Philox, .state setter (ancho fallback)": (lambda i: state_factory._at_state(i), a.n),
        "StreamFactory.at(i) fast path (ancho)": (lambda i: factory.at(i), a.n),
    }
    print(f"fast path active: {factory.fast}\n", file=sys.stderr)
    res: dict[str, dict[str, list[float]]] = {}
    for _ in range(a.reps):
        for name, (get, n) in ways.items():
            t = time.perf_counter()
            for i in range(n):
                get(i)
            t_get = (time.perf_counter() - t) / n * 1e6
            if name.startswith("baseline"):
                t_draw = t_get
            else:
                t = time.perf_counter()
                for i in range(n):
                    get(i).random()
                t_draw = (time.perf_counter() - t) / n * 1e6
            r = res.setdefault(name, {"get": [], "draw": []})
            r["get"].append(t_get)
            r["draw"].append(t_draw)

    fast = C.med(res["StreamFactory.at(i) fast path (ancho)"]["get"])
    call = C.med(res["baseline: empty function call"]["get"])
    shared_draw = C.med(res["baseline: shared rng.random() (no stream)"]["get"])
    rows = []
    for name, r in res.items():
        g, d = C.med(r["get"]), C.med(r["draw"])
        rows.append([name, g, min(r["get"]), d, g / fast, (g - call) / (fast - call) if fast > call else None])
    print("µs per sequence (median, min over repetitions)")
    print(C.table(rows, ["way", "get med", "get min", "get + draw med", "× fast path", "× fast path, call excluded"]))
    fd = C.med(res["StreamFactory.at(i) fast path (ancho)"]["draw"])
    print(
        f"\nfast path + first draw costs {fd - shared_draw:.3f} µs more than a draw from a shared generator "
        f"({fd:.3f} vs {shared_draw:.3f} µs)"
    )
    print(C.load_note())
    C.write_json(
        a.json,
        {
            "benchmark": "streams",
            "fast_path": factory.fast,
            "results": {k: {m: C.stat(v) for m, v in r.items()} for k, r in res.items()},
        },
    )


if __name__ == "__main__":
    main()
