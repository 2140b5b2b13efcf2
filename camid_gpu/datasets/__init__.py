"""Data for the demo and the tests: seeded synthetic cameras (:mod:`.synthetic` describes the model and
gathers the public names; :mod:`.sensor`, :mod:`.scenes` and :mod:`.writer` hold the code)."""
