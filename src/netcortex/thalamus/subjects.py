"""Thalamus: the subject grammar — build, encode, validate and match. The only subject code.

Subjects are dot-separated tokens::

    sensory.<modality>.<channel>.<event_class>.<target tokens...>
    reflex.<handler_id>.<outcome_kind>.<target tokens...>
    incident.<state>.<incident_id>

A target part (``10.0.0.1``, ``r1.example.com``, ``Gi1/0/3``) is always one token:
``encode_token`` percent-encodes ``.``, ``*``, ``>``, ``%``, whitespace and control
characters, so tokens never contain grammar characters. Patterns use ``*`` for
exactly one token and ``>`` (last token only) for one or more remaining tokens,
as NATS does. Nobody parses subjects for data: events carry their raw target.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

from netcortex.contracts.events import EVENT_CLASSES
from netcortex.errors import InvalidSubject

__all__ = [
    "INCIDENT",
    "REFLEX",
    "SENSORY",
    "bounded_part",
    "decode_token",
    "encode_token",
    "incident_subject",
    "matches",
    "outcome_subject",
    "sensory_subject",
    "subscription_patterns",
    "validate_durable",
    "validate_pattern",
    "validate_subject",
]

SENSORY = "sensory"
REFLEX = "reflex"
INCIDENT = "incident"
# An empty or missing part still occupies one token. A lone '%' is never produced
# by encoding a value ('%' itself becomes %25), so it cannot be confused with one.
_EMPTY_TOKEN = "%"  # noqa: S105 - not a password
_MAX_SUBJECT = 1024


# Characters that may not stand in a token: grammar, '%', whitespace, controls.
_ESCAPE = re.compile(r"[.*>%\s\x00-\x1f\x7f]")


def _escape_match(m: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in m.group().encode())


@lru_cache(maxsize=256)
def _plain_token(value: str) -> bool:
    """True for a non-empty token that needs no escaping (cached: ids, kinds, sources)."""
    return bool(value) and _ESCAPE.search(value) is None


@lru_cache(maxsize=65536)
def encode_token(value: str) -> str:
    """Encode one target part as a single subject token.

    ``.``, ``*``, ``>``, ``%``, whitespace and control characters become ``%XX``
    (UTF-8 bytes); an empty value becomes a lone ``%``. The result never contains
    grammar characters and ``decode_token`` reverses it.
    """
    if value == "":
        return _EMPTY_TOKEN
    return _ESCAPE.sub(_escape_match, value)


# What a shortened part keeps of its value; 48 characters encode to at most 432
# (9 per character), so with "~" and 12 hex digits a shortened token is at most 445.
_SHORT_PREFIX = 48
_SHORT_TOKEN_MAX = _SHORT_PREFIX * 9 + 13


def bounded_part(value: str, max_token: int) -> str:
    """``value``, or a shortened stand-in when its token would exceed ``max_token`` characters.

    A subject is at most 1024 characters and one escaped character can take 9
    (``%E3%80%80``), so an over-long target part (a huge interface name) would
    make an event unpublishable. Such a part becomes its first 48 characters, ``~``
    and 12 hex digits of its SHA-256, so distinct values stay distinct tokens.
    Surrogates (from JSON escapes) are hashed as they are.

    Args:
        value: the raw target part (not yet encoded).
        max_token: the longest ``encode_token(value)`` kept as it is; at least 445,
            the longest a shortened part can encode to.

    Raises:
        ValueError: ``max_token`` is below 445.
    """
    if max_token < _SHORT_TOKEN_MAX:
        raise ValueError(f"max_token must be at least {_SHORT_TOKEN_MAX}")
    if len(value) <= max_token // 9 or len(encode_token(value)) <= max_token:
        return value
    digest = hashlib.sha256(value.encode(errors="surrogatepass")).hexdigest()[:12]
    return f"{value[:_SHORT_PREFIX]}~{digest}"


def decode_token(token: str) -> str:
    """Reverse ``encode_token`` (for display only; never needed to get data)."""
    if token == _EMPTY_TOKEN:
        return ""
    if "%" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%" and _is_hex(token[i + 1 : i + 3]):
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(token[i].encode())
            i += 1
    return raw.decode(errors="replace")


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


# One C-level scan instead of a Python loop per character: whitespace and controls.
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def _split(subject: str, what: str) -> list[str]:
    if not isinstance(subject, str) or not subject:
        raise InvalidSubject(f"{what} must be a non-empty string, got {subject!r}")
    if len(subject) > _MAX_SUBJECT:
        raise InvalidSubject(f"{what} longer than {_MAX_SUBJECT} characters")
    if subject[0] == "." or subject[-1] == "." or ".." in subject:
        raise InvalidSubject(f"{what} {subject!r} has an empty token")
    if _BAD_CHARS.search(subject):
        raise InvalidSubject(f"{what} {subject!r} contains whitespace or control characters")
    return subject.split(".")


@lru_cache(maxsize=65536)
def validate_subject(subject: str) -> str:
    """Return ``subject`` if it is a valid concrete subject (no wildcards).

    Raises:
        InvalidSubject: empty tokens, whitespace, wildcards, or too long.
    """
    _split(subject, "subject")
    if "*" in subject or ">" in subject:
        raise InvalidSubject(
            f"subject {subject!r} contains a wildcard; publish needs a concrete subject"
        )
    return subject


@lru_cache(maxsize=4096)
def validate_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid subscription pattern.

    ``*`` must be a whole token; ``>`` must be the whole last token.

    Raises:
        InvalidSubject: the pattern breaks the grammar.
    """
    tokens = _split(pattern, "pattern")
    for i, tok in enumerate(tokens):
        if tok == ">":
            if i != len(tokens) - 1:
                raise InvalidSubject(f"pattern {pattern!r}: '>' must be the last token")
        elif tok == "*":
            continue
        elif "*" in tok or ">" in tok:
            raise InvalidSubject(f"pattern {pattern!r}: wildcards must be whole tokens ({tok!r})")
    return pattern


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` into a regex whose ``fullmatch`` decides a match.

    ``*`` becomes one token (``[^.]+``), ``>`` one or more (``.+``); literal
    tokens are escaped. Matching is then one C-level call, which is what keeps
    routing a never-seen subject cheap (a storm of distinct interfaces).

    Raises:
        InvalidSubject: the pattern breaks the grammar.
    """
    validate_pattern(pattern)
    return re.compile(_pattern_regex(pattern))


def _pattern_regex(pattern: str) -> str:
    parts = [
        "[^.]+" if tok == "*" else ".+" if tok == ">" else re.escape(tok)
        for tok in pattern.split(".")
    ]
    return r"\.".join(parts)


def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex matching a subject when any of ``patterns`` does (see ``compile_pattern``).

    Raises:
        InvalidSubject: a pattern breaks the grammar, or there is none.
    """
    pats = [validate_pattern(p) for p in patterns]
    if not pats:
        raise InvalidSubject("at least one pattern is needed")
    return re.compile("|".join(f"(?:{_pattern_regex(p)})" for p in pats))


def matches(pattern: str, subject: str) -> bool:
    """True when concrete ``subject`` matches ``pattern`` (``*`` one token, ``>`` the rest).

    Both are validated; validation and compilation are cached, so the hot path
    is two dict hits and one regex call.

    Raises:
        InvalidSubject: either argument breaks the grammar.
    """
    validate_subject(subject)
    return compile_pattern(pattern).fullmatch(subject) is not None


_DURABLE_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")


def subscription_patterns(patterns: str | Iterable[str]) -> tuple[str, ...]:
    """Validate the patterns of one subscription; return them de-duplicated, in order.

    Every bus applies the same rule, so swapping backends never changes what a
    subscription may say: each pattern is valid and starts with a concrete root
    token (``sensory.>``, ``reflex.*.errored.>``), because on JetStream a root is
    a stream and ``>`` or ``*.x`` would span all of them.

    Raises:
        InvalidSubject: no pattern, a pattern breaks the grammar, or its first token
            is a wildcard.
    """
    items = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    if not items:
        raise InvalidSubject("subscribe needs at least one pattern")
    for p in items:
        validate_pattern(p)
        if p.split(".", 1)[0] in ("*", ">"):
            raise InvalidSubject(
                f"pattern {p!r}: the first token must be a concrete root such as 'sensory'"
            )
    return tuple(dict.fromkeys(items))


def validate_durable(durable: str | None) -> str | None:
    """Return ``durable`` if it is a usable group name (letters, digits, ``_``, ``-``).

    Raises:
        InvalidSubject: the name is empty or has other characters (it becomes a
            JetStream consumer name, which must not contain ``.``, ``*``, ``>``).
    """
    if durable is not None and not _DURABLE_RE.fullmatch(durable):
        raise InvalidSubject(f"durable name {durable!r} must be 1-200 of [A-Za-z0-9_-]")
    return durable


def _target_tokens(parts: Iterable[str | None]) -> list[str]:
    return [encode_token(p if p is not None else "") for p in parts]


def sensory_subject(source: str, event_class: str, *target_parts: str | None) -> str:
    """Build ``sensory.<modality>.<channel>.<event_class>.<target tokens...>``.

    Args:
        source: ``"<modality>.<channel>"``, exactly two tokens (``"snmp.trap"``).
        event_class: one of ``EVENT_CLASSES``.
        target_parts: device, interface/peer ... each becomes one encoded token.

    Raises:
        InvalidSubject: bad source, unknown event class, or no target part.
    """
    src = source.split(".")
    if len(src) != 2 or not (_plain_token(src[0]) and _plain_token(src[1])):
        raise InvalidSubject(f"source must be '<modality>.<channel>', got {source!r}")
    if event_class not in EVENT_CLASSES:
        raise InvalidSubject(f"unknown event_class {event_class!r}")
    if not target_parts:
        raise InvalidSubject("a sensory subject needs at least one target token")
    return ".".join([SENSORY, src[0], src[1], event_class, *_target_tokens(target_parts)])


def outcome_subject(handler_id: str, kind: str, *target_parts: str | None) -> str:
    """Build ``reflex.<handler_id>.<outcome_kind>.<target tokens...>``.

    Raises:
        InvalidSubject: handler id or kind is not a plain token, or no target part.
    """
    for name, tok in (("handler_id", handler_id), ("kind", kind)):
        if not _plain_token(tok):
            raise InvalidSubject(f"{name} must be a plain token, got {tok!r}")
    if not target_parts:
        raise InvalidSubject("an outcome subject needs at least one target token")
    return ".".join([REFLEX, handler_id, kind, *_target_tokens(target_parts)])


def incident_subject(state: str, incident_id: str) -> str:
    """Build ``incident.<state>.<incident_id>`` (``state``: the transition, ``opened`` ...).

    Raises:
        InvalidSubject: the state or the id is not a plain token.
    """
    for name, tok in (("state", state), ("incident_id", incident_id)):
        if not _plain_token(tok):
            raise InvalidSubject(f"{name} must be a plain token, got {tok!r}")
    return f"{INCIDENT}.{state}.{incident_id}"
