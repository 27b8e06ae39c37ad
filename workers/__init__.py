"""Celery app and tasks: thin adapters over ``service.sealing``."""
