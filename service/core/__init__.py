"""The domain core: SPEC bytes, RFC 9162 Merkle trees, C2SP notes, receipts and their verification.

Imports only the standard library and `cryptography` (plus `asn1crypto`/`rfc3161_client` for tokens):
never storage, api, workers, trust, court, flask, sqlalchemy or celery. `evidence verify` runs on this alone.
"""
