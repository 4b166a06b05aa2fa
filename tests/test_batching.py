import numpy as np

from harness.engine.batching import duration_batches, endless_batches, padding_fraction


def _lengths(n=500, seed=0):
    return np.random.default_rng(seed).integers(16_000, 160_000, size=n).tolist()


def test_batches_respect_the_padded_budget_and_cover_everything_once():
    lengths = _lengths()
    budget = 16 * 16_000
    for rng in (None, np.random.default_rng(1)):
        batches = duration_batches(lengths, budget, rng)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= budget


def test_item_longer_than_budget_gets_its_own_batch():
    batches = duration_batches([10, 1000, 10], budget=100)
    assert [1] in batches and sorted(map(len, batches)) == [1, 2]


def test_duration_batches_pad_far_less_than_count_batches():
    lengths = _lengths()
    rng = np.random.default_rng(0)
    ours = duration_batches(lengths, 16 * 16_000, rng)
    order = rng.permutation(len(lengths)).tolist()
    by_count = [order[i:i + 8] for i in range(0, len(order), 8)]
    assert padding_fraction(lengths, ours) < 0.1
    assert padding_fraction(lengths, by_count) > 0.25


def test_short_clips_travel_in_bigger_batches():
    lengths = [16_000] * 50 + [160_000] * 50
    batches = duration_batches(lengths, 320_000)
    short = [len(b) for b in batches if lengths[b[0]] == 16_000]
    long = [len(b) for b in batches if lengths[b[0]] == 160_000]
    assert sorted(short) == [10, 20, 20] and long == [2] * 25


def test_endless_batches_are_deterministic_for_a_seed_and_vary_by_epoch():
    lengths = _lengths(100)
    a, b = endless_batches(lengths, 200_000, seed=3), endless_batches(lengths, 200_000, seed=3)
    first = [next(a) for _ in range(40)]
    assert first == [next(b) for _ in range(40)]
    c = endless_batches(lengths, 200_000, seed=4)
    assert first != [next(c) for _ in range(40)]
