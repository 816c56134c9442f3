"""Per-sequence random streams.

Sequence ``i`` of a run with seed ``s`` draws from

    numpy.random.Generator(numpy.random.Philox(key=run_key(s), counter=[0, 0, 0, i]))
    run_key(s) = numpy.random.SeedSequence(s).generate_state(2, numpy.uint64)

Philox is a counter-based generator (Salmon et al., "Parallel random numbers:
as easy as 1, 2, 3", SC'11): every (key, counter) block is an independent
bijection of the counter, so giving each sequence its own counter prefix gives
independent streams that depend on (s, i) alone: not on workers, chunks,
retries or machines. Each sequence may draw up to 2**130 numbers before it
could touch the next one's counters.

Building a fresh Philox object costs ~8 µs and setting its ``.state`` dict
~1 µs (measured; see docs/benchmarks.md), more than our whole per-sequence
budget, so :class:`StreamFactory` keeps one Generator per worker and rewinds
it by writing the counter straight into the bit generator's C state. That
path is checked at start-up against the documented construction above and
falls back to the ``.state`` setter if the layout ever differs, so the
numbers never depend on which path ran.
"""

from __future__ import annotations

import ctypes
import functools
import secrets

import numpy as np

#: Philox4x64 buffers four 64-bit words; a full buffer position forces a fresh block.
_PHILOX_BUFFER_SIZE = 4
#: Seeds are kept below 2**53 so they survive JSON and JavaScript unchanged.
MAX_SEED = 2**53 - 1


def new_seed() -> int:
    """A fresh random seed for runs that were not given one (it is recorded, so the run can be repeated)."""
    return secrets.randbelow(MAX_SEED + 1)


def run_key(seed: int) -> np.ndarray:
    """The Philox key of a run: SeedSequence-hashed so nearby seeds give unrelated keys."""
    return np.array(_run_key(int(seed)), dtype=np.uint64)


@functools.lru_cache(maxsize=64)
def _run_key(seed: int) -> tuple[int, int]:
    # (a study's points share the seed: a worker hashes it once, not once per point)
    k0, k1 = np.random.SeedSequence(seed).generate_state(2, np.uint64).tolist()
    return k0, k1


#: whether this process's Philox C layout passed :meth:`StreamFactory._try_fast_path`'s draws check (None: not yet
#: checked). The layout is NumPy's, the same for every Philox of the process: checked once, not once per run (a
#: study's worker builds a factory per point, and the check's reference generators cost ~0.15 ms each time)
_LAYOUT_OK: bool | None = None


def reference_generator(seed: int, sequence: int) -> np.random.Generator:
    """The documented construction of sequence ``sequence``'s generator (slow; for checks and users)."""
    return np.random.Generator(np.random.Philox(key=run_key(seed), counter=[0, 0, 0, sequence]))


class _PhiloxState(ctypes.Structure):
    # numpy/random/src/philox/philox.h: struct s_philox_state
    _fields_ = [
        ("ctr", ctypes.POINTER(ctypes.c_uint64 * 4)),
        ("key", ctypes.POINTER(ctypes.c_uint64 * 2)),
        ("buffer_pos", ctypes.c_int),
        ("buffer", ctypes.c_uint64 * _PHILOX_BUFFER_SIZE),
        ("has_uint32", ctypes.c_int),
        ("uinteger", ctypes.c_uint32),
    ]


class StreamFactory:
    """Hands out the generator of any sequence of one run, cheaply.

    ``at(i)`` returns the same Generator object every time, rewound to
    sequence ``i``'s stream: it is valid until the next call, which is what a
    worker running sequences one after another needs.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._key = run_key(self.seed)
        self._bitgen = np.random.Philox(key=self._key)
        self.generator = np.random.Generator(self._bitgen)
        self._fast = self._try_fast_path()
        self.at = self._at_fast if self._fast else self._at_state  # type: ignore[method-assign]

    @property
    def fast(self) -> bool:
        """True when the direct C-state rewind passed its self-check."""
        return self._fast

    def _try_fast_path(self) -> bool:
        global _LAYOUT_OK
        try:
            state = _PhiloxState.from_address(self._bitgen.ctypes.state_address)
            counter = state.ctr.contents
            key = state.key.contents
            if [key[0], key[1]] != [int(k) for k in self._key]:
                return False
            self._state, self._counter = state, counter
            if _LAYOUT_OK is None:
                _LAYOUT_OK = self._draws_match()
            return _LAYOUT_OK
        except Exception:
            return False

    def _draws_match(self) -> bool:
        """Whether rewinding through the C state gives the documented streams' draws."""
        try:
            # Check against the documented construction, including after a
            # half-used buffer and a pending 32-bit draw.
            for i, draws in ((0, 1), (5, 3), (2**40 + 7, 2)):
                self._at_fast(i)
                got = self.generator.integers(0, 2**32, size=draws, dtype=np.uint32).tolist()
                got += self.generator.random(3).tolist()
                ref = reference_generator(self.seed, i)
                want = ref.integers(0, 2**32, size=draws, dtype=np.uint32).tolist() + ref.random(3).tolist()
                if got != want:
                    return False
            return True
        except Exception:
            return False

    def _at_fast(self, i: int) -> np.random.Generator:
        c = self._counter
        c[0] = 0
        c[1] = 0
        c[2] = 0
        c[3] = i
        s = self._state
        s.buffer_pos = _PHILOX_BUFFER_SIZE
        s.has_uint32 = 0
        return self.generator

    def _at_state(self, i: int) -> np.random.Generator:
        self._bitgen.state = {
            "bit_generator": "Philox",
            "state": {"counter": np.array([0, 0, 0, i], dtype=np.uint64), "key": self._key},
            "buffer": np.zeros(_PHILOX_BUFFER_SIZE, dtype=np.uint64),
            "buffer_pos": _PHILOX_BUFFER_SIZE,
            "has_uint32": 0,
            "uinteger": 0,
        }
        return self.generator


# -- named substreams -------------------------------------------------------------------------
#
# ``stream(rng, name)`` gives sequence i of a run with seed s a generator keyed by (s, i, name):
#
#     numpy.random.Generator(numpy.random.Philox(key=run_key(s), counter=np.array([0, 0, name_word(name), i], np.uint64)))
#
# (the counter as a uint64 array: a plain list holding a word above 2**63 goes through float64 and loses bits).
#
# Independence: sequence i's own stream starts at counter [0, 0, 0, i] and Philox only carries into
# word 2 after 2**128 blocks, so it lives in the counters [*, *, 0, i]; the substream ``name`` lives in
# [*, *, name_word(name), i] with name_word never 0. Under one key, Philox is a bijection of the counter,
# so disjoint counter ranges are disjoint blocks of one pseudo-random permutation: the streams are as
# independent as any two Philox streams, and depend on (s, i, name) alone. Two names collide only if
# their 64-bit BLAKE2b words do (about k**2 / 2**65 for k names). The key and i are read from ``rng``'s
# state, which is why this works unchanged on every executor and however much ``rng`` has drawn.

_NAME_WORDS: dict[str, int] = {}


def name_word(name: str) -> int:
    """The counter word of substream ``name``: a 64-bit BLAKE2b hash of its UTF-8 text, never 0."""
    word = _NAME_WORDS.get(name)
    if word is None:
        import hashlib

        digest = int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")
        word = _NAME_WORDS[name] = digest % (2**64 - 1) + 1
    return word


def reference_substream(seed: int, sequence: int, name: str) -> np.random.Generator:
    """The documented construction of substream ``name`` of sequence ``sequence`` (slow; for checks)."""
    counter = np.array([0, 0, name_word(name), sequence], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=run_key(seed), counter=counter))


class _Substreams:
    """One cached Generator per name, rewound in place: building one costs ~10 µs, rewinding it ~3 µs (measured)."""

    def __init__(self) -> None:
        self._gens: dict[str, tuple[np.random.Generator, _PhiloxState | None]] = {}
        self._source: tuple | None = None  # (rng's bit generator, its key words, its counter words)

    def get(self, rng: np.random.Generator, name: str) -> np.random.Generator:
        if not isinstance(name, str) or not name:
            raise TypeError(f"ancho.stream: the name must be a non-empty string, got {name!r}")
        bitgen = getattr(rng, "bit_generator", None)
        if not isinstance(bitgen, np.random.Philox):
            raise TypeError(
                "ancho.stream(rng, name) needs the rng Ancho passes to sequence(self, rng) "
                f"(a Philox generator), got {type(bitgen or rng).__name__}"
            )
        if self._source is None or self._source[0] is not bitgen:  # one worker reuses one rng: read it once
            src = _PhiloxState.from_address(bitgen.ctypes.state_address)
            self._source = (bitgen, src.key.contents, src.ctr.contents)
        _, key, ctr = self._source
        k0, k1, sequence = key[0], key[1], ctr[3]
        cached = self._gens.get(name)
        if cached is None:
            gen = np.random.Generator(np.random.Philox(key=np.array([k0, k1], dtype=np.uint64)))
            state = _PhiloxState.from_address(gen.bit_generator.ctypes.state_address)
            cached = self._gens[name] = (gen, state if _rewind_checked(gen, state) else None)
        gen, maybe = cached
        if maybe is None:  # the C layout did not pass its check: the documented (slower) way
            gen.bit_generator.state = {
                "bit_generator": "Philox",
                "state": {
                    "counter": np.array([0, 0, name_word(name), sequence], dtype=np.uint64),
                    "key": np.array([k0, k1], dtype=np.uint64),
                },
                "buffer": np.zeros(_PHILOX_BUFFER_SIZE, dtype=np.uint64),
                "buffer_pos": _PHILOX_BUFFER_SIZE,
                "has_uint32": 0,
                "uinteger": 0,
            }
            return gen
        _rewind(maybe, k0, k1, name_word(name), sequence)
        return gen


def _rewind(state: _PhiloxState, k0: int, k1: int, word: int, sequence: int) -> None:
    key, ctr = state.key.contents, state.ctr.contents
    key[0] = k0
    key[1] = k1
    ctr[0], ctr[1], ctr[2], ctr[3] = 0, 0, word, sequence
    state.buffer_pos = _PHILOX_BUFFER_SIZE
    state.has_uint32 = 0


def _rewind_checked(gen: np.random.Generator, state: _PhiloxState) -> bool:
    """Writing key and counter into the C state must give the documented construction's numbers."""
    try:
        for seed, i, name in ((1, 0, "a"), (2**40, 2**33 + 5, "service")):
            gen.integers(0, 2**32, size=3, dtype=np.uint32)  # leave a half-used buffer and a pending 32-bit draw
            k = run_key(seed)
            _rewind(state, int(k[0]), int(k[1]), name_word(name), i)
            got = gen.random(3).tolist() + gen.integers(0, 2**32, size=3, dtype=np.uint32).tolist()
            ref = reference_substream(seed, i, name)
            if got != ref.random(3).tolist() + ref.integers(0, 2**32, size=3, dtype=np.uint32).tolist():
                return False
        return True
    except Exception:
        return False


_LOCAL = __import__("threading").local()


def stream(rng: np.random.Generator, name: str) -> np.random.Generator:
    """The substream ``name`` of the sequence whose generator is ``rng``: it depends on (seed, sequence, name) only.

    Use one per purpose (``stream(rng, "arrivals")``, ``stream(rng, "service")``)
    so that scenarios drawing different amounts for one purpose keep every
    other purpose's numbers aligned. The returned Generator is shared per
    name and thread and rewound to the substream's start on each call: call
    it once per name per sequence and keep it for that sequence.
    """
    subs = getattr(_LOCAL, "subs", None)
    if subs is None:
        subs = _LOCAL.subs = _Substreams()
    return subs.get(rng, name)
