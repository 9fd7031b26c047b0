"""The embedded mode (``tidings dev``): every part of Tidings in one process, with no outside service."""
