"""Per-sequence random streams: the documented construction, pinned by known answers, and the engine's paths equal to it."""

import numpy as np
import pytest

import ancho
from ancho.chunk import ChunkRunner
from ancho.streams import MAX_SEED, StreamFactory, new_seed, reference_generator, run_key

# Known answers. Computed once with numpy 2.4.6 from the construction in ancho/streams.py and written
# here as literals: they must NEVER change. A run's numbers are a function of (seed, sequence) alone,
# so any change to the key derivation, the counter layout or the draw methods silently changes every
# stored run's reproduction; if one of these fails, the change (or a numpy upgrade) broke reproducibility.
SEEDS_AND_SEQUENCES = [(s, i) for s in (0, 3, 2**40) for i in (0, 1, 999_999)]

#: run_key(seed): SeedSequence(seed).generate_state(2, uint64)
KNOWN_KEYS = {
    0: [15793235383387715774, 12390638538380655177],
    3: [12467808127879573787, 12872254111863797241],
    2**40: [15836917337869523640, 12110805982567314346],
}

#: the first two raw 64-bit Philox outputs of reference_generator(seed, sequence)
KNOWN_RAW = {
    (0, 0): [259491006799949737, 4754966410622352325],
    (0, 1): [5312087694084997812, 2167078804631760376],
    (0, 999_999): [7789103463518837068, 9313632733756883440],
    (3, 0): [835510913015652550, 2351201279518840966],
    (3, 1): [14305554253145011040, 11482534990018894299],
    (3, 999_999): [15639709542229756350, 14504164730471277046],
    (2**40, 0): [7432343234602004025, 12874798698384642077],
    (2**40, 1): [695636301984883787, 3539142176140407188],
    (2**40, 999_999): [6403817562454949001, 6098254750969846115],
}

#: reference_generator(seed, sequence): the first three random() doubles, then integers(0, 2**63)
KNOWN_DRAWS = {
    (0, 0): ([0.014067035665647709, 0.2577672456246177, 0.47156538101528966], 843197638110165454),
    (0, 1): ([0.2879688509180234, 0.11747757739645215, 0.6985009982986398], 3185213833649141018),
    (0, 999_999): ([0.4222481448430745, 0.504893042183566, 0.5409218205108359], 6849268344273558372),
    (3, 0): ([0.04529313735134588, 0.12745887676025125, 0.2098749737663479], 8870092833625780253),
    (3, 1): ([0.7755056499934534, 0.6224694690909652, 0.38181235492249166], 4427815811718919285),
    (3, 999_999): ([0.8478303531363888, 0.7862723455432294, 0.08223592323325812], 9150937275688556777),
    (2**40, 0): ([0.4029081340806716, 0.6979442359551087, 0.8162098379407393], 3928098575323089838),
    (2**40, 1): ([0.03771051949358961, 0.19185728180532524, 0.6122101956858117], 3743403400912141639),
    (2**40, 999_999): ([0.3471516456707241, 0.3305870524685778, 0.7018888017592605], 7215511392970522253),
}

DRAWS_MODEL = """
class Draws(ancho.Model):
    def sequence(self, rng):
        a, b, c = rng.random(3)
        return {"a": a, "b": b, "c": c, "n": int(rng.integers(0, 2**63))}
"""


def draws(g: np.random.Generator) -> tuple[list[float], int]:
    """What KNOWN_DRAWS records: three doubles, then one integer below 2**63."""
    return g.random(3).tolist(), int(g.integers(0, 2**63))


@pytest.mark.parametrize("seed", sorted(KNOWN_KEYS))
def test_run_key_known_answers(seed):
    assert [int(k) for k in run_key(seed)] == KNOWN_KEYS[seed]


@pytest.mark.parametrize("seed, sequence", SEEDS_AND_SEQUENCES)
def test_reference_generator_known_answers(seed, sequence):
    assert [int(x) for x in reference_generator(seed, sequence).bit_generator.random_raw(2)] == KNOWN_RAW[
        seed, sequence
    ]
    assert draws(reference_generator(seed, sequence)) == KNOWN_DRAWS[seed, sequence]


@pytest.mark.parametrize("seed", sorted(KNOWN_KEYS))
def test_both_rewind_paths_give_the_known_answers(seed):
    """StreamFactory (what the workers use): its C-state rewind and its ``.state`` fallback, in any order."""
    f = StreamFactory(seed)
    assert f.fast
    for sequence in (999_999, 0, 1, 0):
        assert draws(f.at(sequence)) == KNOWN_DRAWS[seed, sequence]
        assert draws(f._at_state(sequence)) == KNOWN_DRAWS[seed, sequence]


@pytest.mark.parametrize("seed", sorted(KNOWN_KEYS))
def test_the_engine_chunk_loop_gives_the_known_answers(seed, write_model):
    """The per-sequence loop of a worker (chunk.run_chunk through ChunkRunner), one chunk spanning several sequences."""
    from ancho.loading import load_model

    cls = load_model(str(write_model(DRAWS_MODEL))).cls
    runner = ChunkRunner(cls, {}, seed)
    checked = 0
    for start, stop in ((0, 2), (999_998, 1_000_000)):
        result = runner.run(start, stop)
        for row, sequence in enumerate(result.sequences.tolist()):
            if (seed, sequence) in KNOWN_DRAWS:
                got = ([float(result.columns[c][row]) for c in "abc"], int(result.columns["n"][row]))
                assert got == KNOWN_DRAWS[seed, sequence], sequence
                checked += 1
    assert checked == 3


def test_a_run_gives_the_known_answers(store, write_model):
    """End to end, through worker processes: the outputs a run stores are the documented streams' draws."""
    r = ancho.run(str(write_model(DRAWS_MODEL)), sequences=2, seed=3, workers=2, store=store)
    got = {int(row.sequence): ([row.a, row.b, row.c], int(row.n)) for row in r.frame.itertuples()}
    assert got == {i: KNOWN_DRAWS[3, i] for i in (0, 1)}


@pytest.mark.parametrize("seed", [0, 1, 12345, MAX_SEED])
def test_fast_path_matches_documented_construction(seed):
    f = StreamFactory(seed)
    assert f.fast
    for i in [0, 1, 2, 999, 2**33 + 5]:
        got = f.at(i).normal(size=7)
        want = reference_generator(seed, i).normal(size=7)
        assert np.array_equal(got, want)


def test_state_setter_fallback_matches_too():
    f = StreamFactory(7)
    for i in [0, 3, 10**9]:
        g = f._at_state(i)
        a = g.integers(0, 2**32, size=3, dtype=np.uint32).tolist() + g.random(4).tolist()
        r = reference_generator(7, i)
        b = r.integers(0, 2**32, size=3, dtype=np.uint32).tolist() + r.random(4).tolist()
        assert a == b


def test_order_of_use_does_not_matter():
    f = StreamFactory(3)
    forward = [f.at(i).random(3).tolist() for i in range(20)]
    backward = [f.at(i).random(3).tolist() for i in reversed(range(20))][::-1]
    assert forward == backward


def test_streams_differ_between_sequences_and_seeds():
    f, g = StreamFactory(1), StreamFactory(2)
    a = [f.at(i).random() for i in range(100)]
    assert len(set(a)) == 100
    assert f.at(5).random() != g.at(5).random()


def test_new_seed_is_json_safe():
    seeds = {new_seed() for _ in range(100)}
    assert len(seeds) == 100 and all(0 <= s <= MAX_SEED for s in seeds)
