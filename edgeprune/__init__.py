"""The ``edgeprune`` command line: thin click commands over ``pipeline``, ``producer`` and ``consumer``."""
