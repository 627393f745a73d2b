"""Batches from the latent cache: equal-length buckets, seeded order, reference-audio plans, collate.

Every random choice is a pure function of ``(seed, stream, step, ...)`` through
:func:`stream_generator`, never of how many numbers were drawn before. So a resumed run only needs
the step counter to continue exactly, and the draws for global sample ``j`` of a step do not depend
on how many ranks share the batch (rank ``r`` simply takes its slice of the global batch).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..text.transcript import tokenize_transcript
from .latents import LatentCache

__all__ = [
    "STREAM_DATA",
    "STREAM_TASKS",
    "STREAM_REFS",
    "STREAM_COND_DROP",
    "REF_MODES",
    "stream_generator",
    "BucketBatchSampler",
    "RefPlan",
    "plan_references",
    "LatentBatch",
    "collate",
    "plan_cond_drop",
]

log = logging.getLogger(__name__)

# Independent random streams (the second entry of every seed tuple).
STREAM_DATA, STREAM_TASKS, STREAM_REFS, STREAM_COND_DROP = 1, 2, 3, 4
REF_MODES = ("same", "timbre")


def stream_generator(seed: int, *counters: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, *counters)`` through numpy's ``SeedSequence`` hash, so
    neighbouring counters give unrelated streams."""
    if seed < 0 or any(c < 0 for c in counters):
        raise ValueError(f"seed={seed} and counters={counters} must be >= 0.")
    state = np.random.SeedSequence([int(seed), *map(int, counters)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class BucketBatchSampler:
    """Global batches drawn from one length bucket at a time, in a seeded order.

    Epoch ``e`` shuffles each bucket with ``stream_generator(seed, STREAM_DATA, e)``, cuts it into
    batches of ``batch_size`` (a bucket's remainder sits the epoch out; the shuffle changes who),
    then shuffles the batch order. Step ``s`` reads batch ``s mod n`` of epoch ``s // n``.

    Args:
        keys: the bucket key of every dataset index (e.g. ``(T_v, T_a)``).
        batch_size: global batch size.
        seed: data-order seed.
    """

    def __init__(self, keys: Sequence[Hashable], batch_size: int, *, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is invalid: expected >= 1.")
        self.batch_size = batch_size
        self.seed = seed
        buckets: dict[Hashable, list[int]] = {}
        for i, k in enumerate(keys):
            buckets.setdefault(k, []).append(i)
        self.buckets = dict(sorted(buckets.items(), key=lambda kv: str(kv[0])))
        small = {str(k): len(v) for k, v in self.buckets.items() if len(v) < batch_size}
        self.batches_per_epoch = sum(len(v) // batch_size for v in self.buckets.values())
        if self.batches_per_epoch == 0:
            sizes = {str(k): len(v) for k, v in self.buckets.items()}
            raise ValueError(
                f"no length bucket holds batch_size={batch_size} clips (bucket sizes {sizes}). "
                f"Batches never mix lengths: add clips, give them fewer distinct durations (data.seconds=...), "
                f"or lower batch_size."
            )
        if small:
            log.warning("length buckets smaller than the batch size are never used: %s", small)
        self._epoch: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` in order (each a list of dataset indices from one bucket)."""
        g = stream_generator(self.seed, STREAM_DATA, epoch)
        batches: list[list[int]] = []
        for idx in self.buckets.values():
            perm = torch.randperm(len(idx), generator=g).tolist()
            shuffled = [idx[p] for p in perm]
            for s in range(0, len(shuffled) - self.batch_size + 1, self.batch_size):
                batches.append(shuffled[s : s + self.batch_size])
        order = torch.randperm(len(batches), generator=g).tolist()
        return [batches[o] for o in order]

    def batch(self, step: int) -> list[int]:
        """The global batch of optimiser step ``step`` (0-based)."""
        e, pos = divmod(step, self.batches_per_epoch)
        if self._epoch is None or self._epoch[0] != e:
            self._epoch = (e, self.epoch(e))
        return self._epoch[1][pos]


@dataclass(frozen=True)
class RefPlan:
    """Which reference-audio segment each sample of a global batch gets.

    Attributes:
        length: ``T_r`` latent frames (0 = no reference in this batch; all or none).
        offsets: start frame per global sample.
        from_pool: per global sample, True = cut from the clip's timbre partner (``ref_pool``),
            False = from the clip's own audio.
    """

    length: int
    offsets: tuple[int, ...] = ()
    from_pool: tuple[bool, ...] = ()


def plan_references(
    cache: LatentCache,
    indices: Sequence[int],
    *,
    seed: int,
    step: int,
    prob: float,
    seconds: tuple[float, float],
    rate: float,
    mode: str,
) -> RefPlan:
    """Draw this step's reference segments (paper §4.1: a random 1-3 s segment; stage 2 mismatched).

    With probability ``prob`` the whole batch gets a reference (a ``[B, C_a, T_r]`` tensor needs one
    length), else none. ``T_r`` is uniform between ``seconds`` converted at ``rate`` latents per
    second, capped by the shortest source in the batch. ``mode="same"`` cuts it from the clip's own
    audio; ``"timbre"`` from its same-timbre partner when the cache has one (else its own audio).

    Args:
        cache: the latent cache.
        indices: the global batch.
        seed, step: select the random stream.
        prob: probability that a batch carries references.
        seconds: ``(min, max)`` reference duration.
        rate: audio latents per second.
        mode: one of ``REF_MODES``.
    """
    if mode not in REF_MODES:
        raise ValueError(f"ref_mode={mode!r} is unknown: expected one of {REF_MODES}.")
    g = stream_generator(seed, STREAM_REFS, step)
    if prob <= 0 or float(torch.rand(1, generator=g)) >= prob:
        return RefPlan(0)
    items = [cache[i] for i in indices]
    from_pool = tuple(mode == "timbre" and it.ref_pool is not None for it in items)
    src_len = [int((it.ref_pool if p else it.a_x0).shape[1]) for it, p in zip(items, from_pool)]
    cap = min(src_len)
    lo = min(cap, max(1, round(seconds[0] * rate)))
    hi = min(cap, max(lo, round(seconds[1] * rate)))
    length = int(torch.randint(lo, hi + 1, (1,), generator=g))
    offsets = tuple(int(torch.randint(0, n - length + 1, (1,), generator=g)) for n in src_len)
    return RefPlan(length, offsets, from_pool)


def plan_cond_drop(seed: int, step: int, batch_size: int, prob: float) -> list[bool]:
    """Which rows of global batch ``step`` train the unconditional branch (text replaced by the empty
    prompt). Row ``j`` draws from ``stream_generator(seed, STREAM_COND_DROP, step, j)``, so the choice
    of a sample does not depend on the number of ranks. ``prob = 0`` drops nothing (and draws nothing).
    """
    if prob <= 0:
        return [False] * batch_size
    return [
        bool(torch.rand((), generator=stream_generator(seed, STREAM_COND_DROP, step, j)) < prob)
        for j in range(batch_size)
    ]


@dataclass
class LatentBatch:
    """A collated batch (one rank's slice of the global batch).

    Attributes:
        v_x0: ``[B, C_v, T_v, H, W]``; a_x0: ``[B, C_a, T_a]`` clean latents.
        caption: ``[B, L, text_dim]`` zero-padded caption tokens; caption_mask ``[B, L]`` bool.
        transcript_ids, transcript_mask: ``[B, L_s]`` character ids and bool mask.
        a_ref: ``[B, C_a, T_r]`` reference latents, or None.
        indices: dataset index of each row.
    """

    v_x0: torch.Tensor
    a_x0: torch.Tensor
    caption: torch.Tensor
    caption_mask: torch.Tensor
    transcript_ids: torch.Tensor
    transcript_mask: torch.Tensor
    a_ref: torch.Tensor | None
    indices: list[int]

    def to(self, device: torch.device | str) -> LatentBatch:
        """The same batch with every tensor on ``device``."""
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return LatentBatch(
            mv(self.v_x0), mv(self.a_x0), mv(self.caption), mv(self.caption_mask), mv(self.transcript_ids),
            mv(self.transcript_mask), mv(self.a_ref), self.indices,
        )


def collate(
    cache: LatentCache,
    indices: Sequence[int],
    *,
    plan: RefPlan | None = None,
    rows: slice | None = None,
    max_transcript: int = 512,
    drop: Sequence[bool] | None = None,
) -> LatentBatch:
    """Stack the rows ``rows`` of the global batch ``indices`` (all of it by default).

    Captions and transcripts are padded to the longest in the *global* batch, so a rank's slice is
    exactly the corresponding rows of the single-process batch.

    Args:
        cache: the latent cache.
        indices: the global batch (one length bucket).
        plan: reference segments for the global batch (None = no reference).
        rows: this rank's slice of the global batch.
        max_transcript: characters kept per transcript.
        drop: per row of the global batch, True to replace its caption by the cache's
            ``null_caption`` and its transcript by ``""`` (see :func:`plan_cond_drop`).
    """
    rows = rows or slice(0, len(indices))
    items = [cache[i] for i in indices]
    keys = {it.length_key for it in items}
    if len(keys) != 1:
        raise ValueError(f"a batch mixes latent lengths {sorted(keys)}; use BucketBatchSampler, which never does.")
    drop = list(drop) if drop is not None else [False] * len(items)
    if len(drop) != len(items):
        raise ValueError(f"drop has {len(drop)} entries for a batch of {len(items)}; pass one per row.")
    if any(drop) and cache.null_caption is None:
        raise ValueError(
            "condition dropout needs the empty prompt's caption tokens, and this latent cache has none (it was "
            "built before cond_drop existed). Rebuild the cache (drop --latents), or train with cond_drop=0."
        )
    captions = [cache.null_caption if d else it.caption for it, d in zip(items, drop)]
    ids, tmask = tokenize_transcript(["" if d else it.transcript for it, d in zip(items, drop)],
                                     max_len=max_transcript)
    cap_len = max(c.shape[0] for c in captions)
    mine = list(range(len(items)))[rows]
    caption = torch.zeros(len(mine), cap_len, cache.text_dim)
    caption_mask = torch.zeros(len(mine), cap_len, dtype=torch.bool)
    for r, j in enumerate(mine):
        n = captions[j].shape[0]
        caption[r, :n] = captions[j]
        caption_mask[r, :n] = True
    a_ref = None
    if plan is not None and plan.length:
        segs = []
        for j in mine:
            src = items[j].ref_pool if plan.from_pool[j] else items[j].a_x0
            segs.append(src[:, plan.offsets[j] : plan.offsets[j] + plan.length])
        a_ref = torch.stack(segs)
    return LatentBatch(
        v_x0=torch.stack([items[j].v_x0 for j in mine]),
        a_x0=torch.stack([items[j].a_x0 for j in mine]),
        caption=caption,
        caption_mask=caption_mask,
        transcript_ids=ids[rows],
        transcript_mask=tmask[rows],
        a_ref=a_ref,
        indices=[indices[j] for j in mine],
    )
