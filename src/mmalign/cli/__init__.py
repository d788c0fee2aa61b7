"""The ``mmalign`` command line: thin wrappers that parse options, call library functions and print."""
