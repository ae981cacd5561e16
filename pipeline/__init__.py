"""edgeprune's shared library: everything the producer and consumer agents and the CLI call.

Nothing in this package imports an agent (``producer``/``consumer``) or the CLI (``edgeprune``).
"""

__version__ = "0.1.0"
