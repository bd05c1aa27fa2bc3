"""Strip secrets from free text before it is stored or shown (error messages, context values, sources).

Error messages often echo URLs, headers, request parameters, tokens and keys; the aggregator keeps
recent messages and the status page shows them, so anything shaped like a credential is masked
first. Two kinds of rule: a secret-looking *name* followed by its value (`password=`, `"api_key": `,
`('X-Api-Key', 'k')`, `Cookie: ...`), and *self-describing* tokens that are secret wherever they
stand (JWTs, PEM private keys, AWS access key ids, GitHub, Stripe and Slack tokens, Slack webhook
URLs), whose shapes follow the public rule sets of secret scanners (gitleaks, detect-secrets).
Why not detect-secrets itself: its scan of one line costs about 0.8 ms (docs/architecture.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

__all__ = ["MASK", "is_secret_name", "redact"]

MASK = "[REDACTED]"

# A parameter name is secret when it contains one of these words anywhere (`dbpassword`, `apiToken`,
# `client_secret`) ...
_STRONG = (
    r"password|passwd|passphrase|pwd|secret|token|credential|api[_-]?key|authori[sz]ation|cookie"
    r"|session|private[_-]?key"
)
# ... or ends with one of these (`api_key`, `accessKey`, `x-amz-sig`), which are too common inside
# ordinary words to match anywhere.
_WEAK = r"keys?|sig|signature|auth|pw|pass|sid|jwt"
_NAME = r"[A-Za-z0-9_.-]"
# Not `TokenError: expired`: exception class names are followed by a message, not a value.
_NOT_A_CLASS = r"(?<!error)(?<!exception)(?<!warning)"
_KEY = rf"(?<!{_NAME})(?:{_NAME}*(?:{_STRONG}){_NAME}*|{_NAME}*(?:{_WEAK})){_NOT_A_CLASS}"
# `=`, `:` and their URL-encoded forms, with the quotes JSON, Python reprs and escaped JSON put around.
_SEPARATOR = r"""\\?["']?\s*(?:[=:]|%3[Dd]|%3[Aa])\s*"""
# A quoted value may be a Python bytes or str literal (b'...', u"...").
_VALUE = (
    r"""(?:[bBuU]?(\\?")(?!\[REDACTED\])[^"\\\r\n]+"""  # "a quoted value, spaces and all"
    r"""|[bBuU]?(')(?!\[REDACTED\])[^'\r\n]+"""
    r"""|()(?!\[REDACTED\])(?:(?!%26|%22)[^\s&"',;}<>\\])+)"""  # up to a delimiter (or an encoded &)
)


def _mask_value(match: re.Match[str]) -> str:
    quote = match.group(2) or match.group(3) or ""
    return f"{match.group(1)}{quote}{MASK}"


_Replacement = str | Callable[[re.Match[str]], str]
# One of these in the lowercased text lets the name rules run (every _STRONG and _WEAK word has one).
_KEY_WORDS = (
    "pass",
    "pw",
    "secret",
    "token",
    "credential",
    "key",
    "sig",
    "auth",
    "cookie",
    "session",
    "sid",
    "jwt",
)

# Names of values that are secret wherever they appear, whole: masked from the separator to the end
# of the line (a header's value may hold spaces, `Bearer x`, `a=1; b=2`).
_HEADER = r"(?:proxy-)?authorization|(?:set-)?cookie"

# (words one of which the lowercased text must contain for the rule to apply, rule, replacement).
# The word check is a substring search, far cheaper than running each pattern over every message;
# one regex over all the words (`_TRIGGER`) decides first whether any rule may apply at all.
# Order matters: whole tokens first (a JWT may follow `Bearer`), then header values (they may
# contain "Bearer x"), then the narrower shapes.
_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str], _Replacement], ...] = (
    # PEM private keys, up to their END line or the end of the (maybe truncated) text, escaped
    # newlines (JSON's `\n`) and all.
    (
        ("private key",),
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r".*?(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
        MASK,
    ),
    # JSON Web Tokens: base64url of `{"` starts the header, two or three dot-separated parts.
    (("eyj",), re.compile(r"(?<![\w-])eyJ[\w-]{4,}\.[\w-]{2,}(?:\.[\w-]*)?"), MASK),
    # AWS access key ids (the secret access key travels under a secret-looking name: see below).
    (
        ("akia", "asia", "abia", "acca", "a3t"),
        re.compile(r"(?<![A-Z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"),
        MASK,
    ),
    # GitHub, Stripe, Slack and Google API tokens: their prefixes say what they are.
    (
        ("gh", "k_live_", "k_test_", "xox", "aiza"),
        re.compile(
            r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_\w{20,}|[rsp]k_(?:live|test)_[A-Za-z0-9]{8,}"
            r"|xox[abposre]-[A-Za-z0-9-]{8,}|AIza[\w-]{30,})"
        ),
        MASK,
    ),
    # Slack webhook URLs: the path is the credential.
    (
        ("hooks.slack",),
        re.compile(r"(?i)(hooks\.slack\.com/)(?:services|workflows|triggers)/[A-Za-z0-9/_+-]+"),
        r"\1" + MASK,
    ),
    # Authorization / Cookie header values, up to the end of the line or a quote.
    (
        ("authorization", "cookie"),
        re.compile(rf"(?i)\b((?:{_HEADER})\s*[:=]\s*)(?!\[REDACTED\])[^\r\n\"']+"),
        r"\1" + MASK,
    ),
    # Bearer / Basic credentials anywhere, however short.
    (
        ("bearer", "basic"),
        re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\[REDACTED\])[A-Za-z0-9._~+/=-]+"),
        r"\1\2" + MASK,
    ),
    # scheme://user:password@host, the user possibly empty (redis://:password@host).
    # The scheme starts where no scheme character precedes it (not at every `\b`: quadratic).
    (
        ("://",),
        re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,31}://[^\s:/@]*:)[^\s/?#]+@"),
        r"\1" + MASK + "@",
    ),
    # key=value, key: value, "key": "value", key%3Dvalue for secret-looking keys.
    (
        _KEY_WORDS,
        re.compile(rf"(?i)({_KEY}{_SEPARATOR}){_VALUE}"),
        _mask_value,
    ),
    # ('X-Api-Key', 'k'): a header pair as a tuple's repr (requests' and httpx's header lists).
    (
        _KEY_WORDS,
        re.compile(rf"""(?i)((["'])(?:{_KEY})\2\s*,\s*)[bBuU]?(["'])(?!\[REDACTED\]).*?\3"""),
        r"\1\3" + MASK + r"\3",
    ),
    # long hex / base64-looking strings right after a token/key word ("key abcdef0123...").
    (
        ("token", "key", "secret"),
        re.compile(r"(?i)\b((?:token|key|secret)s?\b\W{0,3})[A-Za-z0-9+/_=-]{20,}"),
        r"\1" + MASK,
    ),
)


def _by_first_letter(words: set[str]) -> str:
    """One pattern matching any of `words`, grouped by first character (`a(?:kia|sia|uth)`): the
    engine then tries one group per position instead of every word, about twice as fast."""
    heads: dict[str, list[str]] = {}
    for word in sorted(words, key=lambda word: (-len(word), word)):
        heads.setdefault(word[0], []).append(re.escape(word[1:]))
    return "|".join(f"{re.escape(head)}(?:{'|'.join(tails)})" for head, tails in sorted(heads.items()))


_TRIGGER = re.compile(_by_first_letter({word for words, _, _ in _RULES for word in words}))


_SECRET_NAME = re.compile(rf"(?i)(?:{_STRONG})|(?:{_WEAK})$")


@functools.lru_cache(maxsize=4096)  # field names repeat: the regex runs once per distinct name
def is_secret_name(name: str) -> bool:
    """Whether a field called `name` holds a secret (`password`, `dbPassword`, `api_key`, `X-Auth`)."""
    return _SECRET_NAME.search(name) is not None


def redact(text: str) -> str:
    """Return `text` with credentials replaced by `[REDACTED]`; ordinary text is left as it is."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    lowered = text.lower()
    if _TRIGGER.search(lowered) is None:  # most messages: one scan, no rule runs
        return text
    for words, pattern, replacement in _RULES:
        for word in words:  # a plain loop: cheaper than any() over a generator, or one big regex
            if word in lowered:
                text = pattern.sub(replacement, text)
                break
    return text
