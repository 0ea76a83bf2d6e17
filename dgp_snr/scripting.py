"""What the experiment scripts share: TensorFlow started without its C++ start-up log lines,
warnings and errors as one line each, and config files read as plain data only.

Importing this module imports nothing heavy."""

import argparse
import json
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

#: Start-up lines TensorFlow's C++ side writes before its logging honours TF_CPP_MIN_LOG_LEVEL
#: (absl, oneDNN, the CUDA stubs on a machine without a GPU, CPU feature notes).
_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations|cudart_stub|"
    r"cuda_platform|cuda_dnn|cuda_fft|cuda_blas|cuInit|Unable to register cu|TF-TRT Warning|"
    r"cpu_feature_guard|This TensorFlow binary is optimized|To enable the following instructions|"
    r"computation placer already registered|absl::InitializeLog"
)

CONFIG_EXTENSIONS = (".json", ".yaml", ".yml")
PICKLE_EXTENSIONS = (".pickle", ".pkl")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and initialises its devices with stderr (file descriptor 2) held
    back, then writes back every held line that is not known start-up noise."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, not at import
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
    kept = [line for line in text.splitlines() if line.strip() and not _NOISE.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def one_line_warnings(prog: str) -> None:
    """Shows each warning as `prog: warning: message` (no source line)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prog}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show


def _tagged_keys(value: Any, where: str = "") -> List[str]:
    """Paths of keys starting with 'py/' (jsonpickle's tags, which can name code to run)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if str(key).startswith("py/"):
                found.append(path)
            found += _tagged_keys(item, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _tagged_keys(item, f"{where}[{i}]")
    return found


def load_plain_config(path: os.PathLike) -> Dict[str, Any]:
    """A config file as plain data: JSON or YAML (safe loader), a mapping of settings. Pickle
    files and jsonpickle's 'py/' tags are refused, since loading them can run code."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in PICKLE_EXTENSIONS:
        raise ValueError(
            f"config file {path}: pickle files are not accepted (loading one can run code); "
            "use a plain JSON or YAML file"
        )
    if ext not in CONFIG_EXTENSIONS:
        raise ValueError(
            f"config file {path}: unsupported extension {ext!r}; use a plain JSON or YAML file"
        )
    try:
        text = path.read_text(encoding="utf-8")
        if ext == ".json":
            values = json.loads(text)
        else:
            try:
                import yaml
            except ImportError:
                raise ValueError("reading YAML needs PyYAML (pip install pyyaml); or use JSON")
            values = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"config file {path}: {err}") from err
    except Exception as err:  # yaml.YAMLError, e.g. a python/object tag the safe loader refuses
        raise ValueError(f"config file {path}: {str(err).splitlines()[0]}") from err
    if not isinstance(values, dict):
        raise ValueError(f"config file {path}: expected a mapping of settings")
    tagged = _tagged_keys(values)
    if tagged:
        raise ValueError(
            f"config file {path}: 'py/' tags are not accepted ({', '.join(tagged[:3])}); "
            "use plain JSON values"
        )
    return values


def check_config_files(argv: Sequence[str]) -> None:
    """Checks the config files named after `with` on a sacred command line (words without
    '=' that are files or have a config or pickle extension) with load_plain_config."""
    args = list(argv)
    if "with" not in args:
        return
    for word in args[args.index("with") + 1 :]:
        if "=" in word or word.startswith("-"):
            continue
        ext = Path(word).suffix.lower()
        if ext in CONFIG_EXTENSIONS + PICKLE_EXTENSIONS or Path(word).is_file():
            load_plain_config(word)


def install_safe_config_loaders() -> None:
    """Makes sacred read .json and .yaml config files with load_plain_config and refuse pickle
    files (its own loaders decode jsonpickle tags and unpickle)."""
    from sacred.config import config_files

    def loader(ext: str) -> Any:
        def load(handle: Any) -> Optional[Dict[str, Any]]:
            return load_plain_config(Path(handle.name))

        return config_files.Handler(load, config_files.HANDLER_BY_EXT[ext].dump, "")

    for ext in CONFIG_EXTENSIONS:
        if ext in config_files.HANDLER_BY_EXT:
            config_files.HANDLER_BY_EXT[ext] = loader(ext)
    for ext in PICKLE_EXTENSIONS:
        config_files.HANDLER_BY_EXT[ext] = config_files.Handler(
            lambda handle: load_plain_config(Path(handle.name)), None, "b"
        )


class _RenamedFlag(argparse.Action):
    """An old flag kept as an alias of a renamed one: stores into the new flag's destination
    and says once, in one line, which flag to use instead."""

    def __init__(self, option_strings: List[str], dest: str, new_flag: str, **kwargs: Any):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        print(
            f"{parser.prog}: {option_string} is deprecated; use {self.new_flag}", file=sys.stderr
        )
        setattr(namespace, self.dest, values)


def add_renamed_argument(parser: Any, new: str, old: str, **kwargs: Any) -> argparse.Action:
    """Adds the option `new` (e.g. --num_estimates) to `parser` (or an argument group), and
    `old` as a hidden deprecated alias of it. Returns the new option's action."""
    action = parser.add_argument(new, **kwargs)
    parser.add_argument(
        old,
        dest=action.dest,
        type=kwargs.get("type"),
        default=argparse.SUPPRESS,
        action=_RenamedFlag,
        new_flag=new,
        help=argparse.SUPPRESS,
    )
    return action
