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
    return np.random.SeedSequence(seed).generate_state(2, np.uint64)


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
        try:
            state = _PhiloxState.from_address(self._bitgen.ctypes.state_address)
            counter = state.ctr.contents
            key = state.key.contents
            if [key[0], key[1]] != [int(k) for k in self._key]:
                return False
            self._state, self._counter = state, counter
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
