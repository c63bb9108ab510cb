"""DHFR training machinery: configuration, data pipeline, losses and clustering."""
