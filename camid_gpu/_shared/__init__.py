"""Helpers shared by every layer: optional imports (:mod:`.optional`), files and JSON (:mod:`.jsonio`)."""
