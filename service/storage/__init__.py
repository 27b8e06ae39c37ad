"""Storage: the database engine, the ledger tables and the decoders of stored forms. No Flask, no api."""
