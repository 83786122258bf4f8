"""The concept-error benchmark names each rating's real ingredients and credits the one a prediction misses."""

import numpy as np
import pandas as pd
import pytest
from script_loader import load_script
from sklearn.linear_model import LinearRegression
from test_controlled_corpus import SAMPLE_PIECES

from midlevel.concepts import MIDLEVEL_FEATURES
from midlevel.datasets.controlled.build import sample_ratings
from midlevel.datasets.controlled.ratings import INGREDIENT_COLUMNS, INGREDIENTS


@pytest.fixture(scope="module")
def bench():
    return load_script("studies/concept_errors.py")


def test_ingredients_are_what_each_raw_score_is_made_of(tmp_path):
    """Regressed on its listed ingredients, every raw score is (almost) exact, and each ingredient counts."""
    sample = sample_ratings(300, seed=11, seconds=10.0, clips_per_piece=2, pieces=SAMPLE_PIECES, cache_dir=tmp_path)
    assert set(INGREDIENTS) == set(MIDLEVEL_FEATURES)
    assert set(INGREDIENT_COLUMNS) == {c for cols in INGREDIENTS.values() for c in cols}
    for concept, ingredients in INGREDIENTS.items():
        y = sample[f"raw_{concept}"].to_numpy()
        x = sample[list(ingredients)].to_numpy(dtype=float)
        full = LinearRegression().fit(x, y).score(x, y)
        assert full > 0.95, concept  # the formulas clip a few terms, so not always exactly 1
        for k, name in enumerate(ingredients):
            rest = np.delete(x, k, axis=1)
            without = LinearRegression().fit(rest, y).score(rest, y) if rest.shape[1] else 0.0
            assert without < full - 1e-4, (concept, name)


def test_the_missed_ingredient_gets_the_gain(bench):
    rng = np.random.default_rng(0)
    n = 400
    heard, missed = rng.normal(size=n), rng.normal(size=n)
    rating = heard + missed
    prediction = heard + 0.3 * rng.normal(size=n)  # hears one ingredient, not the other
    table = pd.DataFrame({"heard": heard, "missed": missed})
    groups = np.repeat(np.arange(n // 4), 4)
    out = bench.ingredient_table(rating, prediction, table, ("heard", "missed"), groups)
    rows = out["ingredients"]
    assert rows["missed"]["r_prediction"] < 0.2 < 0.6 < rows["missed"]["r_rating"]
    assert rows["missed"]["gain"] > 0.2 > abs(rows["heard"]["gain"])
    assert rows["missed"]["r_if_known"] > 0.95
    assert out["r"] == pytest.approx(np.corrcoef(prediction, rating)[0, 1])
