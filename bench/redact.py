"""One redaction function for every credential form bench may meet in a URL or a connection string, applied
wherever bench writes or prints (MLflow params, tags and text artifacts, checkpoint metadata, study
attributes, stdout, error lines)."""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@host, scheme://:password@host (the password may hold ':' and '%40'; stops at '@')
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@?#]*):([^\s@/?#]+)@")
# key=value credentials in query strings, fragments and libpq-style DSNs: ?password=.., &sslpassword=..,
# "host=h password=p", ;token=.., api_key=..
_KEY_VALUE = re.compile(
    r"(?i)((?:^|[?&;#\s,(])[\w.\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
    r"credential|signature|sig)[\w.\-]*\s*=\s*)([^&;#\s,)'\"]+)"
)


def redact(text) -> str:
    """`text` with every password, token or key it carries replaced by ***; other text unchanged."""
    text = _USERINFO.sub(rf"\1:{MASK}@", str(text))
    return _KEY_VALUE.sub(rf"\1{MASK}", text)


def redact_tree(value):
    """The same for every string inside dicts and lists (configs, metadata)."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_tree(v) for v in value)
    return redact(value) if isinstance(value, str) else value
