"""One redaction function for every credential form bench may meet in a URL or a connection string, applied
wherever bench writes or prints (MLflow params, tags and text artifacts, checkpoint metadata, study
attributes, stdout, error lines)."""

from __future__ import annotations

import re

MASK = "***"
_SCHEME = r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://"
# scheme://user:password@host. The password runs from the first ':' after the user name to the '@' that
# starts the host, and may hold unencoded '/', '?', '#', ':' and '@' (urllib reads up to the last '@') or
# spaces (SQLAlchemy reads up to the first): without spaces, up to the last '@' before the next space; with
# them, up to the first '@' that a host follows. Mask all of it.
_HOST_FOLLOWS = r"(?=[^@\s/?#]*(?:[\s/?#]|$))"
_PASSWORD = re.compile(rf"({_SCHEME}[^\s:/@?#]*):(?:\S*@{_HOST_FOLLOWS}|.*?@{_HOST_FOLLOWS})")
# scheme://userinfo@host without a colon: the user part may itself be the credential (a token): mask it.
_USER_ONLY = re.compile(rf"({_SCHEME})[^\s:/@?#]+@")
# key=value credentials in query strings, fragments and libpq-style DSNs: ?password=.., &sslpassword=..,
# "host=h password=p", "password='p w'", ;token=.., api_key=..; a quoted value is masked whole.
_KEY_VALUE = re.compile(
    r"(?i)((?:^|[?&;#\s,(])[\w.\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
    r"credential|signature|sig)[\w.\-]*\s*=\s*)('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^&;#\s,)'\"]+)"
)


def redact(text) -> str:
    """`text` with every password, token or key it carries replaced by ***; other text unchanged."""
    text = _PASSWORD.sub(rf"\1:{MASK}@", str(text))
    text = _USER_ONLY.sub(rf"\1{MASK}@", text)
    return _KEY_VALUE.sub(rf"\1{MASK}", text)


def redact_tree(value):
    """The same for every string inside dicts and lists (configs, metadata)."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_tree(v) for v in value)
    return redact(value) if isinstance(value, str) else value
