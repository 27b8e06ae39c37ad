"""C2SP tlog-policy files: which logs are trusted, which witnesses are known, and what quorum of their
cosignatures makes a checkpoint valid (SPEC §9, ``shared/notes/c2sp-summary.md`` §6).

Owns: the strict line parser (``log``, ``witness``, ``group``, ``quorum``), the ``--witness … --quorum N`` short
form, and deciding whether a set of witnesses that cosigned meets the quorum.
Must not import: anything but the standard library and ``service.core`` (``errors``, ``note``, ``cosignature``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from service.core.cosignature import WitnessKey
from service.core.errors import MalformedKey, MalformedPolicy
from service.core.note import Verifier

__all__ = ["NONE", "Group", "LogEntry", "Policy", "PolicyWitness", "parse_policy"]

NONE = "none"  # predefined: the quorum that needs no cosignature
_SEPARATORS = re.compile(rb"[ \t]+")
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")
_MAX_ITEMS = 1000  # the spec asks for at least 32 logs, 32 witnesses and 32 groups


@dataclass(frozen=True)
class LogEntry:
    key: Verifier
    url: str | None = None


@dataclass(frozen=True)
class PolicyWitness:
    name: str
    key: WitnessKey
    url: str | None = None


@dataclass(frozen=True)
class Group:
    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed policy. ``quorum`` names a witness, a group, or ``none``."""

    logs: tuple[LogEntry, ...]
    witnesses: tuple[PolicyWitness, ...]
    groups: tuple[Group, ...]
    quorum: str
    _groups_by_name: dict[str, Group] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_groups_by_name", {g.name: g for g in self.groups})

    @classmethod
    def from_witnesses(cls, witnesses: Sequence[WitnessKey], quorum: int, logs: Sequence[Verifier] = ()) -> Policy:
        """The short form ``--witness VKEY… --quorum N``: N distinct listed witnesses (each named by its key name).

        :raise MalformedPolicy: N outside 0..number of witnesses, or two witnesses with one name or public key.
        """
        if not (0 <= quorum <= len(witnesses)):
            raise MalformedPolicy(
                f"the quorum must be between 0 and the number of witnesses ({len(witnesses)}), got {quorum}"
            )
        entries: list[PolicyWitness] = []
        seen_names: set[str] = set()
        seen_keys: set[bytes] = set()
        for w in witnesses:
            if w.name in seen_names or w.name == NONE:
                raise MalformedPolicy(f"witness name {w.name!r} is given twice or is reserved")
            if w.public_key in seen_keys:
                raise MalformedPolicy(f"witness {w.name!r} has the same public key as another witness")
            seen_names.add(w.name)
            seen_keys.add(w.public_key)
            entries.append(PolicyWitness(w.name, w))
        if quorum == 0:
            return cls(tuple(LogEntry(k) for k in logs), tuple(entries), (), NONE)
        if len(entries) == 1:
            return cls(tuple(LogEntry(k) for k in logs), tuple(entries), (), entries[0].name)
        group_name = "quorum"
        while group_name in seen_names:
            group_name += "_"
        group = Group(group_name, quorum, tuple(e.name for e in entries))
        return cls(tuple(LogEntry(k) for k in logs), tuple(entries), (group,), group_name)

    @property
    def log_keys(self) -> list[Verifier]:
        return [entry.key for entry in self.logs]

    @property
    def witness_keys(self) -> list[WitnessKey]:
        return [w.key for w in self.witnesses]

    @property
    def needs_cosignatures(self) -> bool:
        return self.quorum != NONE

    def satisfied(self, cosigned: Iterable[str]) -> bool:
        """Whether the witnesses named in ``cosigned`` (policy names, each with a valid cosignature) meet the quorum."""
        return self._satisfied(self.quorum, frozenset(cosigned))

    def _satisfied(self, name: str, cosigned: frozenset[str]) -> bool:
        if name == NONE:
            return True
        group = self._groups_by_name.get(name)
        if group is None:
            return name in cosigned
        return sum(1 for m in group.members if self._satisfied(m, cosigned)) >= group.threshold

    def describe_quorum(self) -> str:
        """The quorum in words, e.g. ``2 of {w1, w2, w3}``."""
        return self._describe(self.quorum)

    def _describe(self, name: str) -> str:
        if name == NONE:
            return "no cosignature"
        group = self._groups_by_name.get(name)
        if group is None:
            return name
        inner = ", ".join(self._describe(m) for m in group.members)
        return f"{group.threshold} of {{{inner}}}"

    def to_text(self) -> str:
        """The policy as a tlog-policy file (parses back to an equal policy)."""
        lines = [f"log {e.key.vkey}" + (f" {e.url}" if e.url else "") for e in self.logs]
        lines += [f"witness {w.name} {w.key.vkey}" + (f" {w.url}" if w.url else "") for w in self.witnesses]
        lines += [f"group {g.name} {g.threshold} {' '.join(g.members)}" for g in self.groups]
        lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"


def parse_policy(data: bytes | str) -> Policy:
    """Parse a C2SP tlog-policy file strictly; every error names its line.

    :raise MalformedPolicy: a forbidden octet, an unknown keyword, a bad key, a duplicate log or witness key,
        a name defined twice or not defined earlier, a bad group threshold, no or several quorum lines, or a
        last line without its newline.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    for offset, octet in enumerate(raw):
        if octet < 0x20 and octet not in (0x09, 0x0A) or octet == 0x7F:
            at = raw.count(b"\n", 0, offset) + 1
            raise MalformedPolicy(f"policy line {at}: byte 0x{octet:02x} at offset {offset} is not allowed")
    if raw and not raw.endswith(b"\n"):
        raise MalformedPolicy("policy: the last line does not end with a newline (every line ends with \\n)")

    logs: list[LogEntry] = []
    witnesses: list[PolicyWitness] = []
    groups: list[Group] = []
    quorum: str | None = None
    names: set[str] = set()  # witnesses and groups share one namespace
    log_keys: set[bytes] = set()
    witness_keys: set[bytes] = set()

    for number, line in enumerate(raw.split(b"\n")[:-1] if raw else [], start=1):
        items = [i for i in _SEPARATORS.split(line.strip(b" \t")) if i]
        if not items or items[0].startswith(b"#"):
            continue
        try:
            words = [i.decode("utf-8", "surrogateescape") for i in items]
        except UnicodeDecodeError:  # pragma: no cover - surrogateescape decodes everything
            raise MalformedPolicy(f"policy line {number}: undecodable bytes") from None
        keyword, args = words[0], words[1:]
        where = f"policy line {number} ({keyword})"
        if keyword == "log":
            if len(args) not in (1, 2):
                raise MalformedPolicy(f"{where}: expected 'log <vkey> [<url>]'")
            key = _log_key(args[0], where)
            if key.public_key in log_keys:
                raise MalformedPolicy(f"{where}: the log key {key.key_id} is listed twice (same public key)")
            log_keys.add(key.public_key)
            logs.append(LogEntry(key, args[1] if len(args) == 2 else None))
            _limit(len(logs), "logs", where)
        elif keyword == "witness":
            if len(args) not in (2, 3):
                raise MalformedPolicy(f"{where}: expected 'witness <name> <vkey> [<url>]'")
            name = args[0]
            _new_name(name, names, where)
            wkey = _witness_key(args[1], where)
            if wkey.public_key in witness_keys:
                raise MalformedPolicy(f"{where}: witness {name!r} has the same public key as an earlier witness")
            witness_keys.add(wkey.public_key)
            names.add(name)
            witnesses.append(PolicyWitness(name, wkey, args[2] if len(args) == 3 else None))
            _limit(len(witnesses), "witnesses", where)
        elif keyword == "group":
            if len(args) < 3:
                raise MalformedPolicy(f"{where}: expected 'group <name> all|any|<k> <member>...'")
            name, rule, members = args[0], args[1], args[2:]
            _new_name(name, names, where)
            for m in members:
                if m == NONE:
                    raise MalformedPolicy(f"{where}: 'none' may not be a group member")
                if m not in names:
                    raise MalformedPolicy(f"{where}: member {m!r} is not a witness or group defined on an earlier line")
            if len(set(members)) != len(members):
                raise MalformedPolicy(f"{where}: a member is named more than once")
            n = len(members)
            if rule == "all":
                k = n
            elif rule == "any":
                k = 1
            elif _DECIMAL.match(rule):
                k = int(rule)
                if not (1 <= k <= n):
                    raise MalformedPolicy(f"{where}: threshold {k} is not between 1 and the {n} members")
            else:
                raise MalformedPolicy(f"{where}: threshold {rule!r} is not all, any or a decimal number")
            names.add(name)
            groups.append(Group(name, k, tuple(members)))
            _limit(len(groups), "groups", where)
        elif keyword == "quorum":
            if len(args) != 1:
                raise MalformedPolicy(f"{where}: expected 'quorum <name>'")
            if quorum is not None:
                raise MalformedPolicy(f"{where}: a second quorum line (exactly one is allowed)")
            if args[0] != NONE and args[0] not in names:
                raise MalformedPolicy(f"{where}: {args[0]!r} is not a witness or group defined on an earlier line")
            quorum = args[0]
        else:
            raise MalformedPolicy(f"policy line {number}: unknown keyword {keyword!r} (log, witness, group, quorum)")
    if quorum is None:
        raise MalformedPolicy("policy: no quorum line (exactly one is required, e.g. 'quorum none')")
    return Policy(tuple(logs), tuple(witnesses), tuple(groups), quorum)


def _new_name(name: str, names: set[str], where: str) -> None:
    if name == NONE:
        raise MalformedPolicy(f"{where}: 'none' is predefined and cannot be defined")
    if name in names:
        raise MalformedPolicy(f"{where}: the name {name!r} is already defined (witnesses and groups share names)")


def _limit(count: int, what: str, where: str) -> None:
    if count > _MAX_ITEMS:
        raise MalformedPolicy(f"{where}: more than {_MAX_ITEMS} {what}")


def _log_key(text: str, where: str) -> Verifier:
    try:
        text.encode("utf-8")
        return Verifier.from_vkey(text)
    except UnicodeEncodeError:
        raise MalformedPolicy(f"{where}: the key is not valid UTF-8") from None
    except MalformedKey as exc:
        raise MalformedPolicy(f"{where}: {exc.reason}") from None


def _witness_key(text: str, where: str) -> WitnessKey:
    try:
        text.encode("utf-8")
        return WitnessKey.from_vkey(text)
    except UnicodeEncodeError:
        raise MalformedPolicy(f"{where}: the key is not valid UTF-8") from None
    except MalformedKey as exc:
        raise MalformedPolicy(f"{where}: {exc.reason}") from None
