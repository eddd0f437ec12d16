"""Who may change a chat's membership, and what each change stores (pure, no I/O).

Roles: a group has one ``owner``, any number of ``admin`` and ``member``. Direct chats
have no roles to change. Owners and admins add and remove members; only the owner grants
or takes the admin role, and admins cannot remove the owner or other admins. Anyone may
remove themselves (leave), except the owner of a group with other members, who transfers
ownership first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import BadRequest, NotAllowed, NotMember, TargetMissing

ADDABLE_ROLES = ("admin", "member")
MANAGERS = ("owner", "admin")


@dataclass(frozen=True)
class Change:
    """One stored chat change: its kind, the rows to write and the event's details."""

    kind: str
    rows: tuple[tuple[str, str | None], ...]  # (user_id, role); None removes
    details: dict[str, Any]


def _roles(members: list[tuple[str, str]]) -> dict[str, str]:
    return dict(members)


def _actor_role(roles: dict[str, str], actor: str) -> str:
    if actor not in roles:
        raise NotMember("not a member of this chat")
    return roles[actor]


def _group_only(chat_type: str) -> None:
    if chat_type != "group":
        raise NotAllowed("a direct chat's members cannot change")


def plan_add(chat_type: str, members: list[tuple[str, str]], actor: str, user: str,
             role: str | None, max_members: int) -> Change | None:
    """Add ``user`` (or change its role); None when nothing would change."""
    _group_only(chat_type)
    roles = _roles(members)
    actor_role = _actor_role(roles, actor)
    if role is not None and role not in ADDABLE_ROLES:
        raise BadRequest("role must be 'admin' or 'member' (ownership moves with owner.transfer)",
                         details={"path": "$.role"})
    if actor_role not in MANAGERS:
        raise NotAllowed("only owners and admins add members")
    current = roles.get(user)
    if current is not None:
        if role is None or role == current:
            return None
        if actor_role != "owner" or current == "owner":
            raise NotAllowed("only the owner changes roles (and not its own)")
        return Change("role_changed", ((user, role),),
                      {"user_id": user, "role": role, "old_role": current,
                       "members": [{"user_id": user, "role": role}]})
    role = role or "member"
    if role == "admin" and actor_role != "owner":
        raise NotAllowed("only the owner adds admins")
    if len(roles) + 1 > max_members:
        raise NotAllowed(f"a group has at most {max_members} members")
    return Change("member_added", ((user, role),), {"members": [{"user_id": user, "role": role}]})


def plan_remove(chat_type: str, members: list[tuple[str, str]], actor: str, user: str) -> Change:
    _group_only(chat_type)
    roles = _roles(members)
    actor_role = _actor_role(roles, actor)
    if user not in roles:
        raise TargetMissing("not a member of this chat", details={"user_id": user})
    leaving = user == actor
    if leaving and actor_role == "owner" and len(roles) > 1:
        raise NotAllowed("the owner cannot leave: transfer ownership first (im.router.owner.transfer)")
    if not leaving:
        if actor_role not in MANAGERS:
            raise NotAllowed("only owners and admins remove other members")
        if actor_role == "admin" and roles[user] in MANAGERS:
            raise NotAllowed("an admin cannot remove the owner or another admin")
    return Change("member_removed", ((user, None),), {"user_ids": [user], "left": leaving})


def plan_transfer(chat_type: str, members: list[tuple[str, str]], actor: str, user: str) -> Change:
    """The owner hands the chat to another member and becomes an admin."""
    _group_only(chat_type)
    roles = _roles(members)
    if _actor_role(roles, actor) != "owner":
        raise NotAllowed("only the owner transfers ownership")
    if user not in roles:
        raise TargetMissing("the new owner must be a member of this chat", details={"user_id": user})
    if user == actor:
        raise BadRequest("the owner already owns this chat", details={"path": "$.user_id"})
    return Change("owner_transferred", ((actor, "admin"), (user, "owner")),
                  {"from_user_id": actor, "to_user_id": user,
                   "members": [{"user_id": actor, "role": "admin"}, {"user_id": user, "role": "owner"}]})


def plan_rename(chat_type: str, members: list[tuple[str, str]], actor: str, name: Any,
                old_name: str | None) -> Change | None:
    _group_only(chat_type)
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 128):
        raise BadRequest("name must be a string of 1..128 characters or null", details={"path": "$.name"})
    if _actor_role(_roles(members), actor) not in MANAGERS:
        raise NotAllowed("only owners and admins rename the chat")
    if name == old_name:
        return None
    return Change("renamed", (), {"name": name, "old_name": old_name})


def apply(members: list[tuple[str, str]], change: Change) -> list[tuple[str, str]]:
    """The member list after ``change`` (order kept, new members last)."""
    roles = _roles(members)
    for user, role in change.rows:
        if role is None:
            roles.pop(user, None)
        else:
            roles[user] = role
    return list(roles.items())


def chat_updated_event(chat_id: str, seq: int, ts: int, actor: str, change: Change) -> dict[str, Any]:
    return {"event": "chat_updated", "chat_id": chat_id, "seq": seq, "ts": ts, "kind": change.kind,
            "actor_id": actor, "details": change.details}
