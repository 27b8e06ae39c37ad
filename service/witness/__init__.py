"""A C2SP tlog-witness (``evidence witness serve``): an independent party that cosigns the ledger's checkpoints.

Runs apart from the ledger: its own key, its own SQLite database, no access to the operator's storage.
"""
