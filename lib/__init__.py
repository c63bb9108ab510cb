"""Generic helpers shared by the DHFR scripts: atomic file I/O, logging, distributed setup."""
