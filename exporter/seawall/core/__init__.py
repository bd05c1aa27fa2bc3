"""The small core every primitive stands on: enums, snapshots, the registry, histograms, label guard,
redaction and log-safe text.
"""
