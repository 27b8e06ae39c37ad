"""Test helpers shared by unit and integration tests (real components, not mocks)."""
