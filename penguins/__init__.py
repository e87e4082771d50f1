"""Shared code for the Palmer Penguins pipeline: features, registry, prediction log, metrics.

Importing this package has no side effects: no files, no network, no environment reads.
"""
