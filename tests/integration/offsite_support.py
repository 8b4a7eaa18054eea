"""Remotes for the off-site tests: a local folder, OpenSSH's sftp on 127.0.0.1 (one port read-only),
and an rclone crypt remote over a local folder, all in one rclone config of the test's own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
MISSING = (
    "rclone or OpenSSH's server is not installed: run `make .venv/.offsite-tools` "
    "(apt-get install rclone openssh-server)"
)


@dataclass(frozen=True)
class Remotes:
    """Remote paths for rclone, the folders behind them, and the environment that makes them work."""

    config: Path
    local: str
    local_root: Path
    sftp: str
    sftp_root: Path
    readonly: str
    readonly_root: Path
    crypt: str
    crypt_root: Path

    def env(self) -> dict[str, str]:
        return {"RCLONE_CONFIG": str(self.config)}


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"sshd exited with {process.returncode}: {process.stderr.read() if process.stderr else ''!r}"
            )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}")


@contextmanager
def remotes(base: Path) -> Iterator[Remotes]:
    """Start sshd on two spare ports (the second serves sftp read-only) and write the rclone config."""
    if shutil.which("rclone") is None or not os.path.exists(SSHD):
        raise RuntimeError(MISSING)
    base.mkdir(parents=True, exist_ok=True)
    ssh = base / "ssh"
    ssh.mkdir(mode=0o700)
    _keygen(ssh / "host_key")
    _keygen(ssh / "user_key")
    shutil.copy(ssh / "user_key.pub", ssh / "authorized_keys")
    port, ro_port = spare_port(), spare_port()
    user = (
        os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    )
    (ssh / "sshd_config").write_text(
        f"Port {port}\nPort {ro_port}\nListenAddress 127.0.0.1\nHostKey {ssh / 'host_key'}\n"
        f"PidFile {ssh / 'sshd.pid'}\nAuthorizedKeysFile {ssh / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
        f"Match LocalPort {ro_port}\n  ForceCommand internal-sftp -R\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(ssh / "sshd_config")], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        _wait_listening(port, process)
        _wait_listening(ro_port, process)
        host = (ssh / "host_key.pub").read_text().split()
        known = ssh / "known_hosts"
        known.write_text(
            f"[127.0.0.1]:{port} {host[0]} {host[1]}\n[127.0.0.1]:{ro_port} {host[0]} {host[1]}\n"
        )
        password = subprocess.run(
            ["rclone", "obscure", "correct horse battery staple"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for folder in ("local", "sftp", "readonly", "crypt"):
            (base / folder).mkdir()
        common = (
            f"type = sftp\nhost = 127.0.0.1\nuser = {user}\n"
            f"key_file = {ssh / 'user_key'}\nknown_hosts_file = {known}\n"
        )
        config = base / "rclone.conf"
        config.write_text(
            f"[sftp]\n{common}port = {port}\nshell_type = unix\n"
            "md5sum_command = md5sum\nsha1sum_command = sha1sum\n\n"
            f"[sftpro]\n{common}port = {ro_port}\nshell_type = none\ndisable_hashcheck = true\n\n"
            f"[secret]\ntype = crypt\nremote = {base / 'crypt'}\npassword = {password}\n"
        )
        config.chmod(0o600)
        yield Remotes(
            config,
            str(base / "local" / "repo"),
            base / "local" / "repo",
            f"sftp:{base / 'sftp' / 'repo'}",
            base / "sftp" / "repo",
            f"sftpro:{base / 'readonly' / 'repo'}",
            base / "readonly",
            "secret:repo",
            base / "crypt",
        )
    finally:
        process.terminate()
        process.wait(timeout=20)
        shutil.rmtree(base, ignore_errors=True)
