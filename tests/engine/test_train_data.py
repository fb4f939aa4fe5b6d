import itertools

import torch

from dgss.engine.train_data import InfiniteStreamSampler, StreamDataset, SyntheticSegDataset


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_two_ranks_see_the_global_batch_of_one_process():
    n, steps = 10, 7
    one = _take(InfiniteStreamSampler(n, seed=3, batch_size=4), 4 * steps)
    r0 = _take(InfiniteStreamSampler(n, seed=3, batch_size=2, rank=0, world_size=2), 2 * steps)
    r1 = _take(InfiniteStreamSampler(n, seed=3, batch_size=2, rank=1, world_size=2), 2 * steps)
    for s in range(steps):
        assert one[4 * s : 4 * s + 4] == r0[2 * s : 2 * s + 2] + r1[2 * s : 2 * s + 2]


def test_stream_is_a_permutation_per_epoch_and_resumes_exactly():
    n = 9
    stream = _take(InfiniteStreamSampler(n, seed=0, batch_size=3), 27)
    for e in range(3):
        chunk = stream[e * n : (e + 1) * n]
        assert sorted(i for i, _ in chunk) == list(range(n)) and {ep for _, ep in chunk} == {e}
    assert [i for i, _ in stream[:n]] != [i for i, _ in stream[n : 2 * n]]  # reshuffled each epoch
    resumed = _take(InfiniteStreamSampler(n, seed=0, batch_size=3, start=12), 15)
    assert resumed == stream[12:]


def test_synthetic_items_and_stream_dataset():
    ds = SyntheticSegDataset(4, 32, 48, num_classes=19, seed=1)
    a, b = ds[2], ds[2]
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, 32, 48)
    assert a["image"].min() >= 0 and a["image"].max() <= 255 and (a["label"] == 255).any()
    assert set(a["label"].unique().tolist()) - {255} <= set(range(8))
    sd = StreamDataset(ds, seed=0)
    assert not sd.normalized and torch.equal(sd[(2, 5)]["image"], a["image"])
