"""mmalign: align vision-language models with human preferences (data, training, evaluation)."""

__version__ = "0.1.0"
