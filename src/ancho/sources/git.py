"""Model sources in git repositories, through the git CLI (no shell): one ref, shallow, exported without ``.git``.

See :mod:`ancho.sources.fetch` for the policy and the cache. git resolves
host names itself, so with ``policy.private_hosts`` off the host is resolved
and checked here before every git command that uses the network; over
http(s) git is then pinned to the checked addresses (``http.curloptResolve``)
and follows no redirect, so neither a changed DNS answer nor a redirect can
lead it to an internal address. git:// cannot be pinned: it is off on a
server unless the operator enables it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .remote import (
    _ALL_GIT_PROTOCOLS,
    _CONTROL,
    _SCP_LIKE,
    _TRANSPORT_HELPER,
    DEFAULT_POLICY,
    FetchedSource,
    FetchError,
    FetchPolicy,
    SourceAccessDenied,
    SourceNotFound,
    SourceTooLarge,
    SourceUnreachable,
    UnsupportedSource,
    _Cache,
    _check_file_path,
    _is_loopback,
    _mib,
    is_ip_literal,
    public_addresses,
    redact_url,
)

# -- git ----------------------------------------------------------------------

_SHA_FULL = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_SHA_SHORT = re.compile(r"^[0-9a-f]{4,63}$")
_BAD_REF = re.compile(r"(^[-/.]|\.\.|[\x00-\x20\x7f~^:?*\[\\]|@\{|/$|\.lock$|//|\.$)")
_GIT_PRIVATE_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_COMMON_DIR",
    "GIT_ASKPASS",
    "SSH_ASKPASS",
    "GIT_EXEC_PATH",
    "GIT_TEMPLATE_DIR",
)


_DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418, "ssh": 22}


def _git_host(url: str, proto: str) -> tuple[str, int] | None:
    """(host, port) git will connect to for ``url``; None for local repositories."""
    if proto == "file":
        return None
    if "://" in url:
        parts = urlsplit(url)
        return parts.hostname or "", parts.port or _DEFAULT_PORTS.get(proto, 0)
    host = url.split(":", 1)[0].rpartition("@")[2]  # scp-like user@host:path
    return host, 22


def _git_protocol(url: str, policy: FetchPolicy) -> str:
    """Check a repository address; return its transport ("https", "ssh", "file"…)."""
    origin = redact_url(url)
    if not isinstance(url, str) or not url:
        raise UnsupportedSource("model.git: give a repository URL such as https://host/repo.git")
    if _TRANSPORT_HELPER.match(url):
        raise UnsupportedSource(
            f"model.git '{origin}': git transport helpers ('{url.split('::')[0]}::') are not allowed"
        )
    if _CONTROL.search(url) or url.startswith("-"):
        raise UnsupportedSource(f"model.git '{origin}': not a repository URL")
    if "://" in url:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018
        except ValueError as exc:
            raise UnsupportedSource(f"model.git '{origin}': not a valid URL ({exc})") from None
        proto = parts.scheme.lower()
        if proto == "http" and not (_is_loopback(parts.hostname) and policy.loopback_http):
            raise UnsupportedSource(
                f"model.git '{origin}': plain http:// is not accepted (only for 127.0.0.1/localhost in testing); use https://"
            )
        if proto == "file":
            if parts.netloc not in ("", "localhost"):
                raise UnsupportedSource(
                    f"model.git '{origin}': file:// URLs name a local path, as in file:///srv/repo.git"
                )
            _check_file_path(Path(unquote(parts.path)), origin, policy)
        elif proto not in _ALL_GIT_PROTOCOLS:
            raise UnsupportedSource(
                f"model.git '{origin}': unsupported transport '{proto}'; use https://, git:// or ssh://"
            )
        elif not parts.hostname:
            raise UnsupportedSource(f"model.git '{origin}': the URL has no host")
    elif url.startswith("/"):
        proto = "file"
        _check_file_path(Path(url), origin, policy)
    elif _SCP_LIKE.match(url):
        proto = "ssh"
    else:
        raise UnsupportedSource(f"model.git '{origin}': not a repository URL; write https://host/repo.git")
    if proto not in policy.git_protocols:
        allowed = ", ".join(f"{p}://" for p in policy.git_protocols)
        hint = " (an operator enables git:// with the setting source_git_protocol)" if proto == "git" else ""
        raise UnsupportedSource(f"model.git '{origin}': the {proto} transport is not allowed here{hint}; use {allowed}")
    return proto


def _about_ref(exc: FetchError) -> FetchError:
    """Mark an error as the ref's fault (the run spec's ``model.ref``), not the repository's."""
    exc.field = "ref"
    return exc


def _check_ref(ref: str | None, origin: str) -> str | None:
    if ref is None or ref == "":
        return None
    if not isinstance(ref, str) or len(ref) > 256 or _BAD_REF.search(ref):
        raise _about_ref(FetchError(f"model.ref '{ref}' for {origin}: not a valid tag, branch or commit name"))
    return ref


def _git_env(policy: FetchPolicy, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_PRIVATE_ENV}
    if policy.isolated:
        keep = ("PATH", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "SYSTEMROOT")
        env = {k: v for k, v in env.items() if k in keep}
        home.mkdir(parents=True, exist_ok=True)
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ALLOW_PROTOCOL=":".join(p for p in policy.git_protocols if p in _ALL_GIT_PROTOCOLS),
        LC_ALL="C",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=30")
    return env


def _git_config(policy: FetchPolicy) -> list[str]:
    cfg = ["-c", "core.askPass=", "-c", "credential.interactive=never", "-c", "submodule.recurse=false"]
    if policy.isolated:
        cfg += ["-c", "credential.helper=", "-c", "transfer.fsckObjects=true"]
    if not policy.private_hosts:
        cfg += ["-c", "http.followRedirects=false"]  # a redirect's target would not be checked
    elif policy.isolated:
        cfg += ["-c", "http.followRedirects=initial"]
    return cfg


class _Git:
    """git commands for one fetch: environment, timeout, and a size watch on the scratch repository."""

    def __init__(self, url: str, ref: str | None, origin: str, policy: FetchPolicy, cache: _Cache, proto: str = "file"):
        self.url, self.ref, self.origin, self.policy, self.proto = url, ref, origin, policy, proto
        self.env = _git_env(policy, cache.root / "tmp" / "git-home")
        self.config = _git_config(policy)

    def what(self) -> str:
        return f"{self.origin} @ {self.ref}" if self.ref else self.origin

    def pin(self) -> list[str]:
        """Check the repository's host now (every address public) and pin git's http(s) connections to those addresses."""
        where = _git_host(self.url, self.proto)
        if self.policy.private_hosts or where is None:
            return []
        host, port = where
        addresses = public_addresses(host, port, self.origin, "model.git")
        if self.proto not in ("http", "https") or is_ip_literal(host):
            return []
        pinned = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
        return ["-c", f"http.curloptResolve={host}:{port}:{pinned}"]

    def run(
        self, args: list[str], cwd: Path | None = None, watch: Path | None = None, network: bool = False
    ) -> tuple[int, bytes, str]:
        if shutil.which("git") is None:
            raise FetchError("git is not installed on this machine; install git to use model.git sources")
        cmd = ["git", *self.config, *(self.pin() if network else []), *args]
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.policy.timeout
        out = err = b""
        while True:
            try:
                out, err = proc.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    self._kill(proc)
                    raise SourceUnreachable(f"git {self.what()}: timed out after {self.policy.timeout:g} s") from None
                if watch is not None and _du(watch) > self.policy.max_bytes:
                    self._kill(proc)
                    raise SourceTooLarge(
                        f"git {self.what()}: the repository is larger than the {_mib(self.policy.max_bytes)} cap"
                    ) from None
        return proc.returncode, out, err.decode("utf-8", "replace")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.communicate()

    def fail(self, err: str, doing: str) -> FetchError:
        """A FetchError for a failed git command, classified by git's last stderr line."""
        line = re.sub(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s']+@", r"\1", _last_line(err))  # no user:password
        low = err.lower()
        where = self.origin
        if "couldn't find remote ref" in low or "not our ref" in low or "unadvertised object" in low:
            return _about_ref(SourceNotFound(f"ref '{self.ref}' not found in {where} (git: {line})"))
        if "transport" in low and "not allowed" in low:
            return UnsupportedSource(f"git {self.what()}: transport not allowed (git: {line})")
        if any(
            s in low
            for s in (
                "authentication failed",
                "could not read username",
                "could not read password",
                "permission denied",
                "terminal prompts disabled",
                "returned error: 401",
                "returned error: 403",
            )
        ):
            return SourceAccessDenied(
                f"git {self.what()}: access denied; the repository needs credentials (git: {line})"
            )
        if any(
            s in low
            for s in (
                "not found",
                "does not appear to be a git repository",
                "no such repository",
                "not exported",
                "does not exist",
                "returned error: 404",
            )
        ):
            return SourceNotFound(f"git repository {where} not found (git: {line})")
        if any(
            s in low
            for s in (
                "could not resolve",
                "connection refused",
                "unable to connect",
                "timed out",
                "unable to access",
                "connection reset",
                "network is unreachable",
                "unable to look up",
            )
        ):
            return SourceUnreachable(f"git {self.what()}: cannot reach the repository (git: {line})")
        return FetchError(f"git {self.what()}: {doing} failed (git: {line})")


_GIT_BOILERPLATE = (
    "please make sure you have the correct access rights",
    "and the repository exists",
    "could not read from remote repository",
)


def _last_line(err: str) -> str:
    """git's last informative stderr line (not a hint, not the 'check your access rights' boilerplate).

    Never what the other side said: ``remote:`` lines are left out and a
    ``remote error:`` line is cut before its text.
    """
    err = re.sub(r"(remote error:).*", r"\1 the server refused the request", err, flags=re.I)
    lines = [ln.strip() for ln in err.splitlines() if ln.strip() and not ln.lower().startswith(("hint:", "remote:"))]
    useful = [ln for ln in lines if not any(b in ln.lower() for b in _GIT_BOILERPLATE)]
    return (useful or lines or ["no message"])[-1]


def _du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _resolve_remote(refs: dict[str, str], ref: str | None) -> tuple[str, str] | None:
    """(full ref name, commit) for ``ref`` among ``git ls-remote`` lines, by git's own precedence."""
    if ref is None or ref == "HEAD":
        names = ["HEAD"]
    elif ref.startswith("refs/"):
        names = [ref]
    else:
        names = [f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}"]
    for name in names:
        if name in refs:
            return name, refs.get(name + "^{}", refs[name])
    return None


def fetch_git(
    url: str,
    ref: str | None,
    cache_dir: Path | str,
    *,
    policy: FetchPolicy | None = None,
) -> FetchedSource:
    """Fetch ``ref`` (tag, branch, commit SHA; None: the default branch) of the repository at ``url``.

    Returns the exported tree under ``CACHE/git/<commit>`` (the repository's
    root, no ``.git``) with the resolved commit. A commit already fetched from
    the same URL costs no network when pinned by its full SHA, and one
    ``git ls-remote`` when named by a branch or tag.
    """
    policy = policy or DEFAULT_POLICY
    proto = _git_protocol(url, policy)
    origin = redact_url(url)
    ref = _check_ref(ref, origin)
    cache = _Cache(cache_dir)
    git = _Git(url, ref, origin, policy, cache, proto)

    def done(commit: str, cached: bool) -> FetchedSource:
        return FetchedSource(cache.git / commit, commit, origin, "git", ref=ref, commit=commit, cached=cached)

    pinned = ref.lower() if ref and _SHA_FULL.match(ref.lower()) else None
    remote_ref = None
    commit: str | None
    if pinned:
        if cache.seen(url, pinned):
            return done(pinned, True)
    else:
        pattern = ref or "HEAD"
        rc, out, err = git.run(["ls-remote", "--", url, pattern, pattern + "^{}"], network=True)
        if rc != 0:
            raise git.fail(err, "listing refs")
        refs = {}
        for line in out.decode("utf-8", "replace").splitlines():
            sha, _, name = line.partition("\t")
            if name:
                refs[name.strip()] = sha.strip()
        found = _resolve_remote(refs, ref)
        if found is None and not (ref and _SHA_SHORT.match(ref.lower())):
            if ref is None:
                raise SourceNotFound(f"git repository {origin} has no default branch (HEAD); give model.ref")
            raise _about_ref(SourceNotFound(f"ref '{ref}' not found in {origin}: it is no branch or tag there"))
        if found is not None:
            remote_ref, commit = found
            if _SHA_FULL.match(commit) and cache.seen(url, commit):
                return done(commit, True)

    staging = cache.staging()
    repo = staging / "repo.git"
    try:
        rc, _, err = git.run(["init", "--quiet", "--bare", "--template=", str(repo)])
        if rc != 0:
            raise FetchError(f"git {git.what()}: cannot create a scratch repository (git: {_last_line(err)})")
        commit = None
        want = remote_ref or pinned
        if want:
            rc, _, err = git.run(
                ["fetch", "--quiet", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--", url, want],
                cwd=repo,
                watch=repo,
                network=True,
            )
            if rc == 0:
                commit = _rev_parse(git, repo, "FETCH_HEAD^{commit}")
            elif not pinned:
                raise git.fail(err, "fetching")
            elif not _refused_by_id(err):
                raise git.fail(err, "fetching")
        if commit is None:
            # a short SHA, or a server that will not serve a commit by id: fetch everything and look it up
            rc, _, err = git.run(
                ["fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--", url, "+refs/*:refs/fetched/*"],
                cwd=repo,
                watch=repo,
                network=True,
            )
            if rc != 0:
                raise git.fail(err, "fetching")
            commit = _rev_parse(git, repo, f"{ref}^{{commit}}")
            if commit is None:
                raise _about_ref(
                    SourceNotFound(f"ref '{ref}' not found in {origin}: no branch, tag or commit by that name")
                )
        if commit is None:
            raise _about_ref(SourceNotFound(f"ref '{ref}' not found in {origin}: it names no commit there"))
        if not (cache.git / commit).is_dir():
            _export(git, repo, commit, cache)
        cache.mark_seen(url, commit)
        return done(commit, False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refused_by_id(err: str) -> bool:
    low = err.lower()
    return any(
        s in low
        for s in (
            "unadvertised object",
            "not our ref",
            "couldn't find remote ref",
            "no such remote ref",
            "server does not allow",
        )
    )


def _rev_parse(git: _Git, repo: Path, what: str) -> str | None:
    rc, out, _ = git.run(["rev-parse", "--verify", "--quiet", "--end-of-options", what], cwd=repo)
    sha = out.decode().strip()
    return sha if rc == 0 and _SHA_FULL.match(sha) else None


def _export(git: _Git, repo: Path, commit: str, cache: _Cache) -> None:
    """Check the commit's size and file count, then ``git archive`` it through the safe extractor."""
    policy = git.policy
    rc, out, err = git.run(["ls-tree", "-r", "-l", "--full-tree", "-z", commit], cwd=repo)
    if rc != 0:
        raise git.fail(err, "listing the tree")
    total = count = 0
    for entry in out.split(b"\0"):
        if not entry:
            continue
        meta = entry.split(b"\t", 1)[0].split()
        count += 1
        if len(meta) == 4 and meta[3].isdigit():
            total += int(meta[3])
    if count > policy.max_files:
        raise SourceTooLarge(
            f"git {git.what()}: commit {commit[:12]} has {count:,} files; at most {policy.max_files:,} are allowed"
        )
    if total > policy.max_bytes:
        raise SourceTooLarge(
            f"git {git.what()}: commit {commit[:12]} holds {_mib(total)}, more than the {_mib(policy.max_bytes)} cap"
        )
    rc, data, err = git.run(["archive", "--format=tar", commit], cwd=repo)
    if rc != 0:
        raise git.fail(err, "exporting the tree")
    cache.publish(data, cache.git / commit, f"git {git.what()}", policy)
