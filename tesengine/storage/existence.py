"""Planning batched existence checks (a FindMissingBlobs for object stores).

Object stores have no "which of these keys are missing?" call, but a listing
returns up to 1,000 keys a request, and content addresses are uniformly
spread hex. So a large batch of keys under one prefix (``<inputs>/file/``)
is cheaper decided by listing the shards (leading hex digits) the batch
touches than by one HEAD per key. This module is pure: it decides which
shards to list, when a listing of a shard may stop, and merges what the
listings saw (:mod:`tesengine.storage.existence_io` does the listing).

Semantics match HEAD exactly: a key seen in a listing is present with the
size the listing gives, exactly what HEAD would have returned; a listing
that started past ``after`` and reached ``last`` (in key order) shows every
key in ``(after, last]``, so a wanted key in that range that it did not
show is absent; a key no listing covered is left to HEAD.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PAGE = 1000  # keys a listing request returns (S3, Azure and GCS alike)
HEX = "0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Plan:
    """How one batch is checked: ``shards`` to list, ``heads`` to HEAD."""

    shards: tuple[str, ...]
    heads: tuple[str, ...]
    reason: str
    #: Listing requests the shards are expected to take.
    cost: int = 0

    @property
    def lists(self) -> bool:
        return bool(self.shards)


def shard_width(namespace: int, batch: int, max_width: int = 4) -> int:
    """Hex digits per shard: enough shards that each is about one page.

    More shards than the batch has keys would list shards no key needs,
    so the width never makes more shards than keys. ``max_width`` 0 means
    one listing of the whole prefix (a store that ignores list offsets).
    """
    if namespace <= PAGE or max_width <= 0:
        return 0
    want = math.ceil(math.log(namespace / PAGE, 16))
    cap = max(0, int(math.log(max(batch, 1), 16)))
    return max(1, min(want, cap, max_width))


def list_cost(namespace: int, width: int, touched: int) -> int:
    """Requests to list ``touched`` shards of ``width`` digits, whole."""
    per_shard = namespace / _count(width)
    return touched * max(1, math.ceil(per_shard / PAGE))


def plan(keys: Iterable[str], namespace: int, *, min_batch: int = 64, max_width: int = 4) -> Plan:
    """Choose HEADs or shard listings for ``keys`` (lowercase hex names).

    ``namespace`` is an estimate of how many keys live under the prefix
    (e.g. from one page of one shard, times the shard count). A batch
    below ``min_batch`` always uses HEADs: a listing cannot beat a few
    requests made at once. Otherwise listing is chosen when its cost, in
    requests, is below the number of keys. ``max_width`` bounds the shard
    width (0: list the prefix from its start, the one listing that needs
    no offset).
    """
    wanted = sorted(set(keys))
    if len(wanted) < min_batch:
        return Plan((), tuple(wanted), f"small batch ({len(wanted)} < {min_batch})")
    width = shard_width(namespace, len(wanted), max_width)
    shards = tuple(sorted({k[:width] for k in wanted}))
    cost = list_cost(namespace, width, len(shards))
    if cost >= len(wanted):
        return Plan((), tuple(wanted), f"listing costs {cost} >= {len(wanted)} HEADs")
    return Plan(shards, (), f"{len(shards)} shards, ~{cost} list requests for {len(wanted)}", cost)


def guard_probe(
    chosen: Plan, keys: Sequence[str], heads: int, *, rounds: int, margin: float
) -> Plan:
    """``chosen``, or HEADs for ``keys`` when HEADs outpace listing on this store.

    Listing is chosen for its request count on stores where a page costs
    about what a HEAD does (S3, GCS, Azure). Some S3 servers instead read
    the whole namespace for every listing request (``rclone serve s3``
    takes over a second a page at 100,000 keys, and its listings do not
    run in parallel). ``heads`` HEADs finished while the probe page was
    awaited, ``rounds`` at once: the listing's ``cost`` pages would take
    about ``cost / rounds`` probe times, the HEADs of ``keys`` about
    ``len(keys) / heads`` of them, and listing is kept unless that is
    ``margin`` times longer.
    """
    if not chosen.lists or heads <= 0:
        return chosen
    listing = chosen.cost / max(1, rounds)
    heading = len(keys) / heads
    if listing <= margin * heading:
        return chosen
    reason = (
        f"{heads} HEADs done while one page was listed: the {len(keys)} left are"
        f" ~{heading:.1f} pages' time, listing ~{chosen.cost} pages {rounds} at once ~{listing:.1f}"
    )
    return Plan((), tuple(sorted(keys)), reason)


#: A listing page dearer than this many HEADs one after another shows a
#: store that reads far more than a page per listing request (S3 answers a
#: page of 1,000 keys in the time of a few HEADs). Such a store keeps doing
#: that work for a listing even after the client has given up on it, which
#: delays every request behind it: listing stops before any shard is sent.
PAGE_HEADS_MAX = 32


def page_too_dear(heads: int, slots: int) -> bool:
    """True when ``heads`` HEADs, ``slots`` at once, finished while one page was listed."""
    return slots > 0 and heads > PAGE_HEADS_MAX * slots


def estimate_namespace(first_page: int, width: int, *, truncated: bool) -> int:
    """Estimate keys under the prefix from one page of one shard of ``width``."""
    if not truncated:
        return first_page * _count(width)
    return max(first_page, PAGE) * 2 * _count(width)  # at least a page more in that shard


def estimate_from_page(names: Sequence[str], after: str, *, complete: bool) -> int:
    """Estimate keys under the prefix from one page listed from past ``after``.

    Content addresses are uniform hex, so the share of the key space a
    page spans gives the density: 1,000 keys spanning 1/100 of it means
    about 100,000. A ``complete`` page (the listing ended) holds every key
    past ``after``.
    """
    start = _fraction(after)
    if complete:
        return math.ceil(len(names) / max(1.0 - start, 1e-9))
    span = _fraction(names[-1]) - start if names else 0.0
    if span <= 0:  # names that are not hex: no density to read
        return estimate_namespace(len(names), 1, truncated=True)
    return math.ceil(len(names) / span)


def shard_done(wanted: Iterable[str], decided: Mapping[str, int | None], last: str) -> bool:
    """True once every wanted key of a shard is decided by keys up to ``last``.

    Listings come in lexical order, so a wanted key below or at ``last``
    that was not seen is absent: the shard can stop there.
    """
    return all(k in decided or k <= last for k in wanted)


def merge(
    wanted: Iterable[str], seen: Mapping[str, int], ranges: Iterable[tuple[str, str | None]]
) -> dict[str, int | None]:
    """Decide each wanted key from listings: size if seen, None if absent.

    ``ranges`` holds ``(after, last)`` per listing: it started past
    ``after`` and reached ``last`` in key order (None: to the end). A key
    no range covers is left out: the caller HEADs it.
    """
    spans = list(ranges)
    out: dict[str, int | None] = {}
    for key in wanted:
        if key in seen:
            out[key] = seen[key]
        elif any(after < key and (last is None or key <= last) for after, last in spans):
            out[key] = None
    return out


def _fraction(name: str) -> float:
    """Where a hex name sits in the key space, from 0 to 1 (by its leading digits)."""
    digits = ""
    for char in name[:8]:
        if char not in HEX:
            break
        digits += char
    return int(digits.ljust(8, "0"), 16) / 16**8 if digits else 0.0


def _count(width: int) -> int:
    """Shards of ``width`` hex digits (an int, where ``16**width`` types as Any)."""
    return 1 << (4 * width)
