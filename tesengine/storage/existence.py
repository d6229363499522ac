"""Planning batched existence checks (a FindMissingBlobs for object stores).

Object stores have no "which of these keys are missing?" call, but a listing
returns up to 1,000 keys a request, and content addresses are uniformly
spread hex. So a large batch of keys under one prefix (``<inputs>/file/``)
is cheaper decided by listing the key ranges the batch touches than by
one HEAD per key: the key space is cut at evenly spaced hex boundaries
into ranges of about a page each. This module is pure: it decides which
ranges to list (or HEADs instead) and merges what the listings saw
(:mod:`tesengine.storage.existence_io` does the listing).

Semantics match HEAD exactly: a key seen in a listing is present with the
size the listing gives, exactly what HEAD would have returned; a listing
that started past ``after`` and reached ``last`` (in key order) shows every
key in ``(after, last]``, so a wanted key in that range that it did not
show is absent; a key no listing covered is left to HEAD.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PAGE = 1000  # keys a listing request returns (S3, Azure and GCS alike)
HEX = "0123456789abcdef"


#: Keys one listing range is planned to hold: under a page, so that a range
#: usually takes one request even where the hex spreads a little unevenly.
RANGE_KEYS = 850
_SPACE = 1 << 32  # the range boundaries are 8 hex digits


@dataclass(frozen=True, slots=True)
class Plan:
    """How one batch is checked: key ``ranges`` to list, or ``heads`` to HEAD.

    A range ``(after, upto)`` is listed from past ``after`` (``""``: from
    the start) and holds the keys up to and including ``upto`` (None: to
    the end).
    """

    ranges: tuple[tuple[str, str | None], ...]
    heads: tuple[str, ...]
    reason: str
    #: Listing requests the ranges are expected to take.
    cost: int = 0
    #: Listing requests one range is expected to take.
    pages_per_range: int = 1
    #: The last wanted key of each range: its listing may stop once past it.
    lasts: tuple[str, ...] = ()

    @property
    def lists(self) -> bool:
        return bool(self.ranges)


def boundaries(namespace: int, offsets: bool = True) -> tuple[str, ...]:
    """Evenly spaced range starts (8 hex digits), about ``RANGE_KEYS`` keys apart.

    The first is ``""``, the start of the key space. Without ``offsets``
    (a store that ignores where a listing should start) there is one
    range, the whole prefix.
    """
    count = min(_SPACE, max(1, math.ceil(namespace / RANGE_KEYS))) if offsets else 1
    return ("", *(f"{i * _SPACE // count:08x}" for i in range(1, count)))


def plan(keys: Iterable[str], namespace: int, *, min_batch: int = 64, offsets: bool = True) -> Plan:
    """Choose HEADs or range listings for ``keys`` (lowercase hex names).

    ``namespace`` is an estimate of how many keys live under the prefix
    (from one page listed from the middle). A batch below ``min_batch``
    always uses HEADs: a listing cannot beat a few requests made at once.
    Otherwise the key space is cut into even ranges of about a page each,
    only the ranges holding a wanted key are listed, and listing is chosen
    when it costs at most half the requests HEADs would (a page is a
    little dearer than a HEAD). ``offsets`` False: one listing from the
    start, the one listing that needs no offset.
    """
    wanted = sorted(set(keys))
    if len(wanted) < min_batch:
        return Plan((), tuple(wanted), f"small batch ({len(wanted)} < {min_batch})")
    starts = boundaries(namespace, offsets)
    last_of: dict[int, str] = {}  # range index -> its last wanted key (``wanted`` is sorted)
    for key in wanted:
        last_of[bisect.bisect_left(starts, key) - 1] = key
    ranges = tuple((starts[i], starts[i + 1] if i + 1 < len(starts) else None) for i in last_of)
    per_range = max(1, math.ceil(namespace / len(starts) / PAGE))
    cost = len(ranges) * per_range
    if 2 * cost > len(wanted):
        return Plan((), tuple(wanted), f"listing costs {cost} > half of {len(wanted)} HEADs")
    reason = f"{len(ranges)} of {len(starts)} ranges, ~{cost} list requests for {len(wanted)}"
    return Plan(ranges, (), reason, cost, per_range, tuple(last_of.values()))


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
#: delays every request behind it: listing stops before any range is sent.
PAGE_HEADS_MAX = 32


def page_too_dear(heads: int, slots: int) -> bool:
    """True when ``heads`` HEADs, ``slots`` at once, finished while one page was listed."""
    return slots > 0 and heads > PAGE_HEADS_MAX * slots


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
    if span <= 0:  # names that are not hex: no density to read, so assume many
        return max(len(names), PAGE) * 32
    return math.ceil(len(names) / span)


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
