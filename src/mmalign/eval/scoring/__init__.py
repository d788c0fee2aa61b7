"""Answer files → scores: ``mmalign eval score``, and the scoring of a run's own files.

* :mod:`.score`: :func:`~.score.score` (``mmalign eval score``): one task's answer files scored, with bootstrap
  intervals and paired deltas against a baseline;
* :mod:`.rescore`: a finished ``mmalign eval run`` task scored from the files it wrote (the same code);
* :mod:`.answers`: a run's question and answer files, written in the benchmarks' own formats;
* :mod:`.hallucination`, :mod:`.general`, :mod:`.alignment`: each task scored from its files, per dimension
  (POPE, CHAIR, consistency; MME, multiple choice; safety, reward, battles), with the metric core
  (:mod:`mmalign.eval.metrics`);
* :mod:`.rewardbench_vl`, :mod:`.rewardbench_multimodal`, :mod:`.rewardbench_mmrlhf` (helpers in
  :mod:`.rewardbench_common`): reward-model benchmarks' official prediction files read and aggregated as their
  official scripts do (VL-RewardBench, Multimodal RewardBench, MM-RLHF-RewardBench); :mod:`.rewardbench`: those
  three as tasks of ``mmalign eval score``;
* :mod:`.task_score`: :class:`~.task_score.TaskScore`, what scoring a task returns (metrics and per-item columns
  for intervals and deltas).
"""
