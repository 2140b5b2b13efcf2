"""Stage 4, one chunk of work: :mod:`.identify` prepares images (host), builds fingerprints and identifies
chunks with both methods, and builds the result records.
"""
