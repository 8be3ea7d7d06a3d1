from __future__ import annotations

import orjson
import pytest

from server.auth.denylist import Denylist, Revocation


def session(rev_id: int, sid: str, *, expires_at: float = 2000.0) -> Revocation:
    return Revocation(rev_id, "session", sid, 1000.0, expires_at)


def user(rev_id: int, sub: str, not_before: float, *, expires_at: float = 2000.0) -> Revocation:
    return Revocation(rev_id, "user", sub, not_before, expires_at)


def test_a_revoked_session_revokes_every_token_of_that_session_only() -> None:
    denylist = Denylist()
    denylist.apply(session(1, "s1"))
    assert denylist.is_revoked(sid="s1", sub="7", iat=999_999)
    assert not denylist.is_revoked(sid="s2", sub="7", iat=0)


def test_a_user_cutoff_revokes_tokens_issued_strictly_before_it() -> None:
    denylist = Denylist()
    denylist.apply(user(1, "7", 1000.0))
    assert denylist.is_revoked(sid="a", sub="7", iat=999)
    assert not denylist.is_revoked(sid="a", sub="7", iat=1000)
    assert not denylist.is_revoked(sid="a", sub="8", iat=0)


def test_a_fractional_cutoff_revokes_tokens_of_its_own_second() -> None:
    denylist = Denylist()
    denylist.apply(user(1, "7", 1000.4))
    # iat is whole seconds: a token stamped 1000 may have been issued before 1000.4.
    assert denylist.is_revoked(sid="a", sub="7", iat=1000)
    assert not denylist.is_revoked(sid="a", sub="7", iat=1001)


def test_the_latest_cutoff_wins_whatever_the_order() -> None:
    for order in ([1, 2], [2, 1]):
        denylist = Denylist()
        revs = {1: user(1, "7", 1000.0), 2: user(2, "7", 1500.0)}
        for rev_id in order:
            denylist.apply(revs[rev_id])
        assert denylist.is_revoked(sid="a", sub="7", iat=1499)
        assert not denylist.is_revoked(sid="a", sub="7", iat=1500)


def test_applying_twice_changes_nothing() -> None:
    denylist = Denylist()
    for _ in range(2):
        denylist.apply(session(5, "s1"))
        denylist.apply(user(6, "7", 1000.0))
    assert len(denylist) == 2
    assert denylist.last_id == 6
    denylist.apply(session(3, "s0"))
    assert denylist.last_id == 6


def test_prune_forgets_only_what_expired() -> None:
    denylist = Denylist()
    denylist.apply(session(1, "old", expires_at=1500.0))
    denylist.apply(session(2, "new", expires_at=2500.0))
    denylist.apply(user(3, "7", 1000.0, expires_at=1500.0))
    denylist.apply(user(4, "8", 1000.0, expires_at=2500.0))
    assert denylist.prune(1500.0) == 2
    assert not denylist.is_revoked(sid="old", sub="7", iat=0)
    assert denylist.is_revoked(sid="new", sub="x", iat=0)
    assert denylist.is_revoked(sid="x", sub="8", iat=0)
    assert denylist.prune(1500.0) == 0


def test_a_later_expiry_keeps_a_merged_user_entry_alive() -> None:
    denylist = Denylist()
    denylist.apply(user(1, "7", 1200.0, expires_at=3000.0))
    denylist.apply(user(2, "7", 1000.0, expires_at=1500.0))
    denylist.prune(2000.0)
    assert denylist.is_revoked(sid="a", sub="7", iat=1100)


def test_the_wire_format_round_trips() -> None:
    rev = Revocation(9, "user", "42", 1700000000.123456, 1700000900.5)
    assert Revocation.from_json(rev.to_json()) == rev
    assert Revocation.from_json(rev.to_json().encode()) == rev


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": 1}',
        orjson.dumps({"id": 1, "kind": "tenant", "subject": "x", "not_before": 1, "expires_at": 2}),
        orjson.dumps({"id": "x", "kind": "user", "subject": "x", "not_before": 1, "expires_at": 2}),
        1,
    ],
)
def test_malformed_payloads_raise_the_documented_errors(payload: object) -> None:
    with pytest.raises((ValueError, TypeError, KeyError)):
        Revocation.from_json(payload)
