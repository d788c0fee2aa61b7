"""What a task is: the task registry, the suites, and where a task's items come from.

* :mod:`.specs`: :class:`~.specs.TaskSpec` and ``TASKS`` (what each task asks, how the model answers it, which
  scorer scores it), task-list parsing;
* :mod:`.measured`: the fast path's agreement with generate-and-parse measured per closed task, which decides
  whether a task uses the fast path by default;
* :mod:`.suites`: named task suites (``--suite``);
* :mod:`.items`: :class:`~.items.TaskInput` (a task's items and where they came from) and the reader of
  evaluation-item files;
* :mod:`.world`: the shapes-world version of each task, with exact ground truth;
* :mod:`.benchmarks`: readers of the public benchmarks' own files (``--source TASK=PATH``).

Nothing here runs a model (no torch).
"""
