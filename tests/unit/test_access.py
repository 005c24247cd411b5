"""AccessRules: the permission table for every kind of principal, in public and private
rooms."""

from __future__ import annotations

from typing import Any

import pytest

from nexus.auth import Principal
from nexus.core.access import AccessRules
from nexus.core.rooms import Room
from nexus.errors import Forbidden, NotFound


class Members:
    """An in-memory MemberSource: (room key, user) -> membership record."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}

    def member(self, rkey: str, user_id: str) -> dict[str, Any] | None:
        return self.records.get((rkey, user_id))


def room(name: str, *, private: bool) -> Room:
    meta = {
        "tenant": "acme",
        "name": name,
        "created_by": "carol",
        "created_at": 0,
        "private": private,
    }
    return Room("acme", name, meta, 0, persisted=True)


PUBLIC = room("lobby", private=False)
PRIVATE = room("secret", private=True)

# Who each principal is; the membership records are set up per room by ``rules``.
PRINCIPALS = {
    "tenant admin": Principal("root", "acme", frozenset({"admin"})),
    "room creator": Principal("carol", "acme", frozenset({"member"})),
    "room-role admin": Principal("rita", "acme", frozenset({"member"})),
    "member": Principal("mike", "acme", frozenset({"member"})),
    "non-member": Principal("nora", "acme", frozenset({"member"})),
}


@pytest.fixture
def rules() -> AccessRules:
    members = Members()
    for r in (PUBLIC, PRIVATE):
        members.records[(r.key, "rita")] = {"user_id": "rita", "role": "admin"}
        members.records[(r.key, "mike")] = {"user_id": "mike", "role": "member"}
    # Mike's admin role in another room makes him no admin of these ones.
    members.records[("acme\x1fother", "mike")] = {"user_id": "mike", "role": "admin"}
    return AccessRules(members)


#                         tenant admin, creator, room admin, member, non-member
IS_ROOM_ADMIN = dict(zip(PRINCIPALS, (True, True, True, False, False), strict=True))
SEES_PRIVATE = dict(zip(PRINCIPALS, (True, True, True, True, False), strict=True))
IS_TENANT_ADMIN = dict(zip(PRINCIPALS, (True, False, False, False, False), strict=True))


@pytest.mark.parametrize("who", PRINCIPALS)
def test_tenant_admin(rules: AccessRules, who: str) -> None:
    principal = PRINCIPALS[who]
    assert rules.is_tenant_admin(principal) is IS_TENANT_ADMIN[who]
    if IS_TENANT_ADMIN[who]:
        rules.require_tenant_admin(principal)
    else:
        with pytest.raises(Forbidden):
            rules.require_tenant_admin(principal)


@pytest.mark.parametrize("the_room", [PUBLIC, PRIVATE], ids=["public", "private"])
@pytest.mark.parametrize("who", PRINCIPALS)
def test_room_admin(rules: AccessRules, who: str, the_room: Room) -> None:
    principal = PRINCIPALS[who]
    assert rules.is_room_admin(principal, the_room) is IS_ROOM_ADMIN[who]
    if IS_ROOM_ADMIN[who]:
        rules.require_room_admin(principal, the_room)
    else:
        with pytest.raises(Forbidden):
            rules.require_room_admin(principal, the_room)


@pytest.mark.parametrize("who", PRINCIPALS)
def test_visibility(rules: AccessRules, who: str) -> None:
    principal = PRINCIPALS[who]
    assert rules.may_see(principal, PUBLIC) is True
    assert rules.require_visible(principal, PUBLIC, "lobby") is PUBLIC
    assert rules.may_see(principal, PRIVATE) is SEES_PRIVATE[who]
    if SEES_PRIVATE[who]:
        assert rules.require_visible(principal, PRIVATE, "secret") is PRIVATE


def test_a_hidden_room_and_an_absent_one_look_the_same(rules: AccessRules) -> None:
    outsider = PRINCIPALS["non-member"]
    with pytest.raises(NotFound) as hidden:
        rules.require_visible(outsider, PRIVATE, "secret")
    with pytest.raises(NotFound) as absent:
        rules.require_visible(outsider, None, "secret")
    assert (hidden.value.code, hidden.value.message) == (absent.value.code, absent.value.message)
    # ...and an absent room is absent for a tenant admin too.
    with pytest.raises(NotFound):
        rules.require_visible(PRINCIPALS["tenant admin"], None, "secret")


def test_a_room_without_the_private_flag_is_public(rules: AccessRules) -> None:
    bare = Room(
        "acme", "bare", {"tenant": "acme", "name": "bare", "created_by": "carol"}, 0, persisted=True
    )
    assert rules.may_see(PRINCIPALS["non-member"], bare)


@pytest.mark.parametrize("the_room", [PUBLIC, PRIVATE], ids=["public", "private"])
@pytest.mark.parametrize("who", PRINCIPALS)
def test_who_may_change_a_message(rules: AccessRules, who: str, the_room: Room) -> None:
    principal = PRINCIPALS[who]
    own = {"type": "message", "sender": principal.user_id}
    others = {"type": "message", "sender": "someone-else"}
    assert rules.may_change_message(principal, the_room, own) is True
    assert rules.may_change_message(principal, the_room, others) is IS_ROOM_ADMIN[who]


def test_another_tenants_room_is_never_visible_nor_administrable() -> None:
    """Even a same-named creator, or an admin, of another tenant gets nothing: the rules
    compare tenants themselves rather than trusting how the room was found."""
    from nexus.auth import Principal
    from nexus.core.access import AccessRules
    from nexus.core.rooms import Room

    class NoMembers:
        def member(self, rkey: str, user_id: str) -> None:
            return None

    rules = AccessRules(NoMembers())
    room = Room("acme", "r", {"created_by": "ann", "private": False}, 0, persisted=True)
    stranger = Principal("ann", "globex", frozenset({"admin"}), expires_at=1e12)
    assert not rules.may_see(stranger, room)
    assert not rules.is_room_admin(stranger, room)
