"""The speech a recipe pre-trains on: a draw of its dataset per language."""

from __future__ import annotations

from harness.api import DatasetSplits, PrepareContext

from .recipe import Recipe


def load_corpus(context: PrepareContext, recipe: Recipe, dev_minutes: float = 0.1) -> list[tuple[str, DatasetSplits]]:
    """Each language's splits, drawn with the recipe's corpus seed: ``minutes`` split over the
    languages for training (evenly, or by the recipe's shares), ``dev_minutes`` each held out (the test split is not used)."""
    corpus = []
    for language in recipe.languages:
        corpus.append((language, context.load_dataset(recipe.dataset, language, 0, {
            "train_minutes": recipe.minutes_for(language), "dev_minutes": dev_minutes, "test_minutes": 0.1,
            "corpus_seed": recipe.corpus_seed,
        })))
    return corpus
