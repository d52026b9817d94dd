"""Sequence tasks for the recurrent experiments (Jaderberg et al. 2016), all offline.

- Copy (Graves et al. 2014, the Neural Turing Machine's task): N random binary vectors, a delimiter,
  then the network must write the N vectors back while its input is blank.
- Repeat copy: the same, but the delimiter step also carries a repeat count R and the network must
  write the sequence R times in a row.
- A character-level language model on the text of Python's own documentation (`pydoc_data.topics`,
  shipped with every CPython; PSF licence), split into train and held-out parts.

Every episode uses the same input layout, so one model serves both tasks: `bits` data channels, one
delimiter channel, one repeat-count channel (R / MAX_REPEATS; zero for copy). Targets are the data bits;
`mask` marks the steps on which the output is scored (the answer phase). `CopyStream` concatenates
episodes into one endless stream per batch row, as truncated BPTT sees them: windows of T steps are cut
out of it regardless of where episodes begin and end. Notebook 08.
"""
import torch

MAX_REPEATS = 10


def _check(length, bits, batch):
    if length < 1 or bits < 1 or batch < 1:
        raise ValueError(f"length, bits and batch must be >= 1, got length={length}, bits={bits}, batch={batch}.")


def copy_episode(batch, length, bits=8, generator=None):
    """One copy episode of 2N+1 steps. Returns x (B, 2N+1, bits+2), y (B, 2N+1, bits), mask (2N+1,).

    Steps 0..N-1 show the vectors, step N the delimiter, steps N+1..2N are blank inputs on which the
    target is the vector shown N+1 steps earlier (mask 1 there, 0 elsewhere).
    """
    _check(length, bits, batch)
    sequence = torch.randint(0, 2, (batch, length, bits), generator=generator).to(torch.get_default_dtype())
    steps = 2 * length + 1
    x, y, mask = torch.zeros(batch, steps, bits + 2), torch.zeros(batch, steps, bits), torch.zeros(steps)
    x[:, :length, :bits] = sequence
    x[:, length, bits] = 1.0
    y[:, length + 1:] = sequence
    mask[length + 1:] = 1.0
    return x, y, mask


def repeat_copy_episode(batch, length, repeats, bits=8, generator=None):
    """One repeat-copy episode of N+1+R*N steps: the N vectors, a delimiter carrying R/MAX_REPEATS, then
    the sequence R times as the target (mask 1 on those R*N steps)."""
    _check(length, bits, batch)
    if not 1 <= repeats <= MAX_REPEATS:
        raise ValueError(f"repeats must be in 1..{MAX_REPEATS}, got {repeats}.")
    sequence = torch.randint(0, 2, (batch, length, bits), generator=generator).to(torch.get_default_dtype())
    steps = length + 1 + repeats * length
    x, y, mask = torch.zeros(batch, steps, bits + 2), torch.zeros(batch, steps, bits), torch.zeros(steps)
    x[:, :length, :bits] = sequence
    x[:, length, bits] = 1.0
    x[:, length, bits + 1] = repeats / MAX_REPEATS
    y[:, length + 1:] = sequence.repeat(1, repeats, 1)
    mask[length + 1:] = 1.0
    return x, y, mask


class CopyStream:
    """An endless stream of copy (or repeat-copy) episodes for `batch` parallel rows, cut into windows.

    `level` is the curriculum's current sequence length N; each new episode is drawn at the level in
    force when it starts (so a level change takes effect at the next episode). For repeat copy each
    episode's R is drawn uniformly from 1..max_repeats (the same R across the batch, so rows stay aligned).
    `next_window(T)` returns x (B, T, bits+2), y (B, T, bits), mask (T,) and the level of each step (T,).
    """

    def __init__(self, batch, bits=8, level=1, repeat=False, max_repeats=3, seed=0):
        self.batch, self.bits, self.level, self.repeat, self.max_repeats = batch, bits, level, repeat, max_repeats
        self.generator = torch.Generator().manual_seed(seed)
        self.x = torch.zeros(batch, 0, bits + 2)
        self.y = torch.zeros(batch, 0, bits)
        self.mask = torch.zeros(0)
        self.levels = torch.zeros(0, dtype=torch.long)

    @property
    def inputs(self):
        return self.bits + 2

    def episode(self):
        if self.repeat:
            repeats = int(torch.randint(1, self.max_repeats + 1, (1,), generator=self.generator))
            return repeat_copy_episode(self.batch, self.level, repeats, self.bits, self.generator)
        return copy_episode(self.batch, self.level, self.bits, self.generator)

    def next_window(self, steps):
        while self.mask.shape[0] < steps:
            x, y, mask = self.episode()
            self.x, self.y = torch.cat([self.x, x], 1), torch.cat([self.y, y], 1)
            self.mask = torch.cat([self.mask, mask])
            self.levels = torch.cat([self.levels, torch.full_like(mask, self.level, dtype=torch.long)])
        window = self.x[:, :steps], self.y[:, :steps], self.mask[:steps], self.levels[:steps]
        self.x, self.y, self.mask, self.levels = self.x[:, steps:], self.y[:, steps:], self.mask[steps:], self.levels[steps:]
        return window


def load_text(held_out=0.1, max_chars=None):
    """Python's documentation topics (pydoc_data/topics.py, PSF licence) as one string, cut into
    (train, held-out) at a fixed point. Returns (train_text, test_text, alphabet)."""
    from pydoc_data.topics import topics
    text = "\n".join(topics[key] for key in sorted(topics))
    text = "".join(ch for ch in text if ch.isascii())   # a small, fixed alphabet (drops a few symbols)
    if max_chars:
        text = text[:max_chars]
    cut = int(len(text) * (1 - held_out))
    return text[:cut], text[cut:], sorted(set(text))


def encode(text, alphabet):
    """Character indices (int64) of `text`; every character must be in `alphabet`."""
    index = {ch: i for i, ch in enumerate(alphabet)}
    missing = set(text) - set(index)
    if missing:
        raise ValueError(f"characters not in the alphabet: {sorted(missing)[:10]}; build it from the same text.")
    return torch.tensor([index[ch] for ch in text], dtype=torch.long)


class TextStream:
    """`batch` rows reading consecutive stretches of one encoded text; `next_window(T)` returns
    x (B, T, vocab) one-hot, y (B, T) next characters, mask (T,) of ones. Wraps around at the end."""

    def __init__(self, codes, vocab, batch):
        if len(codes) < 2 * batch:
            raise ValueError(f"text of {len(codes)} characters is too short for {batch} rows.")
        self.codes, self.vocab, self.batch = codes, vocab, batch
        self.row_length = (len(codes) - 1) // batch
        self.position = 0

    def next_window(self, steps):
        if self.position + steps > self.row_length:
            self.position = 0
        starts = torch.arange(self.batch) * self.row_length + self.position
        index = starts[:, None] + torch.arange(steps)[None, :]
        self.position += steps
        x = torch.nn.functional.one_hot(self.codes[index], self.vocab).to(torch.get_default_dtype())
        return x, self.codes[index + 1], torch.ones(steps)
