"""Pure planning of batched existence checks."""

import itertools

from tesengine.storage.existence import (
    RANGE_KEYS,
    boundaries,
    estimate_from_page,
    guard_probe,
    merge,
    plan,
)


def _keys(n: int) -> list[str]:
    return [f"{i * 2654435761 % 16**8:08x}" + "0" * 56 for i in range(n)]


def test_small_batch_uses_heads() -> None:
    p = plan(_keys(10), 100_000)
    assert not p.lists and len(p.heads) == 10 and "small batch" in p.reason


def test_large_batch_over_large_namespace_lists_ranges_of_about_a_page() -> None:
    p = plan(_keys(10_000), 100_000)
    assert p.lists and not p.heads
    assert len(p.ranges) == 118 == p.cost  # 100,000 / 850, one page each
    assert p.ranges[0] == ("", p.ranges[1][0]) and p.ranges[-1][1] is None


def test_only_the_ranges_a_batch_touches_are_listed() -> None:
    keys = [f"{i:08x}" + "f" * 56 for i in range(0x8000_0000, 0x8000_0000 + 200)]
    p = plan(keys, 100_000)
    assert len(p.ranges) == 1 and p.cost == 1  # 200 neighbours share one range
    after, upto = p.ranges[0]
    assert upto is not None and all(after < k <= upto for k in keys)


def test_boundaries_are_even_and_sorted() -> None:
    starts = boundaries(100_000)
    assert len(starts) == 118 and starts[0] == "" and list(starts) == sorted(starts)
    gaps = {int(b, 16) - int(a, 16) for a, b in itertools.pairwise(starts[1:])}
    assert max(gaps) - min(gaps) <= 1
    assert boundaries(RANGE_KEYS) == ("",) and boundaries(10**6, offsets=False) == ("",)


def test_a_key_on_a_boundary_belongs_to_the_range_it_ends() -> None:
    starts = boundaries(100_000)
    keys = [starts[5] + "0" * 56, starts[6] + "0" * 56]  # past each boundary: the range it starts
    more = [starts[5] + "1" * 56, starts[6]]  # the boundary itself ends a range
    p = plan([*keys, *more], 100_000, min_batch=1)
    assert p.ranges == ((starts[5], starts[6]), (starts[6], starts[7]))
    p = plan([keys[0], *more], 100_000, min_batch=1)
    assert p.ranges == ((starts[5], starts[6]),)


def test_listing_not_chosen_when_dearer_than_heads() -> None:
    p = plan(_keys(100), 10_000_000, min_batch=10)
    assert not p.lists and "HEADs" in p.reason


def test_listing_needs_to_cost_at_most_half_the_heads() -> None:
    keys = _keys(300)  # over 1,000,000 keys: 1,177 ranges, up to 300 of them touched
    assert not plan(keys, 1_000_000).lists
    assert plan(keys, 100_000).cost == 118  # all 118 ranges: under half of 300


def test_a_store_that_ignores_offsets_is_listed_from_the_start() -> None:
    p = plan(_keys(5_000), 100_000, offsets=False)
    assert p.ranges == (("", None),) and p.cost == p.pages_per_range == 100


def test_estimate_from_a_page_reads_the_density() -> None:
    page = [f"{i * 16**8 // 20_000:08x}" for i in range(10_000, 11_000)]  # 1,000 of 20,000
    assert 19_000 < estimate_from_page(page, "8", complete=False) < 21_000
    assert estimate_from_page(page[:10], "8", complete=True) == 20  # half the space held 10
    assert estimate_from_page([], "8", complete=True) == 0


def test_merge_covers_ranges_past_their_start_only() -> None:
    assert merge(["8", "80", "9"], {}, [("8", "85")]) == {"80": None}  # "8" is not past "8"


def test_merge_decides_seen_absent_and_leaves_unlisted() -> None:
    wanted = ["a1", "a2", "a9", "b1"]
    got = merge(wanted, {"a1": 5}, [("a", "a5")])
    assert got == {"a1": 5, "a2": None}  # a9 past the listing, b1 not listed: HEAD


def test_listing_far_slower_than_heads_turns_into_heads() -> None:
    keys = _keys(10_000)
    listing = plan(keys, 100_000)
    assert listing.lists and listing.cost == 118
    # S3-like: a page costs about 5 HEADs; 31 slots HEAD 155 names while the probe runs
    assert guard_probe(listing, keys, 155, rounds=32, margin=2.0) is listing
    assert guard_probe(listing, keys, 0, rounds=32, margin=2.0) is listing
    # rclone-like: a page reads the whole namespace; 8,000 HEADs finish meanwhile
    heads = guard_probe(listing, keys, 8000, rounds=32, margin=2.0)
    assert not heads.lists and heads.heads == tuple(sorted(keys))
    assert heads.reason.startswith("8000 HEADs done while one page was listed"), heads.reason
    small = plan(keys[:10], 100_000)
    assert guard_probe(small, keys[:10], 5000, rounds=32, margin=2.0) is small
