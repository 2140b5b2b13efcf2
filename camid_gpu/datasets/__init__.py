"""Data for the demo and the tests: :mod:`.synthetic` (seeded synthetic cameras)."""
