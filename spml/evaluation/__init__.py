"""Test score and evaluation (docs/method.md §5): metrics, feature visualisation, tables and curves."""
