"""Rendezvous hashing of poll targets over members (``sensory.poll.shard``): every
target has exactly one owner, shares are balanced, and a membership change moves
only the targets it must."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given
from hypothesis import strategies as st

from netcortex.sensory.poll.shard import make_member_id, owned, owner, score

member_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=20)
members_st = st.sets(member_ids, min_size=1, max_size=8)
keys_st = st.sets(st.text(min_size=1, max_size=30), min_size=1, max_size=60)


def test_score_is_stable_across_processes() -> None:
    """The weight is a fixed function of its inputs (blake2b, never ``hash()``), so
    every receiver, whatever its Python or PYTHONHASHSEED, computes the same owner."""
    expected = hashlib.blake2b(b"rx-1\x00sw1", digest_size=8).digest()
    assert score("rx-1", "sw1") == int.from_bytes(expected, "big")
    assert score("rx-1", "sw1") != score("rx-2", "sw1")
    assert owner("sw1", []) is None


@given(members_st, keys_st)
def test_every_key_has_exactly_one_owner(members: set[str], keys: set[str]) -> None:
    """The members' shares are disjoint and cover every key (each member computes its
    share alone, from the same member set)."""
    shares = {m: owned(keys, members, m) for m in members}
    union: set[str] = set()
    for share in shares.values():
        assert not union & share
        union |= share
    assert union == keys
    for key in keys:
        assert key in shares[owner(key, members) or ""]


@given(members_st, keys_st)
def test_order_of_members_does_not_matter(members: set[str], keys: set[str]) -> None:
    """The owner depends on the set of members, not on how it is listed."""
    ordered = sorted(members)
    for key in keys:
        assert owner(key, ordered) == owner(key, list(reversed(ordered)))


@given(members_st, keys_st, member_ids)
def test_a_join_moves_keys_only_to_the_newcomer(
    members: set[str], keys: set[str], newcomer: str
) -> None:
    """Minimal movement on a join: a key either stays with its owner or moves to the
    new member, never between two old members."""
    after = members | {newcomer}
    for key in keys:
        before_owner, after_owner = owner(key, members), owner(key, after)
        assert after_owner in (before_owner, newcomer)


@given(st.sets(member_ids, min_size=2, max_size=8), keys_st, st.data())
def test_a_leave_moves_only_the_leavers_keys(
    members: set[str], keys: set[str], data: st.DataObject
) -> None:
    """Minimal movement on a leave: only the keys the leaver owned get a new owner."""
    leaver = data.draw(st.sampled_from(sorted(members)))
    after = members - {leaver}
    for key in keys:
        before_owner = owner(key, members)
        if before_owner != leaver:
            assert owner(key, after) == before_owner


def test_shares_are_balanced() -> None:
    """10,000 targets over 4 members: each share within 10 % of a quarter, and a
    fifth member takes about a fifth (only from the others)."""
    keys = [f"sw{i:05d}.example.net" for i in range(10_000)]
    members = [f"rx-{i}" for i in range(4)]
    sizes = [len(owned(keys, members, m)) for m in members]
    assert sum(sizes) == len(keys)
    for size in sizes:
        assert abs(size - 2_500) < 250, sizes
    moved = len(owned(keys, [*members, "rx-4"], "rx-4"))
    assert abs(moved - 2_000) < 200, moved


def test_member_ids_are_one_token_and_unique() -> None:
    """A member id is one subject token and differs between two calls in one process
    (two receivers on one host never share a share)."""
    a, b = make_member_id(), make_member_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", a)
    assert a != b
