"""Evidence Ledger.

Empty on purpose: importing ``service.core.verify`` (the offline verifier) must not pull in Flask, SQLAlchemy or Celery.
"""
