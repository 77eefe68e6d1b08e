"""thalamus.subjects: token encoding, subject/pattern validation, ``*``/``>`` matching."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netcortex.errors import InvalidSubject
from netcortex.thalamus.subjects import (
    bounded_part,
    compile_patterns,
    decode_token,
    encode_token,
    matches,
    outcome_subject,
    sensory_subject,
    validate_pattern,
    validate_subject,
)


class TestTokens:
    @pytest.mark.parametrize(
        ("raw", "token"),
        [
            ("r1", "r1"),
            ("Gi1/0/3", "Gi1/0/3"),
            ("10.0.0.1", "10%2E0%2E0%2E1"),
            ("r1.example.com", "r1%2Eexample%2Ecom"),
            ("a*b>c", "a%2Ab%3Ec"),
            ("100%", "100%25"),
            ("Gi 1", "Gi%201"),
            ("tab\there", "tab%09here"),
            ("", "%"),
            ("\x00", "%00"),
            ("é", "é"),
        ],
    )
    def test_encode_examples(self, raw: str, token: str) -> None:
        """Grammar characters, %, whitespace and control characters are percent-encoded."""
        assert encode_token(raw) == token
        assert decode_token(token) == raw

    @given(st.text(max_size=60))
    def test_round_trip_and_always_one_valid_token(self, raw: str) -> None:
        """Any string encodes to one valid subject token that decodes back to it."""
        token = encode_token(raw)
        assert decode_token(token) == raw
        assert not {".", "*", ">"} & set(token)
        assert validate_subject(f"sensory.snmp.trap.link_down.{token}")
        assert matches("sensory.snmp.trap.link_down.*", f"sensory.snmp.trap.link_down.{token}")


class TestValidation:
    @pytest.mark.parametrize(
        "subject", ["", "a..b", ".a", "a.", "a.*", "a.>", "a.b*", "a b", "a.\x01", "x" * 1025]
    )
    def test_invalid_subjects(self, subject: str) -> None:
        """Empty tokens, wildcards, whitespace, control characters and overlong subjects raise."""
        with pytest.raises(InvalidSubject):
            validate_subject(subject)

    @pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a.b>", "a.*b", "> .a", "a. b"])
    def test_invalid_patterns(self, pattern: str) -> None:
        """``>`` not last, partial-token wildcards and malformed tokens raise."""
        with pytest.raises(InvalidSubject):
            validate_pattern(pattern)

    @pytest.mark.parametrize(
        "pattern", [">", "*", "a.*", "a.>", "*.*.c.>", "sensory.*.*.link_down.>"]
    )
    def test_valid_patterns(self, pattern: str) -> None:
        """Whole-token ``*`` anywhere and a final ``>`` are valid."""
        assert validate_pattern(pattern) == pattern

    def test_invalid_subject_is_a_value_error(self) -> None:
        """InvalidSubject is also a ValueError, so generic validation code can catch it."""
        with pytest.raises(ValueError, match="wildcard"):
            validate_subject("a.*")


class TestMatching:
    @pytest.mark.parametrize(
        ("pattern", "subject", "expected"),
        [
            ("sensory.*.*.link_down.>", "sensory.snmp.trap.link_down.r1", True),
            ("sensory.*.*.link_down.>", "sensory.meraki.api.link_down.r1.p3", True),
            ("sensory.*.*.link_down.>", "sensory.snmp.trap.link_down", False),
            ("sensory.*.*.link_down.>", "sensory.snmp.link_down.r1", False),
            ("sensory.*.*.link_down.>", "sensory.snmp.trap.link_up.r1", False),
            ("sensory.snmp.>", "sensory.snmp.trap.link_down.r1", True),
            ("sensory.snmp.>", "sensory.snmp", False),
            ("a.*", "a.b", True),
            ("a.*", "a.b.c", False),
            ("a.*", "a", False),
            ("a.b", "a.b", True),
            ("a.b", "a.b.c", False),
            ("a.b.c", "a.b", False),
            (">", "anything.at.all", True),
            ("*", "one", True),
            ("*", "one.two", False),
            ("reflex.*.logged.>", "reflex.link_down.logged.r1%2Eexample", True),
        ],
    )
    def test_matching_table(self, pattern: str, subject: str, expected: bool) -> None:
        """``*`` matches exactly one token, ``>`` one or more trailing tokens."""
        assert matches(pattern, subject) is expected

    def test_matching_validates_both_sides(self) -> None:
        """A malformed pattern or subject raises instead of silently not matching."""
        with pytest.raises(InvalidSubject):
            matches("a.>.b", "a.x.b")
        with pytest.raises(InvalidSubject):
            matches("a.*", "a.*")


class TestBuilders:
    def test_sensory_subject_encodes_each_target_part(self) -> None:
        """Each target part is one encoded token after the event class."""
        subject = sensory_subject("snmp.trap", "link_down", "10.0.0.1", "Gi1/0/3")
        assert subject == "sensory.snmp.trap.link_down.10%2E0%2E0%2E1.Gi1/0/3"
        assert matches("sensory.*.*.link_down.>", subject)

    def test_missing_part_still_takes_one_token(self) -> None:
        """A None or empty target part becomes the lone % token."""
        assert sensory_subject("snmp.trap", "bgp_established", "r1", None).endswith(".r1.%")

    @pytest.mark.parametrize(
        ("source", "event_class", "parts"),
        [
            ("snmp", "link_down", ("r1",)),
            ("snmp.trap.x", "link_down", ("r1",)),
            ("snmp.tr*p", "link_down", ("r1",)),
            ("snmp.trap", "not_a_class", ("r1",)),
            ("snmp.trap", "link_down", ()),
        ],
    )
    def test_sensory_subject_rejects_bad_input(
        self, source: str, event_class: str, parts: tuple[str, ...]
    ) -> None:
        """A source that is not two plain tokens, an unknown class or no target raises."""
        with pytest.raises(InvalidSubject):
            sensory_subject(source, event_class, *parts)

    def test_outcome_subject(self) -> None:
        """Outcome subjects are reflex.<handler>.<kind>.<target tokens>."""
        assert (
            outcome_subject("link_down", "logged", "r1", "Gi1") == "reflex.link_down.logged.r1.Gi1"
        )
        with pytest.raises(InvalidSubject):
            outcome_subject("link.down", "logged", "r1")
        with pytest.raises(InvalidSubject):
            outcome_subject("link_down", "logged")


class TestBoundedPart:
    @pytest.mark.parametrize("value", ["Gi1/0/3", "", "x" * 448, "\u3000" * 49])
    def test_a_part_whose_token_fits_is_kept(self, value: str) -> None:
        """A part whose encoded token is within the limit comes back unchanged."""
        assert len(encode_token(value)) <= 448
        assert bounded_part(value, 448) is value

    def test_an_over_long_part_becomes_prefix_and_digest(self) -> None:
        """Past the limit the part is its first 48 characters, ``~`` and a SHA-256 prefix."""
        value = "x" * 449
        digest = hashlib.sha256(value.encode()).hexdigest()[:12]
        assert bounded_part(value, 448) == f"{'x' * 48}~{digest}"
        assert bounded_part(value, 449) is value

    def test_escapes_count_towards_the_limit(self) -> None:
        """A short part of characters that escape to 9 each is shortened too."""
        value = "\u3000" * 60  # 60 characters, 540 once encoded
        short = bounded_part(value, 512)
        assert short.startswith("\u3000" * 48 + "~")
        assert len(encode_token(short)) <= 512

    def test_distinct_long_parts_stay_distinct(self) -> None:
        """Two long parts sharing their first 48 characters get different stand-ins."""
        a, b = "p" * 600 + "a", "p" * 600 + "b"
        assert bounded_part(a, 448) != bounded_part(b, 448)

    def test_lone_surrogates_are_hashed(self) -> None:
        """A part with a lone surrogate (from a JSON escape) is shortened, not an error."""
        value = "\ud800" * 500
        digest = hashlib.sha256(value.encode(errors="surrogatepass")).hexdigest()[:12]
        assert bounded_part(value, 448) == f"{chr(0xD800) * 48}~{digest}"

    def test_a_limit_a_short_part_cannot_meet_is_refused(self) -> None:
        """Below 445 characters a shortened part could still be too long: refused."""
        assert bounded_part("x", 445) == "x"
        with pytest.raises(ValueError, match="445"):
            bounded_part("x", 444)

    @given(st.text(max_size=700), st.integers(min_value=445, max_value=1024))
    def test_the_token_always_fits(self, value: str, max_token: int) -> None:
        """Whatever the part, its bounded form encodes to at most ``max_token`` characters."""
        assert len(encode_token(bounded_part(value, max_token))) <= max_token


def _reference_match(pattern: str, subject: str) -> bool:
    """Token-by-token NATS matching, written plainly as the oracle for the regex matcher."""
    ptoks, stoks = pattern.split("."), subject.split(".")
    for i, ptok in enumerate(ptoks):
        if ptok == ">":
            return len(stoks) > i
        if i >= len(stoks) or (ptok != "*" and ptok != stoks[i]):
            return False
    return len(ptoks) == len(stoks)


_tok = st.sampled_from(["a", "b", "ab", "10%2E0", "Gi1/0/3", "x-y"])
_subjects = st.lists(_tok, min_size=1, max_size=5).map(".".join)
_patterns = st.tuples(
    st.lists(st.one_of(_tok, st.just("*")), min_size=0, max_size=4),
    st.booleans(),
).map(lambda t: ".".join([*t[0], ">"] if t[1] or not t[0] else t[0]))


class TestCompiledMatching:
    @given(_patterns, _subjects)
    def test_compiled_regex_agrees_with_token_matching(self, pattern: str, subject: str) -> None:
        """The compiled-regex matcher decides exactly as token-by-token matching does."""
        assert matches(pattern, subject) == _reference_match(pattern, subject)

    @given(st.lists(_patterns, min_size=1, max_size=4), _subjects)
    def test_combined_patterns_match_when_any_does(self, patterns: list[str], subject: str) -> None:
        """compile_patterns matches a subject exactly when one of its patterns does."""
        combined = compile_patterns(patterns).fullmatch(subject) is not None
        assert combined == any(_reference_match(p, subject) for p in patterns)

    def test_no_pattern_is_an_error(self) -> None:
        """An empty pattern list is refused rather than matching nothing silently."""
        with pytest.raises(InvalidSubject):
            compile_patterns([])
