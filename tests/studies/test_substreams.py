"""Named substreams: a function of (seed, sequence, name) only, whatever rng drew before, on the engine's rng and the reference one."""

import numpy as np
import pytest

from ancho.streams import StreamFactory, name_word, reference_generator, reference_substream, stream

# Known answers, computed once with numpy 2.4.6 from the construction in ancho/streams.py: they must
# never change, or every stored run whose model uses substreams stops reproducing.
KNOWN = {
    (0, 0, "arrivals"): [0.7856612087067059, 0.10050594834627002, 0.14349605234182128],
    (0, 1, "service"): [0.486776166241388, 0.16410241414806126, 0.24424623110118615],
    (7, 123, "arrivals"): [0.17368810582805194, 0.3099898977838762, 0.8183535224318701],
}


@pytest.mark.parametrize("key", list(KNOWN))
def test_known_answers(key):
    seed, sequence, name = key
    assert reference_substream(seed, sequence, name).random(3).tolist() == KNOWN[key]
    assert stream(reference_generator(seed, sequence), name).random(3).tolist() == KNOWN[key]
    factory = StreamFactory(seed)
    assert stream(factory.at(sequence), name).random(3).tolist() == KNOWN[key]


@pytest.mark.parametrize("drawn", [0, 1, 3, 7, 1001])
def test_independent_of_what_rng_drew_before(drawn):
    factory = StreamFactory(11)
    rng = factory.at(42)
    rng.random(drawn)
    rng.integers(0, 2**32, dtype=np.uint32)  # a pending 32-bit half too
    assert stream(rng, "service").random(4).tolist() == reference_substream(11, 42, "service").random(4).tolist()


def test_names_sequences_and_seeds_differ():
    base = reference_substream(1, 0, "a").random(4).tolist()
    assert reference_substream(1, 0, "b").random(4).tolist() != base
    assert reference_substream(1, 1, "a").random(4).tolist() != base
    assert reference_substream(2, 0, "a").random(4).tolist() != base
    assert reference_generator(1, 0).random(4).tolist() != base  # not the sequence's own stream


def test_engine_factory_follows_each_sequence():
    factory = StreamFactory(5)
    for i in (3, 0, 2**40 + 1, 3):
        rng = factory.at(i)
        rng.random(5)
        assert stream(rng, "arrivals").random(2).tolist() == reference_substream(5, i, "arrivals").random(2).tolist()


def test_two_names_at_once_and_rewound_per_call():
    rng = reference_generator(9, 4)
    arrivals, service = stream(rng, "arrivals"), stream(rng, "service")
    assert arrivals is not service
    first = arrivals.random(2).tolist()
    assert service.random(2).tolist() == reference_substream(9, 4, "service").random(2).tolist()
    assert stream(rng, "arrivals").random(2).tolist() == first  # a call rewinds to the substream's start


def test_name_word_is_never_zero_and_stable():
    assert name_word("arrivals") == 15893502557642533910
    assert all(0 < name_word(f"n{i}") < 2**64 for i in range(1000))


def test_a_foreign_generator_is_refused():
    with pytest.raises(TypeError, match="sequence"):
        stream(np.random.default_rng(1), "arrivals")
    with pytest.raises(TypeError, match="name"):
        stream(reference_generator(1, 1), "")
