"""Importers of public multimodal preference datasets, each reading the format its authors publish.

``mmalign data import FORMAT SRC OUT`` (or :func:`import_file`) with FORMAT one of ``rlhf-v``, ``rlaif-v``,
``llava-rlhf``, ``vlfeedback``, ``povid``, ``trl``. A new format is one module with an
:class:`~mmalign.data.importers.base.Importer` subclass and its line in
:data:`~mmalign.data.importers.registry.FORMATS`.
"""

from mmalign.data.importers.registry import FORMATS, ImportReport, import_file, make_importer

__all__ = ["FORMATS", "ImportReport", "import_file", "make_importer"]
