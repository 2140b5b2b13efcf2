"""Helpers shared by every layer: optional imports (:mod:`.optional`)."""
