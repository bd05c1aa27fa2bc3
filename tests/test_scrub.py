"""scrub's memo of clean shapes (digits read as `0`): it never lets a secret through.

A new message of a known clean shape skips the rules, so the memo is only sound if the rules
cannot tell two texts of one shape apart. Generated texts full of the rules' words, separators
and digits check that the memo's answer is always the full rules' answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.core import redact as redact_module
from seawall.core import scrub as scrub_module
from seawall.core.redact import redact
from seawall.core.scrub import SHAPE_UNSAFE, SHAPES, scrub, valid_text

LIMIT = 4096


@pytest.fixture(autouse=True)
def empty_memos() -> Iterator[None]:
    scrub_module.CLEAN.clear()
    SHAPES.clear()
    yield
    scrub_module.CLEAN.clear()
    SHAPES.clear()


def test_a_new_id_in_a_known_message_hits_the_shape_memo() -> None:
    first = "connection to db-7 refused after 12 ms (request 55433)"
    assert scrub(first, LIMIT) == first
    assert len(SHAPES) == 1
    later = "connection to db-8 refused after 40 ms (request 91817)"
    assert scrub(later, LIMIT) == later
    assert later not in scrub_module.CLEAN  # answered by its shape, not by the rules
    assert len(SHAPES) == 1


@pytest.mark.parametrize(
    ("clean", "secret", "masked"),
    [
        # An AWS key id differs from a clean text only in a digit after `A`.
        ("id A5TQWERTYUIOPASDFGHJ", "id A3TQWERTYUIOPASDFGHJ", "id [REDACTED]"),
        # A URL-encoded separator differs from a clean text only in its digit.
        ("q=password%0Dhunter2", "q=password%3Dhunter2", "q=password%3D[REDACTED]"),
        # A value that starts with an encoded `&` is no value; with another digit, it is.
        ("password=%26", "password=%00", "password=[REDACTED]"),
    ],
)
def test_a_digit_the_rules_read_is_never_hidden_by_a_shape(clean: str, secret: str, masked: str) -> None:
    assert scrub(clean, LIMIT) == clean
    assert scrub(secret, LIMIT) == masked


def test_the_shape_guard_covers_every_digit_the_rules_name() -> None:
    """Outside quantifiers, `0-9` ranges and backreferences, a rule names a digit only after `%`
    (a shape keeps `%`) or as `A3` (texts holding it are never memoised by shape)."""
    for _, pattern, _ in redact_module._RULES:
        source = re.sub(r"\{\d+(?:,\d*)?\}|0-9|(?<!\\)\\\d", "", pattern.pattern)  # and backreferences
        for found in re.finditer(r"(.)\d+", source):
            assert found[1] == "%" or found[0] in SHAPE_UNSAFE, (found[0], pattern.pattern)


FRAGMENTS = [
    "password", "pwd", "pass", "token", "key", "sig", "auth", "session", "sid", "secret",
    "Authorization", "Cookie", "Bearer ", "basic ", "AKIA", "A3T", "ASIA", "eyJ", "ghp_", "sk_live_",
    "xoxb-", "AIza", "hooks.slack.com/services/", "-----BEGIN PRIVATE KEY-----", "://", "@",
    "=", ": ", ":", "%3D", "%3a", "%26", "%22", "'", '"', "\\", ",", "(", ")", " ", "&", ";", "\n",
    "db", "request", "x", "Q", "_", "-", ".", "/",
]  # fmt: skip
pieces = st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet="0123456789", min_size=1, max_size=20))
digits = st.text(alphabet="0123456789", min_size=1, max_size=20)
# Shapes where a digit decides: a name, an encoded separator and a value; an AWS key id's prefix.
named = st.tuples(
    st.sampled_from(["password", "token", "x", "api_key"]),
    st.sampled_from(["%3D", "%3A", "%2D", "=", "=%26", "=%22", "=%25"]),
    st.one_of(digits, st.sampled_from(["hunter2", "%26", "%22"])),
).map("".join)
aws = st.tuples(
    st.sampled_from(["A3T", "A5T", "AKIA", "A3TQ"]),
    st.text(alphabet="QWERTY0123456789", min_size=15, max_size=18),
).map("".join)
texts = st.one_of(
    st.lists(st.one_of(pieces, named, aws), max_size=8).map("".join),
    st.tuples(st.sampled_from(["", "id ", "x=", "Q"]), st.one_of(named, aws)).map("".join),
)
digit_maps = st.lists(st.sampled_from("0123456789"), min_size=10, max_size=10).map(
    lambda digits: str.maketrans("0123456789", "".join(digits))
)


@settings(max_examples=400, deadline=None)
@given(text=texts, other_digits=digit_maps)
def test_the_shape_memo_and_the_full_rules_agree(text: str, other_digits: dict[int, int]) -> None:
    """Whatever was seen first, scrub answers as the rules do for a text of the same shape."""
    sibling = text.translate(other_digits)
    for first, second in ((text, sibling), (sibling, text)):
        scrub_module.CLEAN.clear()
        SHAPES.clear()
        assert scrub(first, LIMIT) == redact(valid_text(first))
        assert scrub(second, LIMIT) == redact(valid_text(second)), (first, second)
