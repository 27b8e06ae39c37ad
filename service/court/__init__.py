"""Court output rendered from a receipt: the certificate of deposit and the verification report (PDF)."""
