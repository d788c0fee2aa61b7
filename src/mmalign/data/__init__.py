"""Stage 1: preference data. Records, their I/O, validation, and builders."""
