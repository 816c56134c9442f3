"""Model sources at a URL or in a git repository: fetched, content-addressed, cached.

Two kinds of remote source, one result (:class:`FetchedSource`: the unpacked
source root, what identifies its content, and where it came from):

* **URLs** — ``https://`` (``http://`` only for 127.0.0.1/localhost, see
  below), ``s3://bucket/key`` and ``file:///path``, read through fsspec, point
  at a ``.tar.gz``, ``.tar`` or ``.zip``. The bytes are read with a size cap
  (refused past it, before unpacking), hashed with SHA-256 and unpacked once
  with :func:`~ancho.sources.extract.extract` into ``CACHE/trees/<sha256>``
  (the same layout as uploads, so the same bytes are one tree whichever way
  they arrived). Identical bytes are never unpacked twice. For https and s3 a
  small index (``CACHE/urls/``) remembers each URL's validators (ETag,
  Last-Modified, S3 version): a second fetch asks the origin whether the
  object changed (a conditional GET, ``304 Not Modified``; an S3
  HeadObject) and downloads the bytes again only when it did. ``file://``
  is always re-read and re-hashed (it is local), never re-unpacked.
* **git** — the git CLI (no shell) fetches one ref (tag, branch, commit SHA,
  or the default branch) at depth 1 into a throw-away bare repository; a
  server that refuses a fetch by commit id gets a full fetch instead. The
  resolved commit is recorded and the tree is exported with ``git archive``
  and unpacked with the same safe ``extract()`` into ``CACHE/git/<commit>``
  (no ``.git`` folder: a commit id names exactly these files). A branch or tag
  is resolved with ``git ls-remote`` first, so an unchanged ref costs one
  round trip and no download. Dangerous transports (``ext::``, ``fd::``…)
  are refused twice: by the URL check here and by ``GIT_ALLOW_PROTOCOL``;
  git never prompts for credentials (``GIT_TERMINAL_PROMPT=0``, askpass
  cleared); submodules are not fetched; every git command has a timeout, and
  a fetch whose data outgrow the size cap is stopped.

Policy (:class:`FetchPolicy`): plain ``http://`` is accepted only for a
loopback host (127.0.0.0/8, ::1, localhost) so tests and local mirrors work
without certificates; anything else must be https (a private CA is trusted
through ``SSL_CERT_FILE``/``SSL_CERT_DIR``, read at each fetch). Redirects
are followed by hand, at most 5, and each target must pass the same check
(no https→http downgrade). ``file://`` can be limited to some folders
(a server should: ``FetchPolicy.for_server``). With ``private_hosts`` off (a
server's default, setting ``source_private_hosts``) https/http/git hosts must
be public addresses: an IP literal is checked at once, a name after DNS
resolution — for URLs in aiohttp's connection layer (the addresses checked
are the ones connected to), for git before every git command, pinned with
``http.curloptResolve`` and no redirects — and every redirect hop again, so a
user cannot reach the server's own network (loopback, private, link-local…).
Errors never repeat what the other side sent (no body, headers or reason
phrase; an HTTP status is fine). A server takes git:// only with
``source_git_protocol`` and ``s3://`` only from the buckets named in
``source_s3_buckets`` (none: refused). ``s3://`` uses the standard
AWS configuration (botocore): ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``AWS_PROFILE`` and ``~/.aws/config``, ``AWS_MAX_ATTEMPTS``…; without any
credentials it reads public buckets anonymously.

The cache folder (``$ANCHO_HOME/sources``, shared with uploads) holds
``trees/<sha256>`` (unpacked archives), ``git/<commit>`` (exported commits),
``urls/`` (validators per URL), ``git-remotes/`` (which commits were fetched
from which repository URL: a pinned commit is served from the cache without
network only for a URL it was fetched from before, so naming a commit id
never reveals a tree fetched from some other repository) and ``tmp/``
(staging; trees appear by an atomic rename, whole or not at all).

Code: shared parts in :mod:`.remote`, URLs in :mod:`.url`, git in
:mod:`.git`; this module is the entry point (:func:`fetch_source`, and the
command-line form :func:`parse_source_arg` / :func:`resolve_source_arg`).

Errors are :class:`FetchError` subclasses of :class:`ancho.errors.InputError`
whose one-line message names the URL (without credentials) and, for git, the
ref and git's last stderr line.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError
from .git import fetch_git
from .remote import (
    DEFAULT_POLICY,
    FetchedSource,
    FetchError,
    FetchPolicy,
    NotAnArchive,
    SourceAccessDenied,
    SourceNotFound,
    SourceTooLarge,
    SourceUnreachable,
    UnsafeArchive,
    UnsupportedSource,
    redact_url,
)
from .url import fetch_url

__all__ = [
    "DEFAULT_POLICY",
    "FetchError",
    "UnsupportedSource",
    "SourceNotFound",
    "SourceTooLarge",
    "NotAnArchive",
    "UnsafeArchive",
    "SourceUnreachable",
    "SourceAccessDenied",
    "FetchPolicy",
    "FetchedSource",
    "fetch_url",
    "fetch_git",
    "fetch_source",
    "parse_source_arg",
    "resolve_source_arg",
    "redact_url",
]


# -- one entry point for a run's model source ---------------------------------


def fetch_source(spec: dict, cache_dir: Path | str, *, policy: FetchPolicy | None = None) -> FetchedSource:
    """Fetch a run's ``model`` source: ``{"url": …}`` or ``{"git": …, "ref": …}`` (``entry`` is ignored here).

    A :class:`FetchError` from here carries ``field`` ("url", "git" or "ref"):
    the part of the run spec to blame (for a 4xx body's ``loc``).
    """
    if not isinstance(spec, dict):
        raise InputError('model: give {"url": …} or {"git": …, "ref": …}')
    given = {k: v for k, v in spec.items() if v is not None and k != "entry"}
    unknown = set(given) - {"url", "git", "ref"}
    if "upload" in unknown:
        raise InputError("model.upload: uploaded models are not fetched; look them up in the uploads")
    if unknown:
        raise InputError(f"model: unknown field(s) {', '.join(sorted(unknown))}; use url, or git with ref")
    if "url" in given and "git" in given:
        raise InputError("model: give url or git, not both")
    if "ref" in given and "git" not in given:
        raise InputError("model.ref goes with model.git")
    if "url" not in given and "git" not in given:
        raise InputError("model: give url or git")
    try:
        if "url" in given:
            return fetch_url(given["url"], cache_dir, policy=policy)
        return fetch_git(given["git"], given.get("ref"), cache_dir, policy=policy)
    except FetchError as exc:
        if exc.field is None:
            exc.field = "url" if "url" in given else "git"
        raise


# -- the command-line form ------------------------------------------------------

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PYFILE = re.compile(r"^[^:?#@]*[^/:?#@]\.py$")


def _is_class(text: str) -> bool:
    return text.isidentifier()


def _split_entry(path: str) -> tuple[str, str | None]:
    """Split ``…:file.py:Class`` / ``…:file.py`` / ``…:Class`` off the end of a URL's path."""
    parts = path.split(":")
    tail: list[str] = []
    while len(parts) > 1 and len(tail) < 2:
        last = parts[-1]
        if not tail:
            ok = _is_class(last) or bool(_PYFILE.match(last))
        else:
            ok = bool(_PYFILE.match(last)) and _is_class(tail[0])
        if not ok:
            break
        tail.insert(0, parts.pop())
    return ":".join(parts), (":".join(tail) or None)


def parse_source_arg(text: str) -> tuple[dict, str | None] | None:
    """Read a model argument of ``ancho run``/``ancho submit``.

    ``git+https://host/repo.git@v1:model.py:Model`` →
    ``({"git": "https://host/repo.git", "ref": "v1"}, "model.py:Model")``;
    ``https://host/m.tar.gz:model.py:Class``, ``s3://bucket/key.tar.gz``,
    ``file:///data/m.zip:Class`` → ``({"url": …}, entry or None)``.
    Anything without ``scheme://`` (a local file or folder) → None.

    The entry is the trailing ``:file.py``, ``:Class`` or ``:file.py:Class``
    after the URL's path (colons in the scheme, a port or user:password are
    never taken for it). For git, ``@REF`` is the last ``@`` in the path
    (git ref names cannot contain ``:``).
    """
    s = text.strip()
    is_git = s.lower().startswith("git+")
    if is_git:
        s = s[4:]
    m = _SCHEME.match(s)
    if not m:
        if is_git:
            raise UnsupportedSource(f"'{redact_url(text)}': write git+https://host/repo.git@REF[:file.py][:Class]")
        return None
    scheme = m.group(1).lower()
    rest = s[m.end() :]
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    path, entry = _split_entry(path)
    if is_git:
        ref = None
        at = path.rfind("@")
        if at >= 0:
            path, ref = path[:at], path[at + 1 :]
            if not ref:
                raise UnsupportedSource(
                    f"'{redact_url(text)}': nothing after '@'; write git+URL@REF (a tag, branch or commit)"
                )
        spec: dict = {"git": f"{scheme}://{authority}{path}"}
        if ref:
            spec["ref"] = ref
        return spec, entry
    if scheme not in ("https", "http", "s3", "file"):
        raise UnsupportedSource(
            f"'{redact_url(text)}': unsupported scheme '{scheme}'; use https://, s3://, file:// or git+https://…@REF"
        )
    return {"url": f"{scheme}://{authority}{path}"}, entry


def resolve_source_arg(
    text: str, cache_dir: Path | str, *, policy: FetchPolicy | None = None
) -> tuple[str, FetchedSource] | None:
    """For ``ancho run``: fetch a remote model argument; return (``ROOT[:file][:Class]`` for load_model, the fetch).

    None when ``text`` is a local path (load it as before).
    """
    parsed = parse_source_arg(text)
    if parsed is None:
        return None
    spec, entry = parsed
    fetched = fetch_source(spec, cache_dir, policy=policy)
    from .upload import entry_path

    return entry_path(fetched.root, entry), fetched
