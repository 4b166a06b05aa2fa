"""Helpers dataset plugins share: the on-disk utterance cache (:mod:`harness.data.utterance_cache`)."""
