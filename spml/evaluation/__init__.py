"""Test score and evaluation (docs/method.md §5): metrics, feature visualisation, tables and curves, and the
comparison of several methods' saliency maps (``comparison``) on the same metric, table and curve code."""
