"""Which code made a result: the git commit of the running code, whether its tree was dirty,
and a fingerprint of the Python files that run (what a sweep compares before starting a task;
it also works outside git, e.g. from an unpacked release).

Standard library only: the sweep's workers import nothing heavier."""

import hashlib
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

#: The repository root of the running code (the folder holding the dgp_snr package).
ROOT = Path(__file__).resolve().parents[1]

#: The files whose content the fingerprint covers: everything a task's command executes.
FINGERPRINT_GLOBS = ("dgp_snr/**/*.py", "experiments/*.py")

#: Git pathspec of the Python files (what `dirty` looks at for figures' redraws).
CODE_FILES = ":(top,glob)**/*.py"


def _git(*args: str, cwd: Path = ROOT) -> Optional[str]:
    """`git <args>` in `cwd`; None outside a repository or without git."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version(*pathspecs: str, root: Path = ROOT) -> Dict[str, Any]:
    """{'git_commit': HEAD of the code's repository or None, 'git_dirty': whether its tracked
    files (those matching `pathspecs` when given) differ from that commit (None outside git)}."""
    commit = _git("rev-parse", "HEAD", cwd=root)
    status = (
        _git("status", "--porcelain", "--untracked-files=no", "--", *pathspecs, cwd=root)
        if commit
        else None
    )
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def code_fingerprint(root: Path = ROOT) -> str:
    """sha256 (first 16 hex digits) over the paths and contents of the FINGERPRINT_GLOBS files
    under `root`: any edit, added or removed module changes it; caches and data do not."""
    digest = hashlib.sha256()
    paths = sorted({p for pattern in FINGERPRINT_GLOBS for p in root.glob(pattern)})
    for path in paths:
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CodeState:
    """The code as it is now: commit (None outside git), dirty tree, content fingerprint."""

    git_commit: Optional[str]
    git_dirty: Optional[bool]
    fingerprint: str

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """e.g. 'commit 0c96e22 (dirty), code 5f1e...'."""
        commit = self.git_commit[:7] if self.git_commit else "outside git"
        return f"commit {commit}{' (dirty)' if self.git_dirty else ''}, code {self.fingerprint}"


def code_state(root: Path = ROOT) -> CodeState:
    """The CodeState of the code under `root` (default: the running code). Dirty means the
    Python files differ from the commit: results written into the tree (a saved checkpoint, a
    regenerated report) do not make the code dirty."""
    version = code_version(CODE_FILES, root=root)
    return CodeState(version["git_commit"], version["git_dirty"], code_fingerprint(root))
