"""Pure planning of batched existence checks."""

from tesengine.storage.existence import (
    estimate_from_page,
    estimate_namespace,
    guard_probe,
    merge,
    plan,
    shard_done,
    shard_width,
)


def _keys(n: int) -> list[str]:
    return [f"{i * 2654435761 % 16**8:08x}" + "0" * 56 for i in range(n)]


def test_small_batch_uses_heads() -> None:
    p = plan(_keys(10), 100_000)
    assert not p.lists and len(p.heads) == 10 and "small batch" in p.reason


def test_large_batch_over_large_namespace_lists_shards() -> None:
    p = plan(_keys(10_000), 100_000)
    assert p.lists and not p.heads
    assert len(p.shards) <= 256  # at most 2 hex digits for 100,000 keys


def test_listing_not_chosen_when_dearer_than_heads() -> None:
    p = plan(_keys(100), 10_000_000, min_batch=10)
    assert not p.lists and "HEADs" in p.reason


def test_width_bounds() -> None:
    assert shard_width(500, 10_000) == 0
    assert shard_width(100_000, 10_000) == 2
    assert shard_width(100_000, 20) == 1


def test_estimate_from_a_page_reads_the_density() -> None:
    page = [f"{i * 16**8 // 20_000:08x}" for i in range(10_000, 11_000)]  # 1,000 of 20,000
    assert 19_000 < estimate_from_page(page, "8", complete=False) < 21_000
    assert estimate_from_page(page[:10], "8", complete=True) == 20  # half the space held 10
    assert estimate_from_page([], "8", complete=True) == 0


def test_merge_covers_ranges_past_their_start_only() -> None:
    assert merge(["8", "80", "9"], {}, [("8", "85")]) == {"80": None}  # "8" is not past "8"


def test_estimate() -> None:
    assert estimate_namespace(400, 1, truncated=False) == 6400
    assert estimate_namespace(1000, 1, truncated=True) > 16_000


def test_merge_decides_seen_absent_and_leaves_unlisted() -> None:
    wanted = ["a1", "a2", "a9", "b1"]
    got = merge(wanted, {"a1": 5}, [("a", "a5")])
    assert got == {"a1": 5, "a2": None}  # a9 past the listing, b1 not listed: HEAD


def test_shard_done() -> None:
    assert shard_done(["a1", "a3"], {"a1": 1}, "a4")
    assert not shard_done(["a1", "a9"], {"a1": 1}, "a4")


def test_listing_far_slower_than_heads_turns_into_heads() -> None:
    keys = _keys(10_000)
    listing = plan(keys, 100_000)
    assert listing.lists and listing.cost == 256
    # S3-like: a page costs about 5 HEADs; 31 slots HEAD 155 names while the probe runs
    assert guard_probe(listing, keys, 155, rounds=32, margin=2.0) is listing
    assert guard_probe(listing, keys, 0, rounds=32, margin=2.0) is listing
    # rclone-like: a page reads the whole namespace; 3,000 HEADs finish meanwhile
    heads = guard_probe(listing, keys, 3000, rounds=32, margin=2.0)
    assert not heads.lists and heads.heads == tuple(sorted(keys))
    assert heads.reason.startswith("3000 HEADs done while one page was listed"), heads.reason
    small = plan(keys[:10], 100_000)
    assert guard_probe(small, keys[:10], 5000, rounds=32, margin=2.0) is small
