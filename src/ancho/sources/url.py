"""Model archives at ``https://``, ``s3://`` and ``file://`` URLs (``http://`` for loopback only), through fsspec.

See :mod:`ancho.sources.fetch` for the policy and the cache. With
``policy.private_hosts`` off, an IP literal is checked here and a name in the
connection layer (:class:`_PublicResolver`, aiohttp's resolver filtered):
the addresses checked are the ones connected to, so a name cannot change
its answer between the check and the connection (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from .extract import ArchiveError, archive_kind, source_root
from .remote import (
    _CONTROL,
    DEFAULT_POLICY,
    FetchedSource,
    FetchError,
    FetchPolicy,
    NotAnArchive,
    SourceAccessDenied,
    SourceNotFound,
    SourceTooLarge,
    SourceUnreachable,
    UnsupportedSource,
    _Cache,
    _check_file_path,
    _is_loopback,
    _mib,
    _short,
    internal_address,
    is_ip_literal,
    redact_url,
    refuse_internal,
)

# -- checks ---------------------------------------------------------------------


def _check_url(url: str, policy: FetchPolicy, what: str = "model.url") -> str:
    """The scheme of an archive URL this policy accepts, or UnsupportedSource."""
    if not isinstance(url, str) or not url:
        raise UnsupportedSource(f"{what}: give a URL such as https://host/model.tar.gz")
    origin = redact_url(url)
    if _CONTROL.search(url):
        raise UnsupportedSource(f"{what} '{origin}': URLs may not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise UnsupportedSource(f"{what} '{origin}': not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise UnsupportedSource(f"{what} '{origin}': the URL has no host")
    elif scheme == "http":
        if not _is_loopback(parts.hostname) or not policy.loopback_http:
            raise UnsupportedSource(
                f"{what} '{origin}': plain http:// is not accepted (only for 127.0.0.1/localhost in testing); use https://"
            )
    elif scheme == "s3":
        _s3_location(url, origin, policy, what)
    elif scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedSource(
                f"{what} '{origin}': file:// URLs name a local path, as in file:///data/model.tar.gz"
            )
        _check_file_path(Path(unquote(parts.path)), origin, policy)
    elif scheme.startswith("git") or url.endswith(".git"):
        raise UnsupportedSource(
            f"{what} '{origin}': a git repository goes in model.git (with model.ref), or git+URL@REF on the command line"
        )
    else:
        raise UnsupportedSource(
            f"{what} '{origin}': unsupported scheme '{scheme or '(none)'}'; use https://, s3:// or file://"
        )
    host = parts.hostname or ""  # http(s) URLs have a host here: checked above
    if scheme in ("http", "https") and not policy.private_hosts and is_ip_literal(host):
        if internal_address(host):  # a name is checked as it is connected to (_PublicResolver)
            raise refuse_internal(host, origin, what, resolved=False)
    return scheme


def _s3_location(url: str, origin: str, policy: FetchPolicy, what: str = "model.url") -> tuple[str, str]:
    """(bucket, key) exactly as they will be read, the bucket checked against ``policy.s3_buckets``."""
    rest = url.split("://", 1)[1]
    if any(c in rest for c in "?#@"):
        raise UnsupportedSource(f"{what} '{origin}': write s3://BUCKET/KEY (no '?', '#' or '@')")
    bucket, _, key = rest.partition("/")
    if not bucket or not key.strip("/"):
        raise UnsupportedSource(f"{what} '{origin}': write s3://BUCKET/KEY")
    if policy.s3_buckets is not None and bucket not in policy.s3_buckets:
        if not policy.s3_buckets:
            raise UnsupportedSource(
                f"{what} '{origin}': s3:// sources are not enabled on this server (an operator names the buckets "
                "models may come from in the setting source_s3_buckets); use https:// or an upload"
            )
        raise UnsupportedSource(
            f"{what} '{origin}': bucket '{bucket}' is not one this server reads models from "
            f"(setting source_s3_buckets: {', '.join(policy.s3_buckets)})"
        )
    return bucket, key


# -- fetching URLs ------------------------------------------------------------

_MAX_REDIRECTS = 5
_BLOCK = 1 << 20
_ssl_lock = threading.Lock()
_ssl_contexts: dict[tuple, ssl.SSLContext] = {}


def _ssl_context() -> ssl.SSLContext:
    """The system trust store, honouring SSL_CERT_FILE / SSL_CERT_DIR as they are now."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _ssl_lock:
        ctx = _ssl_contexts.get(key)
        if ctx is None:
            ctx = _ssl_contexts[key] = ssl.create_default_context()
        return ctx


def _read_capped(f, limit: int, origin: str, timeout: float | None = None) -> bytes:
    """Read ``f`` to the end, refusing past ``limit`` bytes or (when given) after ``timeout`` seconds in all."""
    chunks, total = [], 0
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        block = f.read(_BLOCK)
        if not block:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise SourceUnreachable(f"{origin}: the download took longer than {timeout:g} s")
        total += len(block)
        if total > limit:
            raise SourceTooLarge(
                f"{origin}: larger than the {_mib(limit)} cap; make the archive smaller (leave out data and build outputs)"
            )
        chunks.append(block)
    return b"".join(chunks)


def fetch_url(
    url: str,
    cache_dir: Path | str,
    max_bytes: int | None = None,
    *,
    policy: FetchPolicy | None = None,
    refresh: bool = False,
) -> FetchedSource:
    """Fetch the archive at ``url`` (https, s3, file; http for loopback), unpack it once, return its tree.

    ``max_bytes`` (default: the policy's) caps the download; past it the
    fetch stops with :class:`SourceTooLarge`. ``refresh`` skips the
    validator check and downloads again (the tree is still reused when the
    bytes are identical).
    """
    policy = policy or DEFAULT_POLICY
    limit = policy.max_bytes if max_bytes is None else max_bytes
    scheme = _check_url(url, policy)
    origin = redact_url(url)
    cache = _Cache(cache_dir)
    known = None if refresh else cache.url_entry(url)
    data: bytes | None
    validators: dict
    if scheme == "file":
        data, validators = _read_file(url, origin, limit, policy), {}
    elif scheme == "s3":
        data, validators = _read_s3(url, origin, limit, policy, known)
    else:
        data, validators = _read_http(url, origin, limit, policy, known)
    if data is None:  # the origin says: unchanged
        sha = known["sha"]  # type: ignore[index]
        return FetchedSource(source_root(cache.trees / sha), sha, origin, "url", cached=True)
    sha = hashlib.sha256(data).hexdigest()
    tree = cache.trees / sha
    reused = tree.is_dir()
    if not reused:
        try:
            archive_kind(data)
        except ArchiveError:
            hint = " (for a git repository use model.git, or git+URL@REF)" if url.rstrip("/").endswith(".git") else ""
            raise NotAnArchive(f"{origin}: not a .tar.gz, .tar or .zip archive{hint}") from None
        cache.publish(data, tree, origin, policy)
    if validators:
        cache.remember_url(url, origin, sha, validators)
    return FetchedSource(source_root(tree), sha, origin, "url", cached=False)


def _read_file(url: str, origin: str, limit: int, policy: FetchPolicy) -> bytes:
    import fsspec

    path = Path(unquote(urlsplit(url).path))
    _check_file_path(path, origin, policy)
    if not path.exists():
        raise SourceNotFound(f"{origin}: no such file")
    if path.is_dir():
        raise NotAnArchive(f"{origin}: is a folder; give a .tar.gz/.zip file (or run the folder as a local path)")
    if path.stat().st_size > limit:
        raise SourceTooLarge(f"{origin}: {_mib(path.stat().st_size)} is larger than the {_mib(limit)} cap")
    fs = fsspec.filesystem("file")
    try:
        with fs.open(str(path), "rb") as f:
            return _read_capped(f, limit, origin)
    except PermissionError:
        raise SourceAccessDenied(f"{origin}: permission denied") from None
    except OSError as exc:
        raise SourceUnreachable(f"{origin}: cannot read it: {exc.strerror or exc}") from None


class InternalAddress(OSError):
    """A host name resolved to an internal address while the policy allows only public ones."""

    def __init__(self, host: str):
        self.host = host.rstrip(".")  # aiohttp may ask for the fully qualified form
        super().__init__(f"{self.host} resolves to an internal address")


def _public_resolver():
    from aiohttp.abc import AbstractResolver
    from aiohttp.resolver import ThreadedResolver

    class _PublicResolver(AbstractResolver):
        """aiohttp's resolver, refusing a name with any internal address: the connector uses only what passed."""

        def __init__(self):
            self._inner = ThreadedResolver()

        async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
            hosts = await self._inner.resolve(host, port, family)
            if not hosts or any(internal_address(h["host"]) for h in hosts):
                raise InternalAddress(host)
            return hosts

        async def close(self) -> None:
            await self._inner.close()

    return _PublicResolver()


async def _client(private_hosts: bool = True, **kwargs):
    """fsspec's ``get_client``: an aiohttp session whose connector resolves through _PublicResolver when asked."""
    import aiohttp

    if not private_hosts:
        kwargs["connector"] = aiohttp.TCPConnector(resolver=_public_resolver())
    return aiohttp.ClientSession(**kwargs)


def _http_fs(scheme: str, policy: FetchPolicy):
    import aiohttp
    import fsspec

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(policy.timeout, 30.0), sock_read=policy.timeout)
    # trust_env: proxies from the environment and ~/.netrc; a server (isolated) uses neither
    return fsspec.filesystem(
        scheme,
        get_client=_client,
        client_kwargs={
            "timeout": timeout,
            "trust_env": not policy.isolated,
            "private_hosts": policy.private_hosts,
        },
    )


def _read_http(url: str, origin: str, limit: int, policy: FetchPolicy, known: dict | None) -> tuple[bytes | None, dict]:

    import aiohttp

    headers = {"Accept-Encoding": "identity"}
    old = (known or {}).get("validators") or {}
    if old.get("etag"):
        headers["If-None-Match"] = old["etag"]
    elif old.get("last_modified"):
        headers["If-Modified-Since"] = old["last_modified"]
    current = url
    for _ in range(_MAX_REDIRECTS + 1):
        scheme = urlsplit(current).scheme.lower()
        fs = _http_fs(scheme, policy)
        try:
            # block_size=0: one streaming GET; size given so fsspec sends no HEAD first
            f = fs.open(current, "rb", block_size=0, size=1, headers=headers, allow_redirects=False, ssl=_ssl_context())
        except FileNotFoundError:
            raise SourceNotFound(f"{origin}: not found (HTTP 404); check the URL") from None
        except aiohttp.ClientResponseError as exc:
            raise _http_status_error(origin, exc.status) from None  # not exc.message: the other side's words
        except aiohttp.ClientSSLError as exc:
            raise SourceUnreachable(
                f"{origin}: TLS failed ({_tls_reason(exc)}); if the server uses a private CA, set SSL_CERT_FILE"
            ) from None
        except TimeoutError:
            raise SourceUnreachable(f"{origin}: no answer within {policy.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            found = exc if isinstance(exc, InternalAddress) else getattr(exc, "os_error", None)
            if isinstance(found, InternalAddress):
                raise _at_hop(
                    refuse_internal(found.host, redact_url(current), "model.url", resolved=True), origin, current, url
                ) from None
            raise SourceUnreachable(f"{origin}: cannot connect: {_connect_reason(exc)}") from None
        except Exception as exc:  # fsspec wraps some timeouts in its own exception types
            if "Timeout" in type(exc).__name__:
                raise SourceUnreachable(f"{origin}: timed out after {policy.timeout:g} s") from None
            raise
        resp = getattr(f, "r", None)  # the aiohttp response of fsspec's streaming file
        status = getattr(resp, "status", 200)
        rheaders = getattr(resp, "headers", {}) or {}
        if status in (301, 302, 303, 307, 308):
            location = rheaders.get("Location")
            f.close()
            if not location:
                raise SourceUnreachable(f"{origin}: HTTP {status} redirect without a Location")
            current = urljoin(current, location)
            if urlsplit(current).scheme.lower() not in ("http", "https"):
                raise UnsupportedSource(
                    f"{origin}: redirected to a URL that is not accepted: only http(s) redirects are followed"
                )
            try:
                _check_url(current, policy)
            except UnsupportedSource as exc:
                raise _at_hop(exc, origin, current, url) from None
            continue
        if status == 304 and known:
            f.close()
            return None, old
        if status != 200:
            f.close()
            raise _http_status_error(origin, status)
        length = rheaders.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            f.close()
            raise SourceTooLarge(f"{origin}: {_mib(int(length))} is larger than the {_mib(limit)} cap")
        try:
            data = _read_capped(f, limit, origin, policy.timeout)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SourceUnreachable(f"{origin}: the download broke off: {_short(exc)}") from None
        finally:
            f.close()
        validators = {}
        if resp is not None:  # only then can a later 304 be recognised
            if rheaders.get("ETag"):
                validators["etag"] = rheaders["ETag"]
            if rheaders.get("Last-Modified"):
                validators["last_modified"] = rheaders["Last-Modified"]
        return data, validators
    raise SourceUnreachable(f"{origin}: more than {_MAX_REDIRECTS} redirects")


def _at_hop(exc: UnsupportedSource, origin: str, current: str, url: str) -> UnsupportedSource:
    """``exc`` as said of the URL asked for, when it was about a later hop of its redirects."""
    if current == url:
        return exc
    return UnsupportedSource(f"{origin}: redirected to a URL that is not accepted: {exc}")


def _tls_reason(exc: BaseException) -> str:
    """Why TLS failed, in this side's words (the certificate check), never the other side's."""
    verify = getattr(getattr(exc, "certificate_error", None), "verify_message", None)
    return f"certificate verify failed: {verify}" if verify else "the TLS handshake failed"


def _http_status_error(origin: str, status: int) -> FetchError:
    text = f"HTTP {status}"
    if status in (404, 410):
        return SourceNotFound(f"{origin}: not found ({text}); check the URL")
    if status in (401, 403):
        return SourceAccessDenied(f"{origin}: access denied ({text}); the URL needs credentials or a signed link")
    return SourceUnreachable(f"{origin}: the server answered {text}")


def _connect_reason(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror
    return re.sub(r" ssl:\S+( \S+ at 0x[0-9a-f]+>)?", "", _short(exc))


_s3_lock = threading.Lock()
_s3_filesystems: dict[tuple, object] = {}


def _s3_fs(policy: FetchPolicy, anon: bool):
    """An S3 filesystem for the AWS configuration in the environment now (one per distinct configuration)."""
    import s3fs

    aws = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (anon, policy.timeout, aws)
    with _s3_lock:
        fs = _s3_filesystems.get(key)
        if fs is None:
            # skip_instance_cache: fsspec's own cache does not know the environment changed
            fs = s3fs.S3FileSystem(
                anon=anon,
                skip_instance_cache=True,
                use_listings_cache=False,
                config_kwargs={"connect_timeout": min(policy.timeout, 30.0), "read_timeout": policy.timeout},
            )
            if len(_s3_filesystems) > 16:
                _s3_filesystems.clear()
            _s3_filesystems[key] = fs
        return fs


def _read_s3(url: str, origin: str, limit: int, policy: FetchPolicy, known: dict | None) -> tuple[bytes | None, dict]:
    from botocore.exceptions import BotoCoreError, NoCredentialsError

    bucket, key = _s3_location(url, origin, policy)
    path = f"{bucket}/{key}"
    anon = False
    for _attempt in range(2):
        fs = _s3_fs(policy, anon)
        try:
            info = fs.info(path)
            validators = {"etag": info.get("ETag"), "version": info.get("VersionId")}
            old = (known or {}).get("validators") or {}
            if known and validators["etag"] and old == validators:
                return None, old
            size = info.get("size") or 0
            if size > limit:
                raise SourceTooLarge(f"{origin}: {_mib(size)} is larger than the {_mib(limit)} cap")
            if info.get("type") == "directory":
                raise NotAnArchive(f"{origin}: is a prefix (folder), not an object; give the key of a .tar.gz/.zip")
            with fs.open(path, "rb", block_size=8 * _BLOCK, cache_type="none") as f:
                return _read_capped(f, limit, origin, policy.timeout), validators
        except NoCredentialsError:
            if anon:
                raise
            anon = True  # no credentials configured: try as an anonymous reader (public buckets)
            continue
        except FileNotFoundError:
            raise SourceNotFound(f"{origin}: no such bucket or key") from None
        except PermissionError:
            hint = " (read anonymously: no AWS credentials are configured)" if anon else ""
            raise SourceAccessDenied(
                f"{origin}: access denied{hint}; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            ) from None
        except BotoCoreError as exc:
            raise SourceUnreachable(
                f"{origin}: {_short(exc)}; set AWS_ENDPOINT_URL_S3 for an S3-compatible server"
            ) from None
        except OSError as exc:
            raise SourceUnreachable(f"{origin}: {_short(exc)}") from None
    raise SourceAccessDenied(f"{origin}: no AWS credentials found")  # pragma: no cover
