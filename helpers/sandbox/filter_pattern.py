"""CloudWatch Logs filter patterns: the language of ``FilterLogEvents``' ``filterPattern``, as a predicate on messages.

The sandbox reads the forms AWS documents
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/FilterAndPatternSyntax.html):
terms matched as whole words (``ERROR``), ``"quoted phrases"``, ``?any ?of ?these``,
``-excluded`` terms, ``%regular expressions%``, and JSON patterns
(``{ $.status = "Failure" && $.n > 3 }``). Space-delimited patterns
(``[field1, field2]``) are refused with a message saying so.

Usage:

>>> compile_pattern('{ $.status = "Fail*" && $.n > 3 }')('{"status": "Failure", "n": 4}')
True
>>> compile_pattern('-DEBUG ?WARN ?ERROR')('ERROR boom')
True
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from typing import Any, Callable

SUPPORTED = ('The sandbox supports: terms (ERROR), "quoted phrases", ?any ?of ?these, -excluded terms, '
             '%regex%, and JSON patterns such as { $.status = "Failure" && $.n > 3 } '
             "with = != < > <= >= && || ( ), * wildcards in strings, IS TRUE/FALSE/NULL and NOT EXISTS.")
WORD_CHARS = "A-Za-z0-9_"
BARE_TERM_RE = re.compile(r"[A-Za-z0-9_]+")
REGEX_ALLOWED_RE = re.compile(r"[A-Za-z0-9_#=@/;,:\-\s^$?\[\]{}|\\*+.]*")


class FilterPatternError(ValueError):
    """A filter pattern the sandbox cannot read; the message names the pattern, the reason and what is supported."""


def _bad_pattern(pattern: str, reason: str) -> FilterPatternError:
    return FilterPatternError(f"Invalid filter pattern {pattern!r}: {reason} {SUPPORTED}")


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """A predicate on messages for a CloudWatch Logs filter pattern; :class:`FilterPatternError` if unreadable.

    >>> compile_pattern('ERROR "bad request"')('[ERROR 400] bad request')
    True
    >>> compile_pattern('?WARN ?ERROR')('INFO ok')
    False
    >>> compile_pattern('ERR')('ERROR')   # terms match whole words, not parts of them
    False
    """
    text = pattern.strip()
    if not text:
        return lambda _msg: True
    if text.startswith("{"):
        if not text.endswith("}"):
            raise _bad_pattern(pattern, "If a filter pattern starts with '{' it must end with '}'.")
        return _JsonPatternParser(pattern, text[1:-1]).parse()
    if text.startswith("["):
        raise _bad_pattern(pattern, "space-delimited patterns ([field1, field2, ...]) are not supported by the "
                                    "sandbox.")
    return _term_pattern(pattern, text)


def _term_pattern(pattern: str, text: str) -> Callable[[str], bool]:
    required: list[Callable[[str], bool]] = []
    optional: list[Callable[[str], bool]] = []
    excluded: list[Callable[[str], bool]] = []
    pos = 0
    token_re = re.compile(r'\s*([?-]?)(?:"((?:[^"\\]|\\.)*)"|%([^%]*)%|(\S+))')
    while pos < len(text):
        m = token_re.match(text, pos)
        if not m or m.end() == pos:
            raise _bad_pattern(pattern, f"cannot read the pattern from {text[pos:]!r} (an unclosed quote?).")
        pos = m.end()
        sign, phrase, regex, bare = m.groups()
        if phrase is not None:
            literal = re.sub(r"\\(.)", r"\1", phrase)
            test = (lambda lit: lambda msg: lit in msg)(literal)
        elif regex is not None:
            if not REGEX_ALLOWED_RE.fullmatch(regex) or not regex:
                raise _bad_pattern(pattern, f"the regular expression %{regex}% uses characters CloudWatch Logs "
                                            "does not allow (parentheses and most symbols are not supported).")
            try:
                compiled = re.compile(regex)
            except re.error as exc:
                raise _bad_pattern(pattern, f"the regular expression %{regex}% is not valid ({exc}).") from None
            test = (lambda rx: lambda msg: rx.search(msg) is not None)(compiled)
        else:
            if not BARE_TERM_RE.fullmatch(bare):
                raise _bad_pattern(pattern, f"Invalid character(s) in term '{bare}'. Put a term that has characters "
                                            f"other than letters and digits in double quotes: \"{bare}\".")
            word = re.compile(f"(?<![{WORD_CHARS}]){re.escape(bare)}(?![{WORD_CHARS}])")
            test = (lambda rx: lambda msg: rx.search(msg) is not None)(word)
        {"": required, "?": optional, "-": excluded}[sign].append(test)

    def matches(msg: str) -> bool:
        return (all(t(msg) for t in required) and not any(t(msg) for t in excluded)
                and (not optional or any(t(msg) for t in optional)))

    return matches


_MISSING = object()


class _JsonPatternParser:
    """Recursive descent over ``or := and ('||' and)*``, ``and := unit ('&&' unit)*``, ``unit := ( or ) | test``."""

    TOKEN_RE = re.compile(r'\s*(?:(\$(?:\.[A-Za-z0-9_\-@]+|\[\d+\])*)|(&&|\|\||!=|<=|>=|=|<|>|\(|\))|'
                          r'"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_.*:/@+\-]+))')

    def __init__(self, pattern: str, body: str):
        self.pattern = pattern
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(body):
            if body[pos:].strip() == "":
                break
            m = self.TOKEN_RE.match(body, pos)
            if not m:
                raise _bad_pattern(pattern, f"cannot read the JSON pattern from {body[pos:].strip()!r}.")
            pos = m.end()
            selector, op, quoted, word = m.groups()
            if selector is not None:
                self.tokens.append(("sel", selector))
            elif op is not None:
                self.tokens.append(("op", op))
            elif quoted is not None:
                self.tokens.append(("str", re.sub(r"\\(.)", r"\1", quoted)))
            else:
                self.tokens.append(("word", word))
        self.i = 0

    def fail(self, reason: str) -> FilterPatternError:
        return _bad_pattern(self.pattern, reason)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.fail("the JSON pattern ends too early.")
        self.i += 1
        return tok

    def parse(self) -> Callable[[str], bool]:
        if not self.tokens:
            raise self.fail("the JSON pattern is empty: write a condition such as { $.status = \"Failure\" }.")
        test = self.parse_or()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r}.")

        def matches(msg: str) -> bool:
            try:
                doc = json.loads(msg)
            except ValueError:
                return False
            return isinstance(doc, (dict, list)) and test(doc)

        return matches

    def parse_or(self):
        parts = [self.parse_and()]
        while self.peek() == ("op", "||"):
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else (lambda doc: any(p(doc) for p in parts))

    def parse_and(self):
        parts = [self.parse_unit()]
        while self.peek() == ("op", "&&"):
            self.take()
            parts.append(self.parse_unit())
        return parts[0] if len(parts) == 1 else (lambda doc: all(p(doc) for p in parts))

    def parse_unit(self):
        kind, value = self.take()
        if (kind, value) == ("op", "("):
            inner = self.parse_or()
            if self.take() != ("op", ")"):
                raise self.fail("a '(' has no matching ')'.")
            return inner
        if kind != "sel":
            raise self.fail(f"expected a property selector such as $.eventType, not {value!r}.")
        path = re.findall(r"\.([^.\[]+)|\[(\d+)\]", value[1:])
        steps = [name if name else int(index) for name, index in path]
        return self.parse_test(value, steps)

    def parse_test(self, selector: str, steps: list):
        kind, word = self.take()
        if kind == "word" and word in ("IS", "NOT"):
            _, what = self.take()
            if word == "IS" and what in ("TRUE", "FALSE"):
                want = what == "TRUE"
                return lambda doc: _select(doc, steps) is want
            if word == "IS" and what == "NULL":
                return lambda doc: _select(doc, steps) is None
            if word == "NOT" and what == "EXISTS":
                return lambda doc: _select(doc, steps) is _MISSING
            raise self.fail(f"after {selector} {word} expected TRUE, FALSE, NULL or EXISTS, not {what!r}.")
        if kind != "op" or word not in ("=", "!=", "<", ">", "<=", ">="):
            raise self.fail(f"after {selector} expected one of = != < > <= >=, IS or NOT EXISTS, not {word!r}.")
        op = word
        vkind, literal = self.take()
        number = _number(literal) if vkind == "word" else None
        if number is not None:
            compare = {"=": lambda a: a == number, "!=": lambda a: a != number, "<": lambda a: a < number,
                       ">": lambda a: a > number, "<=": lambda a: a <= number, ">=": lambda a: a >= number}[op]

            def numeric(doc) -> bool:
                v = _select(doc, steps)
                return isinstance(v, (int, float)) and not isinstance(v, bool) and compare(v)

            return numeric
        if vkind not in ("str", "word"):
            raise self.fail(f"after {selector} {op} expected a value, not {literal!r}.")
        if op not in ("=", "!="):
            raise self.fail(f"{selector} {op} {literal!r} compares a string; only = and != work on strings "
                            "(< > <= >= need a number).")
        if vkind == "word" and literal in ("true", "false", "null"):
            raise self.fail(f"use IS {literal.upper()} rather than {op} {literal} to test JSON {literal}.")
        glob = re.compile(fnmatch.translate(literal.replace("[", "[[]").replace("?", "[?]")), re.S)
        want = op == "="

        def string(doc) -> bool:
            v = _select(doc, steps)
            return isinstance(v, str) and (glob.match(v) is not None) == want

        return string


def _select(doc: Any, steps: list) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                return _MISSING
            doc = doc[step]
        else:
            if not isinstance(doc, dict) or step not in doc:
                return _MISSING
            doc = doc[step]
    return doc


def _number(text: str) -> float | None:
    if not re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None
