"""The task generators: targets are the right vectors at the right steps, and streams lose nothing."""
import pytest
import torch

from helpers import tasks


def test_copy_targets_are_the_input_vectors_after_the_delimiter():
    x, y, mask = tasks.copy_episode(batch=5, length=4, bits=6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 9, 8) and y.shape == (5, 9, 6) and mask.tolist() == [0] * 5 + [1] * 4
    assert torch.equal(y[:, 5:], x[:, :4, :6])                 # vector i is asked for N+1 steps later
    assert x[:, 4, 6].eq(1).all() and x[:, :4, 6:].eq(0).all()  # the delimiter, and only there
    assert x[:, 5:].eq(0).all() and y[:, :5].eq(0).all()       # blank inputs while answering


def test_repeat_copy_repeats_the_sequence_and_shows_the_count():
    x, y, mask = tasks.repeat_copy_episode(batch=3, length=2, repeats=3, bits=4)
    assert x.shape[1] == 2 + 1 + 6 and mask.sum() == 6
    for r in range(3):
        assert torch.equal(y[:, 3 + 2 * r:5 + 2 * r], x[:, :2, :4])
    assert torch.allclose(x[:, 2, 5], torch.full((3,), 3 / tasks.MAX_REPEATS))
    with pytest.raises(ValueError, match="repeats"):
        tasks.repeat_copy_episode(1, 2, repeats=0)


def test_stream_windows_concatenate_to_whole_episodes():
    stream = tasks.CopyStream(batch=2, bits=3, level=2, seed=0)
    windows = [stream.next_window(3) for _ in range(5)]            # 15 steps = three 5-step episodes
    x = torch.cat([w[0] for w in windows], 1)
    y = torch.cat([w[1] for w in windows], 1)
    mask = torch.cat([w[2] for w in windows])
    for e in range(3):
        episode = slice(5 * e, 5 * e + 5)
        assert torch.equal(y[:, episode][:, 3:], x[:, episode][:, :2, :3])
        assert mask[episode].tolist() == [0, 0, 0, 1, 1]


def test_text_encoding_round_trips_and_splits():
    train, test, alphabet = tasks.load_text(max_chars=20_000)
    assert len(train) == 18_000 and len(test) == 2_000 and len(alphabet) < 128
    codes = tasks.encode(test, alphabet)
    assert "".join(alphabet[i] for i in codes) == test
    x, y, mask = tasks.TextStream(codes, len(alphabet), batch=4).next_window(10)
    assert torch.equal(x[:, 1:].argmax(-1), y[:, :-1])          # the target is the next character
    with pytest.raises(ValueError, match="alphabet"):
        tasks.encode("é", alphabet)
