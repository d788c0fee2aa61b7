"""Training: the trainer core (``trainer``, ``checkpoints``) and the trainers plugged into it (``sft``,
``preference``), with their configs, data, reference log-probs and callbacks."""
