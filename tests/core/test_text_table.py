"""Plain-text tables."""

import pytest

from sideways_tf.core import text_table

pytestmark = pytest.mark.backend_independent("string formatting")


def test_columns_are_left_aligned_two_spaces_apart_without_trailing_blanks():
    assert text_table.align([["mode", "fps"], ["sideways", 12.5], ["bp", ""]]) == (
        "mode      fps\nsideways  12.5\nbp")


def test_rows_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="same number of cells; got lengths \\[1, 2\\]"):
        text_table.align([["a", "b"], ["c"]])
