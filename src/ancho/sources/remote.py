"""What URL and git fetching share: errors, the policy, the result, URL checks, and the cache.

See :mod:`ancho.sources.fetch` for the whole picture.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import InputError
from .extract import MAX_FILES, MAX_TOTAL_BYTES, ArchiveError, extract, keyed_lock

# -- errors -------------------------------------------------------------------


class FetchError(InputError):
    """A model source could not be fetched; the message names the source and says what to do."""

    #: the run spec field to blame: "url", "git" or "ref" (fetch_source fills it in when the raiser did not)
    field: str | None = None


class UnsupportedSource(FetchError):
    """The URL's scheme or form is not one Ancho fetches (or this policy forbids it)."""


class SourceNotFound(FetchError):
    """Nothing at that URL (HTTP 404, S3 NoSuchKey/NoSuchBucket, no such file, repository or ref)."""


class SourceTooLarge(FetchError):
    """The source is larger than the cap (download size, unpacked size or number of files)."""


class NotAnArchive(FetchError, ArchiveError):
    """The bytes at the URL are not a .tar.gz, .tar or .zip archive."""


class UnsafeArchive(FetchError, ArchiveError):
    """The archive holds a member Ancho refuses to unpack (absolute path, ``..``, outside link, device)."""


class SourceUnreachable(FetchError):
    """The host could not be reached, timed out, or answered with a server error."""


class SourceAccessDenied(FetchError):
    """The origin refused access (HTTP 401/403, S3 AccessDenied, git authentication)."""


# -- policy and result --------------------------------------------------------

_ALL_GIT_PROTOCOLS = ("https", "http", "git", "file", "ssh")


@dataclass(frozen=True)
class FetchPolicy:
    """What may be fetched, and how much.

    The default suits the CLI (a user fetching for themselves): any
    ``file://`` path, the user's own git configuration and credentials.
    A server should use :meth:`for_server`.
    """

    #: cap on the downloaded bytes and on the unpacked size
    max_bytes: int = MAX_TOTAL_BYTES
    #: cap on the number of files in the unpacked source
    max_files: int = MAX_FILES
    #: seconds: a whole git command; a whole HTTP/S3 download, and any connection attempt or stall in it
    timeout: float = 300.0
    #: folders ``file://`` (and local git repositories) may be read from; None: anywhere; empty: refused
    file_roots: tuple[str, ...] | None = None
    #: accept plain ``http://`` for 127.0.0.1 / ::1 / localhost (tests, local mirrors)
    loopback_http: bool = True
    #: git transports allowed (GIT_ALLOW_PROTOCOL); ``ext``/``fd`` are never allowed
    git_protocols: tuple[str, ...] = _ALL_GIT_PROTOCOLS
    #: ignore the caller's git/HTTP configuration, ~/.netrc and credential helpers (a server)
    isolated: bool = False
    #: buckets ``s3://`` may read (with this process's AWS credentials); None: any; empty: s3 refused
    s3_buckets: tuple[str, ...] | None = None
    #: let https/http/git hosts be loopback, private, link-local or otherwise not global addresses;
    #: False (a server): checked after DNS resolution, at connect time and after every redirect
    private_hosts: bool = True

    @classmethod
    def for_server(
        cls,
        file_roots: tuple[str | Path, ...] = (),
        loopback_http: bool = False,
        *,
        private_hosts: bool = False,
        git_protocol: bool = False,
        s3_buckets: tuple[str, ...] = (),
        **kwargs,
    ) -> FetchPolicy:
        """A policy for fetching on behalf of remote users.

        ``file://`` only under ``file_roots`` (none by default), no plain http
        unless ``loopback_http``, only public hosts unless ``private_hosts``
        (a user must not reach the server's own network through it), git
        over https (git:// only with ``git_protocol``: it is unauthenticated;
        file and http when those are enabled; never ssh, which would use the
        operator's keys), and nothing from the operator's git config, ~/.netrc
        or credential helpers. ``s3://`` reads with the server's own AWS
        credentials, so only the buckets in ``s3_buckets`` (none: refused).
        """
        roots = tuple(str(Path(r).expanduser().resolve()) for r in file_roots)
        protocols = (
            ("https",)
            + (("git",) if git_protocol else ())
            + (("file",) if roots else ())
            + (("http",) if loopback_http else ())
        )
        return cls(
            file_roots=roots,
            loopback_http=loopback_http,
            git_protocols=protocols,
            isolated=True,
            private_hosts=private_hosts,
            s3_buckets=tuple(s3_buckets),
            **kwargs,
        )


DEFAULT_POLICY = FetchPolicy()


@dataclass(frozen=True)
class FetchedSource:
    """An unpacked remote source."""

    #: folder to load the model from (for archives with one top folder, that folder)
    root: Path
    #: SHA-256 of the archive bytes (url) or the commit id (git): what exactly was fetched
    sha: str
    #: the URL as the user gave it, without credentials
    origin: str
    #: "url" or "git"
    kind: str
    #: git: the ref asked for (None: the default branch)
    ref: str | None = None
    #: git: the commit the ref resolved to (also in ``sha``)
    commit: str | None = None
    #: True when no bytes were downloaded (the cache answered, after checking with the origin)
    cached: bool = field(default=False, compare=False)

    @property
    def record(self) -> str:
        """How a run records its source: ``url:ORIGIN#sha256=HEX`` or ``git:ORIGIN@COMMIT``."""
        if self.kind == "git":
            return f"git:{self.origin}@{self.commit}"
        return f"url:{self.origin}#sha256={self.sha}"

    def as_dict(self) -> dict:
        out: dict[str, str | None] = {
            "kind": self.kind,
            "origin": self.origin,
            "sha": self.sha,
            "root": str(self.root),
            "record": self.record,
        }
        if self.kind == "git":
            out.update(ref=self.ref, commit=self.commit)
        return out


# -- URLs: checks and redaction -----------------------------------------------

_SENSITIVE_QUERY = re.compile(r"(sig|signature|token|credential|secret|password|passwd|key|auth)", re.I)
_TRANSPORT_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]+:(?!//)")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def redact_url(url: str) -> str:
    """``url`` without user:password, with credential-like query values replaced, without fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or "://" not in url:
        return url  # a path or scp-like git address: nothing secret in it
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "REDACTED" if _SENSITIVE_QUERY.search(k) else v) for k, v in pairs], safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- internal hosts -----------------------------------------------------------

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_PRIVATE_HOSTS_HINT = (
    "this server fetches models only from public addresses (an operator can allow internal ones: setting "
    "source_private_hosts)"
)


def internal_address(address: str) -> bool:
    """True unless ``address`` is a public (global) unicast IP: loopback, private, link-local, CGNAT, ULA, multicast…

    IPv6 forms that carry an IPv4 address (mapped, compatible, 6to4, NAT64,
    Teredo) are judged by that address too. Anything unparsable counts as
    internal: only provably public addresses are reachable.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return True
    if not ip.is_global or ip.is_multicast:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        inner = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if int(ip) < 2**32 or ip in _NAT64:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return any(v is not None and internal_address(str(v)) for v in inner)
    return False


def refuse_internal(host: str, origin: str, what: str, *, resolved: bool) -> UnsupportedSource:
    """The error for a host that is (or resolves to) an internal address; never says which address."""
    how = "resolves to an internal address" if resolved else "is an internal address"
    return UnsupportedSource(
        f"{what} '{origin}': host '{host}' {how} (loopback, private or link-local); {_PRIVATE_HOSTS_HINT}"
    )


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%")[0])
        return True
    except ValueError:
        return False


def public_addresses(host: str, port: int, origin: str, what: str) -> list[str]:
    """Every address ``host`` resolves to, all of them public; else UnsupportedSource (or SourceUnreachable).

    A name with one internal address among public ones is refused: which one a
    client would use is not ours to choose.
    """
    if is_ip_literal(host):
        if internal_address(host):
            raise refuse_internal(host, origin, what, resolved=False)
        return [host.strip("[]")]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise SourceUnreachable(f"{what} '{origin}': cannot resolve host '{host}'") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))  # an IP family: the address is a str
    if not addresses or any(internal_address(a) for a in addresses):
        raise refuse_internal(host, origin, what, resolved=True)
    return addresses


def _check_file_path(path: Path, origin: str, policy: FetchPolicy) -> Path:
    if not path.is_absolute():
        raise UnsupportedSource(f"{origin}: a file:// URL needs an absolute path, as in file:///data/model.tar.gz")
    if policy.file_roots is None:
        return path
    real = path.resolve()
    for root in policy.file_roots:
        if real.is_relative_to(root):
            return path
    if not policy.file_roots:
        raise UnsupportedSource(f"{origin}: file:// sources are not enabled here; use https://, s3:// or an upload")
    raise UnsupportedSource(f"{origin}: file:// sources must be under {', '.join(policy.file_roots)}")


# -- the cache ----------------------------------------------------------------


class _Cache:
    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser()
        self.trees = self.root / "trees"
        self.git = self.root / "git"
        for d in (self.trees, self.git, self.root / "urls", self.root / "git-remotes", self.root / "tmp"):
            d.mkdir(parents=True, exist_ok=True)

    def staging(self) -> Path:
        self._sweep()
        path = self.root / "tmp" / uuid.uuid4().hex
        path.mkdir()
        return path

    def _sweep(self, age: float = 86400.0) -> None:
        """Remove staging folders left by fetches that were killed (older than a day)."""
        now = time.time()
        try:
            for entry in (self.root / "tmp").iterdir():
                if len(entry.name) == 32 and now - entry.stat().st_mtime > age:
                    shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    # URL index: the last validators and content hash seen for a URL
    def url_entry(self, url: str) -> dict | None:
        path = self.root / "urls" / f"{self.key(url)}.json"
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or not (self.trees / str(entry.get("sha", "-"))).is_dir():
            return None
        return entry

    def remember_url(self, url: str, origin: str, sha: str, validators: dict) -> None:
        path = self.root / "urls" / f"{self.key(url)}.json"
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps({"url": origin, "sha": sha, "validators": validators, "fetched": time.time()}))
        os.replace(tmp, path)

    # git: which commits were fetched from which remote (the fast path for a pinned commit)
    def seen(self, url: str, commit: str) -> bool:
        return (self.root / "git-remotes" / self.key(url) / commit).exists() and (self.git / commit).is_dir()

    def mark_seen(self, url: str, commit: str) -> None:
        d = self.root / "git-remotes" / self.key(url)
        d.mkdir(exist_ok=True)
        (d / commit).touch()

    def publish(self, data: bytes, dest: Path, origin: str, policy: FetchPolicy) -> None:
        """Unpack ``data`` into ``dest`` unless it exists (atomically: a tree is there whole or not at all).

        Locked per destination (one content hash): identical bytes arriving
        twice at once are unpacked once, and nothing else waits.
        """
        with keyed_lock(str(dest)):
            if not dest.is_dir():
                self._publish(data, dest, origin, policy)

    def _publish(self, data: bytes, dest: Path, origin: str, policy: FetchPolicy) -> None:
        staging = self.staging()
        try:
            try:
                extract(data, staging / "tree", policy.max_bytes, policy.max_files)
            except ArchiveError as exc:
                msg = str(exc)
                if "unpacks to more than" in msg or "members; at most" in msg:
                    raise SourceTooLarge(f"{origin}: {msg}") from None
                if "not a readable" in msg or "not a .tar.gz" in msg:
                    raise NotAnArchive(f"{origin}: {msg.replace('the upload', 'the source')}") from None
                raise UnsafeArchive(f"{origin}: {msg}") from None
            try:
                os.rename(staging / "tree", dest)
            except OSError:
                if not dest.is_dir():  # lost a race to an identical tree: fine; anything else is not
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# -- small helpers ----------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
