"""Test score and evaluation (SPEC §5): metrics, feature visualisation, tables and curves."""
