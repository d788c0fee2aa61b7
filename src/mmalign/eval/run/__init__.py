"""Running a model over a task's items: ``mmalign eval run``.

* :mod:`.evaluation`: :func:`~.evaluation.evaluate` and :class:`~.evaluation.Evaluation`, one run from tasks to
  results.json and report.md;
* :mod:`.runner`: :class:`~.runner.Runner`, one loaded model answering items in fixed batches (generation, the
  fast path, preference-pair log-probs) through the resume cache;
* :mod:`.fastpath`: an option picked from the model's log-probs instead of generating and parsing;
* :mod:`.agreement`: whether a task uses the fast path, and this run's check of its agreement;
* :mod:`.cache`: the resume cache and model fingerprints;
* :mod:`.judging`: the judged tasks (dialogue ratings, battles between models).
"""
