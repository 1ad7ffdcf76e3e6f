"""The leakage boundary in front of the external credit analyst (SGCD §4.2, App. B).

Before sibling traces reach the external LLM, the sanitizer masks evaluator or oracle
reports, hidden gold-action values, credentials, payment and account values, and
answer-bearing literals. It keeps the structure the analyst needs to align steps: tool
names, argument keys and JSON shape stay; each masked value becomes a typed placeholder
(``[PAYMENT_1]``) that is the same wherever the value recurs, across all siblings of a
group, so "both siblings used the same card" survives masking.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

# Kinds of masked value, in placeholder form [KIND_n].
GOLD, ANSWER, CREDENTIAL, PAYMENT, EVALUATOR = (
    "GOLD",
    "ANSWER",
    "CREDENTIAL",
    "PAYMENT",
    "EVALUATOR_REPORT",
)
_PLACEHOLDER = re.compile(r"\[(?:GOLD|ANSWER|CREDENTIAL|PAYMENT|EVALUATOR_REPORT)_\d+\]")

# Secrets recognisable without a key in front of them.
_CARD_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")  # 13-19 digits (ISO/IEC 7812)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")  # ISO 13616
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+")
_API_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")

_ALNUM_BEFORE, _ALNUM_AFTER = r"(?<![A-Za-z0-9])", r"(?![A-Za-z0-9])"
_AMOUNT = re.compile(r"[$€£]?\s*(?P<int>\d[\d,]*)(?P<frac>\.\d+)?")


@dataclass
class SanitizerConfig:
    evaluator_keys: list[str] = field(
        default_factory=lambda: [
            "reward_info",
            "reward_breakdown",
            "reward_basis",
            "reward_components",
            "db_check",
            "env_assertions",
            "action_checks",
            "nl_assertions",
            "communicate_checks",
            "evaluation",
            "evaluator_report",
            "gold_actions",
            "expected_actions",
            "ground_truth",
            "num_tests",
            "passes",
            "failures",
        ]
    )
    """Keys whose value is an evaluator/oracle report: tau2's ``RewardInfo`` fields and
    AppWorld's evaluation report (App. B: "evaluator or oracle reports")."""
    credential_keys: list[str] = field(
        default_factory=lambda: [
            "password",
            "passwd",
            "passcode",
            "secret",
            "api_key",
            "apikey",
            "access_token",
            "refresh_token",
            "auth_token",
            "token",
            "authorization",
            "credentials",
            "otp",
            "cvv",
            "pin",
        ]
    )
    """Keys (also as ``<prefix>_<key>``, e.g. ``account_password``) whose value is a
    credential (App. B: "credentials")."""
    payment_keys: list[str] = field(
        default_factory=lambda: [
            "payment_id",
            "payment_method_id",
            "card_number",
            "account_number",
            "routing_number",
            "iban",
            "swift",
            "bank_account",
        ]
    )
    """Keys (also with a prefix) whose value is a payment or account value (App. B)."""
    payment_id_prefixes: list[str] = field(
        default_factory=lambda: [
            "credit_card",
            "debit_card",
            "gift_card",
            "certificate",
            "paypal",
            "bank_account",
        ]
    )
    """``<prefix>_<digits>`` ids are payment methods wherever they appear (tau2 airline
    and retail name payment methods this way)."""
    min_literal_chars: int = 2
    """Private literals shorter than this are not masked: a one-character value occurs
    everywhere and masking it would erase the trace (toolgym choice)."""


@dataclass(frozen=True)
class PrivateValues:
    """A task's labels, from the env's task record; the analyst must never see them."""

    gold_literals: tuple[str, ...] = ()
    """Argument values of the hidden gold actions."""
    answer_literals: tuple[str, ...] = ()
    """Answer-bearing values: expected answers, values the agent must communicate."""

    @classmethod
    def from_labels(cls, gold_arguments: Iterable[Any], answers: Iterable[Any]) -> PrivateValues:
        """Flatten nested gold-action arguments and answers to their leaf values."""
        return cls(tuple(_leaves(gold_arguments)), tuple(_leaves(answers)))


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


class Sanitizer:
    """Masks one group's text for the analyst; use one instance per group.

    ``masked`` maps each original value to its placeholder; the values are secrets, so
    never log it.
    """

    def __init__(self, config: SanitizerConfig, private: PrivateValues) -> None:
        self.config = config
        self.masked: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        labels = [(v, GOLD) for v in private.gold_literals] + [
            (v, ANSWER) for v in private.answer_literals
        ]
        self._literals = [
            (_literal_pattern(value), value, kind)
            for value, kind in sorted(labels, key=lambda item: -len(item[0]))  # "HAT123" first
            if len(value.strip()) >= config.min_literal_chars
        ]
        self._keyed = [
            (_key_pattern(config.evaluator_keys), EVALUATOR),
            (_key_pattern(config.credential_keys), CREDENTIAL),
            (_key_pattern(config.payment_keys), PAYMENT),
        ]
        prefixes = "|".join(re.escape(p) for p in config.payment_id_prefixes)
        self._patterns = [
            (re.compile(rf"\b(?:{prefixes})_\d+\b", re.IGNORECASE), PAYMENT),
            (_CARD_NUMBER, PAYMENT),
            (_IBAN, PAYMENT),
            (_BEARER, CREDENTIAL),
            (_JWT, CREDENTIAL),
            (_API_KEY, CREDENTIAL),
        ]

    def __call__(self, text: str) -> str:
        for pattern, value, kind in self._literals:
            # Keyed by the label, so "$1,628" and "1628" share a placeholder.
            text = pattern.sub(lambda m, v=value, k=kind: self._placeholder(v, k), text)
        # Shapes before keys: "Authorization: Bearer <token>" is one value, not "Bearer".
        for pattern, kind in self._patterns:
            text = pattern.sub(lambda m, k=kind: self._placeholder(m[0], k), text)
        for pattern, kind in self._keyed:
            text = self._mask_keyed(text, pattern, kind)
        return text

    @property
    def hidden_values(self) -> list[str]:
        """What credit scoring keeps out (:func:`literal_token_mask`): every value masked so
        far, and every label long enough to mask, whether or not it has occurred yet."""
        labels = (value.lower() for _, value, _ in self._literals)  # as masked keys them
        return list(dict.fromkeys([*self.masked, *labels]))

    def _placeholder(self, value: str, kind: str) -> str:
        if _PLACEHOLDER.fullmatch(value):
            return value
        key = value.lower() if kind in (GOLD, ANSWER) else value
        if key not in self.masked:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            self.masked[key] = f"[{kind}_{self._counts[kind]}]"
        return self.masked[key]

    def _mask_keyed(self, text: str, pattern: re.Pattern[str], kind: str) -> str:
        out, cursor = [], 0
        for match in pattern.finditer(text):
            if match.start() < cursor:  # inside a value masked already
                continue
            start, end, quoted = _value_span(text, match.end(), to_line_end=kind == EVALUATOR)
            value = text[start:end]
            if not value.strip() or _PLACEHOLDER.fullmatch(value):
                continue
            placeholder = self._placeholder(value, kind)
            out.append(text[cursor:start] + (placeholder if quoted else f'"{placeholder}"'))
            cursor = end
        return "".join(out) + text[cursor:]


def _key_pattern(keys: Sequence[str]) -> re.Pattern[str]:
    """``key`` or ``<prefix>_key``, optionally quoted, then ``:`` or ``=``."""
    names = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    return re.compile(rf"""(?<![\w])["']?(?:\w+_)?(?:{names})["']?\s*[:=]\s*""", re.IGNORECASE)


def _literal_pattern(value: str) -> re.Pattern[str]:
    """``value`` as a whole word, any case; an amount also without or with its thousands
    commas and currency sign (tau2 matches communicated values with commas removed)."""
    value = value.strip()
    amount = _AMOUNT.fullmatch(value)
    if amount:
        digits = ",?".join(amount["int"].replace(",", ""))
        body = rf"[$€£]?\s*{digits}" + re.escape(amount["frac"] or "")
    else:
        body = re.escape(value)
    return re.compile(_ALNUM_BEFORE + body + _ALNUM_AFTER, re.IGNORECASE)


def _value_span(text: str, start: int, *, to_line_end: bool) -> tuple[int, int, bool]:
    """The value that begins at ``start``: ``(begin, end, is_inside_quotes)``.

    A quoted string yields its inside (quotes stay); a bracketed value its whole balanced
    span; a bare scalar runs to a delimiter, or to the end of the line when ``to_line_end``.
    """
    if start >= len(text):
        return start, start, False
    opener = text[start]
    if opener in "\"'":
        end = start + 1
        while end < len(text) and text[end] != opener:
            end += 2 if text[end] == "\\" else 1
        return start + 1, min(end, len(text)), True
    if opener in "{[":
        depth, end, quote = 0, start, ""
        while end < len(text):
            char = text[end]
            if quote:
                if char == "\\":
                    end += 1
                elif char == quote:
                    quote = ""
            elif char in "\"'":
                quote = char
            elif char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return start, end + 1, False
            end += 1
        return start, len(text), False
    stop = r"\n" if to_line_end else r"\s,;}\])"
    match = re.compile(rf"[^{stop}]+").match(text, start)
    return start, match.end() if match else start, False


def literal_token_mask(token_texts: Sequence[str], values: Iterable[str]) -> list[bool]:
    """Which tokens overlap an occurrence of one of ``values`` (case-insensitive).

    SGCD gives masked values and answer-bearing literals zero credit-reference weight
    (App. B, "Response and credit masks"): the teacher context never shows them, so their
    divergence says nothing about credit.
    """
    ends = list(accumulate(len(piece) for piece in token_texts))  # token i ends at ends[i]
    text = "".join(token_texts)
    hit = [False] * len(token_texts)
    for value in values:
        if not value.strip():
            continue
        for match in _literal_pattern(value).finditer(text):
            i = bisect_right(ends, match.start())  # first token ending after the match starts
            while i < len(ends) and ends[i] - len(token_texts[i]) < match.end():
                hit[i] = True
                i += 1
    return hit
