"""Trust tools that check the ledger from outside the sealing path: audit, monitor, C2SP tlog-proofs."""
