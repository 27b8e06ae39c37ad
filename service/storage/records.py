"""What the ledger's main read paths return: decoded, typed values instead of database rows.

Owns: the ``NewType`` names of the hashes the ledger keeps (``Sha256``: a file's digest; ``TreeHash``: an RFC 9162
leaf, node or root hash), and small frozen dataclasses for stored evidence, ledger entries (batches), checkpoints,
signing keys, tenants, API keys and webhooks. Times are aware UTC ``datetime`` (never microsecond integers),
hashes are ``bytes`` of their NewType, proofs are tuples of hashes (never the concatenated blob). Use cases read
these and never see a stored form; ``service.storage.ledger`` builds them from its rows.

Not typed here, on purpose: the audit's queries (``service.storage.audit_queries``, which must check the stored
forms themselves) and the sealer's hot paths (pending rows, nodes, entries by range).
Must not import: anything outside the standard library and ``service.core``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NewType

__all__ = [
    "ApiKey",
    "Batch",
    "Evidence",
    "Sha256",
    "SigningKey",
    "StoredCheckpoint",
    "Tenant",
    "TreeHash",
    "Webhook",
]

Sha256 = NewType("Sha256", bytes)
"""The SHA-256 of a deposited file (32 bytes)."""

TreeHash = NewType("TreeHash", bytes)
"""An RFC 9162 hash of the batch trees or the ledger log: a leaf, interior node or root (32 bytes)."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One deposit of a tenant; ``batch_seq`` and ``leaf_index`` are None while it is pending. ``proof``: the audit
    path stored by releases before migration 0007, else None (sealing then computes it from the batch's tiles).
    ``v2``: it has a SPEC §2.1 v2 leaf, with the ``attestation``, ``case_id``, ``phase``, ``phase_name``,
    ``cosigns`` and ``sm3`` (the file's SM3, 32 bytes) it binds (all None for a v1 deposit)."""

    pk: int
    id: str
    tenant_id: int
    sha256: Sha256
    label: str | None
    received: datetime
    batch_seq: int | None
    leaf_index: int | None
    proof: tuple[TreeHash, ...] | None
    v2: bool = False
    attestation: bytes | None = None
    case_id: str | None = None
    phase: int | None = None
    phase_name: str | None = None
    cosigns: str | None = None
    sm3: bytes | None = None

    @property
    def sealed(self) -> bool:
        return self.batch_seq is not None


@dataclass(frozen=True, slots=True)
class Batch:
    """One ledger entry: batch ``seq`` of ``size`` leaves with its ``root``, the exact SPEC §3 ``entry`` bytes, and
    the entry's inclusion proof in the ledger log of size ``seq + 1``."""

    seq: int
    size: int
    root: TreeHash
    sealed: datetime
    entry: bytes
    ledger_proof: tuple[TreeHash, ...]


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """The signed checkpoint of ledger ``size``: the exact signed ``note`` bytes, its ``root``, the signing key's
    hash and when it was signed. (``formats.Checkpoint`` is the unsigned body it parses to.)"""

    size: int
    root: TreeHash
    note: bytes
    key_hash: int
    created: datetime


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A published checkpoint verifier key and its validity window (``valid_until`` None: still current)."""

    id: int
    vkey: str
    origin: str
    key_hash: int
    valid_from: datetime
    valid_until: datetime | None


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    created: datetime
    revoked: datetime | None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: never the key, only its display ``prefix`` (and, in the table, its SHA-256)."""

    id: int
    tenant_id: int
    tenant_name: str
    prefix: str
    created: datetime
    revoked: datetime | None


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's callback URL and its signing secret; ``disabled`` is set when it was deleted or replaced."""

    id: int
    tenant_id: int
    url: str
    secret: str
    created: datetime
    disabled: datetime | None
