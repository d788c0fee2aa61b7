"""Stage 1: preference data. Records, their I/O, images, validation, and importers of published datasets
(the pairs made from them are :mod:`mmalign.pairs`)."""
