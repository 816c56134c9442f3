import numpy as np
import pytest

from ancho.streams import MAX_SEED, StreamFactory, new_seed, reference_generator


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
