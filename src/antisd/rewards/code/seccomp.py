"""A seccomp filter that keeps a sandboxed program out of the kernel's namespace and mount calls.

Built here, in the trusted process, as raw classic-BPF bytes (``struct sock_filter[]``); the
sandbox's fork server installs it in each program's process (``prctl(PR_SET_SECCOMP,
SECCOMP_MODE_FILTER)`` after ``PR_SET_NO_NEW_PRIVS``) before any untrusted code runs, and every
process the program starts inherits it. It answers EPERM to:

- ``unshare`` (any flags) and ``setns``: no new user, mount, network, PID... namespace, and no
  joining another one. Without this a program can open a nested user namespace, become root in it
  and mount its own tmpfs, writing past the scratch cap into host memory;
- ``clone`` with any ``CLONE_NEW*`` flag (a plain fork or thread is allowed), and ``clone3``
  (ENOSYS: its flags sit in memory a filter cannot read; the C library then falls back to clone);
- the mount family (``mount``, ``umount2``, ``pivot_root``, ``chroot``, ``open_tree``,
  ``move_mount``, ``fsopen``, ``fsconfig``, ``fsmount``, ``fspick``, ``mount_setattr``);
- ``ptrace``, ``bpf``, ``perf_event_open``, ``userfaultfd`` and the kernel keyring calls, which a
  test program never needs and which widen what a kernel bug can be reached through.

Any other architecture ABI on the same machine (i386 or x32 calls on x86_64) is refused with
EPERM as a whole. Machines other than x86_64 and aarch64 get no filter (`filter_for` returns None)
and the sandbox says so in its log.
"""

from __future__ import annotations

import platform
import struct

# classic BPF opcodes
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K

SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
EPERM, ENOSYS = 1, 38

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_OFF_NR, _OFF_ARCH, _OFF_ARG0_LOW = 0, 4, 16

CLONE_NEW_FLAGS = (0x00000080 | 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                   | 0x20000000 | 0x40000000)
"""CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET."""

_X32_BIT = 0x40000000

# (audit arch, {name: number}) per machine; numbers from the kernel's syscall tables
_ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "unshare": 272, "setns": 308, "clone": 56, "clone3": 435, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 101, "bpf": 321,
        "perf_event_open": 298, "userfaultfd": 323, "add_key": 248, "request_key": 249, "keyctl": 250}),
    "aarch64": (0xC00000B7, {
        "unshare": 97, "setns": 268, "clone": 220, "clone3": 435, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "ptrace": 117, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "add_key": 217, "request_key": 218, "keyctl": 219}),
}
_DENIED = ("unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
           "fsconfig", "fsmount", "fspick", "mount_setattr", "ptrace", "bpf", "perf_event_open", "userfaultfd",
           "add_key", "request_key", "keyctl")


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def build_filter(arch: int, numbers: dict[str, int]) -> bytes:
    """The filter program for one architecture (module docstring), as packed sock_filter structs."""
    deny, nosys = SECCOMP_RET_ERRNO | EPERM, SECCOMP_RET_ERRNO | ENOSYS
    prog = [_insn(_LD_W_ABS, 0, 0, _OFF_ARCH),
            _insn(_JEQ_K, 1, 0, arch),  # native ABI: go on; anything else: refuse
            _insn(_RET_K, 0, 0, deny),
            _insn(_LD_W_ABS, 0, 0, _OFF_NR)]
    if arch == 0xC000003E:
        prog += [_insn(_JGE_K, 0, 1, _X32_BIT), _insn(_RET_K, 0, 0, deny)]  # x32 calls carry this bit
    for name in _DENIED:
        prog += [_insn(_JEQ_K, 0, 1, numbers[name]), _insn(_RET_K, 0, 0, deny)]
    prog += [_insn(_JEQ_K, 0, 1, numbers["clone3"]), _insn(_RET_K, 0, 0, nosys),
             _insn(_JEQ_K, 0, 3, numbers["clone"]),  # clone: look at the flags (low word of args[0])
             _insn(_LD_W_ABS, 0, 0, _OFF_ARG0_LOW),
             _insn(_JSET_K, 0, 1, CLONE_NEW_FLAGS),
             _insn(_RET_K, 0, 0, deny),
             _insn(_RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    return b"".join(prog)


def filter_for(machine: str | None = None) -> bytes | None:
    """The filter for `machine` (default: this one's, ``platform.machine()``), or None when unknown."""
    entry = _ARCHES.get(machine or platform.machine())
    return None if entry is None else build_filter(*entry)
