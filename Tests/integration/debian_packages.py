"""Debian packages the integration tests need (nginx, chromium): found on
PATH, else installed with apt-get (as root, or through `sudo -n`), else the
test is skipped with a loud banner on stderr and a "LOUD SKIP" reason in the
pytest summary. scripts/setup --test installs the same packages up front."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

_apt_updated = False


def ensure_debian_package(command: str, package: str, candidates=()) -> str:
    """Path of `command`, installing Debian's `package` with apt-get when it
    is missing. Skips the calling test LOUDLY when it cannot be installed."""
    found = shutil.which(command) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found:
        return found
    global _apt_updated
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    why = "not root and no sudo"
    if prefix is not None and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        lock = ["-o", "DPkg::Lock::Timeout=120"]
        # The per-test SIGALRM guard (conftest.py) is paused while apt-get
        # runs (it has its own time limits) and resumes with what was left.
        left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        sys.__stderr__.write(f"\n[debian_packages] installing {package} with apt-get ...\n")
        try:
            if not _apt_updated:
                subprocess.run(prefix + ["apt-get"] + lock + ["update", "-qq"], env=env, timeout=300,
                               capture_output=True, check=True)
                _apt_updated = True
            subprocess.run(prefix + ["apt-get"] + lock + ["install", "-y", "-qq", package], env=env,
                           timeout=600, capture_output=True, check=True)
        except subprocess.CalledProcessError as e:
            why = f"apt-get failed: {e.stderr.decode(errors='replace')[-500:]}"
        except (subprocess.TimeoutExpired, OSError) as e:
            why = f"apt-get failed: {e}"
        finally:
            if left:
                signal.setitimer(signal.ITIMER_REAL, left)
        found = shutil.which(command) or next((c for c in candidates if os.access(c, os.X_OK)), None)
        if found:
            return found
    elif prefix is not None:
        why = "no apt-get on this machine"
    banner = "!" * 78
    message = (f"\n{banner}\n!!! SKIPPING: Debian package {package!r} ({command}) is not installed and "
               f"cannot be installed\n!!! ({why}).\n!!! Install it (apt-get install {package}) or run "
               f"scripts/setup --test as root.\n{banner}\n")
    sys.__stderr__.write(message)
    pytest.skip(f"LOUD SKIP: Debian package {package} missing and not installable ({why})")
