"""Where `distill view` writes its page, and what it refuses to overwrite."""

from __future__ import annotations

from pathlib import Path

from distill.errors import ConfigError

GENERATOR = '<meta name="generator" content="distill view">'  # in the head of every page, marks it as ours


def default_output(source: str, subset: str | None = None, revision: str | None = None) -> Path:
    """SOURCE/view.html for what distill wrote (a run, a training output, a folder of runs); NAME.view.html in
    the current directory for any other dataset (a file, a saved dataset, a Hub id), which is never written into."""
    from distill.run_dir import VIEW
    from distill.view.collect import kind_of

    path = Path(source)
    if subset is None and revision is None and path.is_dir() and kind_of(path) != "dataset":
        return path / VIEW
    name = path.stem if path.is_file() else (path.name or source.replace("/", "-"))
    return Path(f"{name.replace('/', '-')}.view.html")


def check_output(path: Path) -> None:
    """Refuse a directory, a path inside a file, and an existing file that is not a page distill view wrote."""
    if path.is_dir():
        raise ConfigError(f"-o {path} is a directory; name the page's file, like {path / 'view.html'}")
    above = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise ConfigError(f"-o {path} is inside {above}, which is a file, not a directory")
    if not (path.exists() or path.is_symlink()):
        return
    head = b""
    if path.is_file() and not path.is_symlink():  # (never opened otherwise: a FIFO would block the read)
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    if GENERATOR.encode() not in head:
        raise ConfigError(f"{path} exists and is not a page distill view wrote; choose another -o or delete it")


def make_folder(path: Path) -> None:
    """The page's folder, made when the page is about to be written (not before: a refused source leaves none)."""
    from distill.errors import write_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(err, path.parent) from None
