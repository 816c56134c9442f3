"""The sandbox's system-call filter: the kernel's seldom needed, often exploited calls answer ``EPERM`` to a model.

Why: bubblewrap's namespaces and dropped capabilities leave the kernel's whole system-call surface reachable, and
kernel bugs behind a few calls (``io_uring``, ``bpf``, ``userfaultfd``, ``perf_event_open``, ``keyctl``, new
namespaces) are how code escapes containers. A simulation model needs none of them. The list follows Docker's
default profile where it denies calls to a process without capabilities; everything else is allowed, so NumPy,
PyArrow, threads, ``fork`` and ``subprocess`` work as before.

The driver compiles the filter once per process with libseccomp (through ``pyseccomp``) into a classic BPF program
for this machine's architecture (a syscall of another architecture kills the caller: libseccomp's default); the
worker loads it itself (:func:`ancho.syscall_filter.load`) from ``ANCHO_SECCOMP`` before anything of the
model is imported, as it applies its rlimits, for all its threads, and stops if it cannot.
"""

from __future__ import annotations

import base64
import errno
import functools
import tempfile

from .policy import SandboxUnavailable

#: calls a model gets EPERM for (names as libseccomp knows them; one this architecture lacks is skipped)
DENIED = (
    # kernel attack surface a model never needs
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "userfaultfd", "perf_event_open",
    "keyctl", "add_key", "request_key",
    # other processes' memory, namespaces, mounts
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "open_by_handle_at", "name_to_handle_at",
    # the machine's own settings (refused without capabilities anyway)
    "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module", "swapon", "swapoff",
    "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "syslog", "vhangup", "quotactl",
    "lookup_dcookie", "iopl", "ioperm", "uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "personality",
)  # fmt: skip
#: ``clone`` flags that make a namespace: refused (``clone3``, whose flags the filter cannot read, answers ENOSYS,
#: and C libraries then use ``clone``)
NAMESPACE_FLAGS = (0x00000080, 0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


@functools.lru_cache(maxsize=1)
def program() -> bytes:
    """The filter as a BPF program (8-byte instructions). SandboxUnavailable when libseccomp cannot be loaded."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError, RuntimeError) as exc:  # (pyseccomp loads libseccomp.so.2 when imported)
        raise SandboxUnavailable(
            f"the sandbox's system-call filter needs libseccomp ({exc}); install Debian's libseccomp2, or set "
            "SandboxPolicy(seccomp=False)"
        ) from None
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        try:
            rules.add_rule(sc.ERRNO(errno.EPERM), name)
        except (OSError, ValueError):  # (not a call of this architecture)
            continue
    for flag in NAMESPACE_FLAGS:
        rules.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()


def program_env() -> str:
    """:func:`program` as ``ANCHO_SECCOMP``'s value."""
    return base64.b64encode(program()).decode("ascii")
