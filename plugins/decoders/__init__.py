"""Built-in decoders: how stored CTC outputs become text (``greedy``, ``beam``, ``beam-lm``)."""
