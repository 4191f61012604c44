"""The one rule for secrets and outside text: what is shown or written never carries a key, and
text from a provider never drives the terminal.

A secret is the value (4 characters or more) of an environment variable whose name ends in KEY,
TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL(S) or AUTH, plus any a caller names (a provider's
key). It is masked in every form a provider or a library may echo it back in: raw, base64 (of
the key alone, of "Bearer KEY" / "Key KEY" / the whole header, at any alignment inside a longer
base64 text), URL-encoded, JSON-escaped and hex.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET = 4
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|AUTH)$", re.IGNORECASE)
# the words an Authorization-style header puts before a key
_SCHEMES = ("Bearer ", "Key ", "Token ", "Basic ", "Authorization: Bearer ", "Authorization: Key ")


def env_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of the secret-named variables of `environ` (default: this process's)."""
    env = os.environ if environ is None else environ
    found: list[str] = []
    for name, value in env.items():
        if SECRET_NAME.search(name):
            found.extend(v for v in {value, value.strip()} if len(v) >= MIN_SECRET)
    return tuple(found)


def redact(
    text: str, secrets: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> str:
    """`text` with every secret (named, or from the environment) masked in all its forms."""
    every = {s for s in (*secrets, *env_secrets(environ)) if s and len(s) >= MIN_SECRET}
    if not every:
        return text
    # longest first: a form containing another is masked whole, not left half-readable
    for form in sorted({f for s in every for f in _forms(s)}, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return text


@functools.lru_cache(maxsize=256)
def _forms(secret: str) -> frozenset[str]:
    forms = {secret}
    forms |= {quote(secret, safe=""), quote(secret), quote_plus(secret)}
    forms |= {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    raw = secret.encode("utf-8", "surrogatepass")
    forms |= {raw.hex(), raw.hex().upper()}
    for value in (raw, *(scheme.encode() + raw for scheme in _SCHEMES)):
        forms.update(_base64_forms(value))
    return frozenset(f for f in forms if len(f) >= MIN_SECRET)


def _base64_forms(data: bytes) -> set[str]:
    """Base64 of `data` alone, and the part of it that is the same wherever `data` sits in a
    longer text (three alignments), in the standard and URL-safe alphabets."""
    out: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + data).decode("ascii")
        if offset == 0:
            out.update((encoded, encoded.rstrip("=")))
        # characters that depend only on `data`: skip a first group shared with what precedes,
        # and a last group shared with what follows
        start = 4 if offset else 0
        end = (offset + len(data)) // 3 * 4
        core = encoded[start:end]
        if len(core) >= 8:
            out.add(core)
    out.update({f.replace("+", "-").replace("/", "_") for f in out})
    return out


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` with every control or format character (ESC, CR, BEL, bidi overrides...) shown
    as an escape: text from outside (a provider's message, a job id) can then not retitle,
    clear or rewrite the terminal. `newlines` keeps line breaks for multi-line output."""
    if text.isprintable():
        return text
    return "".join(_escape(ch) if _hidden(ch, newlines) else ch for ch in text)


def _hidden(ch: str, newlines: bool) -> bool:
    if ch == "\n" and newlines:
        return False
    return not ch.isprintable() and ch != " "


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: str, secrets: Iterable[str] = (), *, newlines: bool = False) -> str:
    """Text ready to show a user: secrets masked, control characters escaped."""
    return printable(redact(text, secrets), newlines=newlines)


def key_problem(value: str) -> str | None:
    """Why an API key cannot go in an HTTP header, or None (the key itself is never named)."""
    if any(ord(ch) > 126 for ch in value):
        return "holds a non-ASCII character"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "holds a control character (a newline, a tab or similar)"
    return None
