import pytest

from weldfusion.data.categories import CATEGORIES, category_id, category_name, code_of_part


def test_label_ids_are_the_dataset_class_codes():
    assert len(CATEGORIES) == 12
    assert category_id("Good") == 0 and category_id("Crater_Cracks") == 11
    assert category_name(4) == "Porosity_w_Excessive_Penetration"


@pytest.mark.parametrize(
    "spelling",
    ["Porosity w/ Excessive Penetration", "porosity_w-excessive_penetration", "Porosity with Excessive Penetration",
     "POROSITY W EXCESSIVE PENETRATION", " porosity_w_excessive_penetration "],
)
def test_tolerant_names(spelling):
    assert category_id(spelling) == 4


@pytest.mark.parametrize("spelling,code", [("burn through", 2), ("Burn-Through", 2), ("lack of fusion", 7), ("crater cracks", 11)])
def test_spaces_and_separators_are_ignored(spelling, code):
    assert category_id(spelling) == code


def test_unknown_category_is_an_error_not_a_new_class():
    with pytest.raises(KeyError, match="unknown category 'Cold_Lap'"):
        category_id("Cold_Lap")


def test_code_of_part_number():
    assert code_of_part("02-09-23-0024-07") == 7
    assert code_of_part("no-code") is None
