from appliance.numbers import to_e164


def test_international_and_national_numbers() -> None:
    assert to_e164("+44 1632 960001") == "+441632960001"
    assert to_e164("0044 1632 960001") == "+441632960001"
    assert to_e164("01632 960001", "GB") == "+441632960001"
    assert to_e164("(202) 555-0143", "US") == "+12025550143"


def test_non_numbers_are_none() -> None:
    assert to_e164("sipp") is None
    assert to_e164("support", "GB") is None
    assert to_e164("") is None and to_e164(None) is None
    assert to_e164("01632 960001") is None  # national number without a region is ambiguous
