"""C2SP tlog-policy parsing (strict, SPEC §9 / notes §6) and quorum evaluation."""

from __future__ import annotations

import pytest

from service.core.cosignature import WitnessSigner
from service.core.errors import MalformedPolicy
from service.core.note import Signer
from service.core.policy import NONE, Policy, parse_policy

LOG = Signer("example.org/log", bytes([7]) * 32).verifier
W = [WitnessSigner(f"w{i}.example", bytes([i]) * 32).verifier for i in range(1, 7)]


def spec_example() -> str:
    return (
        f"# the example of the notes\nlog {LOG.vkey} https://example.org/log/\n\n"
        f"witness X1 {W[0].vkey}\n"
        f"witness X2 {W[1].vkey} https://x2.example/\n"
        f"  witness\tX3   {W[2].vkey}  \n"
        "group X-witnesses 2 X1 X2 X3\n"
        f"witness Y1 {W[3].vkey}\n"
        "group Y-witnesses any Y1\n"
        "group X-and-Y all X-witnesses Y-witnesses\n"
        "   # indented comment\n"
        "quorum X-and-Y\n"
    )


def test_the_example_parses_and_evaluates() -> None:
    p = parse_policy(spec_example())
    assert [e.key for e in p.logs] == [LOG] and p.logs[0].url == "https://example.org/log/"
    assert [w.name for w in p.witnesses] == ["X1", "X2", "X3", "Y1"]
    assert p.witnesses[1].url == "https://x2.example/" and p.witnesses[0].url is None
    assert p.quorum == "X-and-Y"
    assert p.satisfied({"X1", "X2", "Y1"})
    assert p.satisfied({"X1", "X3", "Y1"})
    assert not p.satisfied({"X1", "X2", "X3"})  # no Y
    assert not p.satisfied({"X1", "Y1"})  # only one X
    assert not p.satisfied(set())
    assert p.describe_quorum() == "2 of {2 of {X1, X2, X3}, 1 of {Y1}}"
    assert parse_policy(p.to_text()) == p


def test_quorum_none_and_single_witness() -> None:
    p = parse_policy(f"log {LOG.vkey}\nquorum none\n")
    assert p.quorum == NONE and p.satisfied(set()) and not p.needs_cosignatures
    p = parse_policy(f"witness A {W[0].vkey}\nquorum A\n")
    assert p.satisfied({"A"}) and not p.satisfied({"B"})


def test_short_form() -> None:
    p = Policy.from_witnesses(W[:3], 2)
    assert p.satisfied({W[0].name, W[2].name}) and not p.satisfied({W[0].name})
    assert Policy.from_witnesses(W[:3], 0).satisfied(set())
    with pytest.raises(MalformedPolicy, match="between 0 and"):
        Policy.from_witnesses(W[:3], 4)
    with pytest.raises(MalformedPolicy, match="twice"):
        Policy.from_witnesses([W[0], W[0]], 1)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "no quorum line"),
        (f"witness A {W[0].vkey}\n", "no quorum line"),
        ("quorum none", "newline"),
        ("quorum none\r\n", "0x0d"),
        ("quorum none\nquorum none\n", "second quorum"),
        ("quorum A\n", "not a witness or group defined"),
        (f"quorum A\nwitness A {W[0].vkey}\n", "not a witness or group defined"),
        (f"witness A {W[0].vkey}\nwitness A {W[1].vkey}\nquorum A\n", "already defined"),
        (f"witness A {W[0].vkey}\nwitness B {W[0].vkey}\nquorum A\n", "same public key"),
        (f"log {LOG.vkey}\nlog {LOG.vkey}\nquorum none\n", "listed twice"),
        (f"witness none {W[0].vkey}\nquorum none\n", "predefined"),
        (f"witness A {LOG.vkey}\nquorum A\n", "checkpoint signing key"),
        (f"log {W[0].vkey}\nquorum none\n", "unknown signature type"),
        (f"witness A {W[0].vkey}\ngroup G 2 A\nquorum G\n", "between 1 and"),
        (f"witness A {W[0].vkey}\ngroup G 0 A\nquorum G\n", "between 1 and"),
        (f"witness A {W[0].vkey}\ngroup G 01 A\nquorum G\n", "not all, any or a decimal"),
        (f"witness A {W[0].vkey}\ngroup G most A\nquorum G\n", "not all, any or a decimal"),
        (f"witness A {W[0].vkey}\ngroup G any A A\nquorum G\n", "more than once"),
        (f"witness A {W[0].vkey}\ngroup G any A none\nquorum G\n", "'none' may not"),
        (f"witness A {W[0].vkey}\ngroup G any B\nquorum G\n", "member 'B'"),
        (f"witness A {W[0].vkey}\ngroup G any\nquorum G\n", "expected 'group"),
        ("witnesses A\nquorum none\n", "unknown keyword"),
        (f"witness A {W[0].vkey} http://a extra\nquorum none\n", "expected 'witness"),
        ("quorum none extra\n", "expected 'quorum"),
        (b"quorum none\x00\n", "0x00"),
    ],
)
def test_malformed_policies_are_rejected_with_a_reason(text: str | bytes, words: str) -> None:
    with pytest.raises(MalformedPolicy, match=words):
        parse_policy(text)


def test_non_ascii_names_are_opaque_octets() -> None:
    p = parse_policy(f"witness 法院 {W[0].vkey}\nquorum 法院\n")
    assert p.satisfied({"法院"})
    raw = b"witness \xff\xfe " + W[0].vkey.encode() + b"\nquorum \xff\xfe\n"
    p = parse_policy(raw)
    assert p.witnesses[0].name == b"\xff\xfe".decode("utf-8", "surrogateescape")
    assert p.satisfied({p.witnesses[0].name})


def test_groups_of_groups_and_32_of_each() -> None:
    many = [WitnessSigner(f"m{i}", bytes([i + 50]) * 32).verifier for i in range(32)]
    logs = [Signer(f"log{i}", bytes([i + 100]) * 32).verifier for i in range(32)]
    lines = [f"log {k.vkey}" for k in logs] + [f"witness M{i} {k.vkey}" for i, k in enumerate(many)]
    lines += [f"group G{i} any M{i}" for i in range(31)]
    lines += ["group ALL 31 " + " ".join(f"G{i}" for i in range(31)) + " M31", "quorum ALL"]
    p = parse_policy("\n".join(lines) + "\n")
    assert len(p.logs) == 32 and len(p.witnesses) == 32 and len(p.groups) == 32
    names = {f"M{i}" for i in range(32)}
    assert p.satisfied(names) and p.satisfied(names - {"M5"}) and not p.satisfied(names - {"M5", "M6"})
