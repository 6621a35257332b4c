"""`pull`, `push`, `login` and `logout` on the typer app: options in, the library called, its
progress rendered.

On a terminal each layer gets a rich progress row; in a pipe each layer's status changes are lines
as docker prints them (`<id>: Pull complete`); with -q only the final reference is printed.
"""

from __future__ import annotations

import sys
import threading

import typer

from minirun import events
from minirun.cli.typerapp import new_app, open_store
from minirun.errors import UsageError

app = new_app()

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rich.progress import TaskID


class _Lines:
    """docker's non-terminal output: one line per status change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def layer_status(self, short_id: str, text: str) -> None:
        self.line(f"{short_id}: {text}")

    def layer_started(self, short_id: str, total: int) -> None:
        pass

    def layer_progress(self, short_id: str, count: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Quiet(_Lines):
    def line(self, text: str) -> None:
        pass


class _Bars(_Lines):
    """A row per layer: its id, its status, and a bar with bytes once it transfers (a layer that
    is already there gets no bar)."""

    def __init__(self, pulling: bool) -> None:
        super().__init__()
        from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, TextColumn

        class OnlyWhileTransferring(ProgressColumn):
            def __init__(self, inner: ProgressColumn) -> None:
                super().__init__()
                self.inner = inner

            def render(self, task):
                return self.inner.render(task) if task.fields.get("transfer") else ""

        self._transfer = "Downloading" if pulling else "Pushing"
        self._progress = Progress(
            TextColumn("{task.fields[short_id]}:"),
            TextColumn("{task.description}"),
            OnlyWhileTransferring(BarColumn()),
            OnlyWhileTransferring(DownloadColumn()),
        )
        self._tasks: dict[str, TaskID] = {}
        self._progress.start()

    def _task(self, short_id: str) -> TaskID:
        with self._lock:
            if short_id not in self._tasks:
                self._tasks[short_id] = self._progress.add_task("", total=None, short_id=short_id, transfer=False)
            return self._tasks[short_id]

    def line(self, text: str) -> None:
        self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def layer_status(self, short_id: str, text: str) -> None:
        self._progress.update(self._task(short_id), description=text)

    def layer_started(self, short_id: str, total: int) -> None:
        self._progress.update(self._task(short_id), total=total, description=self._transfer, transfer=True)

    def layer_progress(self, short_id: str, count: int) -> None:
        self._progress.advance(self._tasks[short_id], count)

    def close(self) -> None:
        self._progress.stop()


def _view(quiet: bool, pulling: bool) -> _Lines:
    if quiet:
        return _Quiet()
    if sys.stdout.isatty():
        return _Bars(pulling)
    return _Lines()


def _default_tag_note(text: str, view: _Lines) -> None:
    from minirun.store.reference import parse_reference

    ref = parse_reference(text, default_tag=None)  # a bad reference fails here, before any request
    if ref.tag is None and ref.digest is None:
        view.line("Using default tag: latest")


@app.command("pull")
def pull(
    reference: str = typer.Argument(..., metavar="HOST[:PORT]/NAME[:TAG|@DIGEST]"),
    insecure: bool = typer.Option(False, "--insecure", help="Plain HTTP (loopback registries always use it)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print only the image reference."),
) -> None:
    """Download an image from a registry."""
    from minirun.distribution.pull import pull as pull_image

    view = _view(quiet, pulling=True)
    try:
        _default_tag_note(reference, view)
        store = open_store()
        result = pull_image(store, reference, insecure=insecure, view=view)  # type: ignore[arg-type]
    finally:
        view.close()
    events.record(store.root, "image", "pull", result.image.id, {"name": result.reference})
    print(result.reference)


@app.command("push")
def push(
    reference: str = typer.Argument(..., metavar="HOST[:PORT]/NAME[:TAG]"),
    insecure: bool = typer.Option(False, "--insecure", help="Plain HTTP (loopback registries always use it)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Print nothing but errors."),
) -> None:
    """Upload an image to a registry."""
    from minirun.distribution.push import push as push_image

    view = _view(quiet, pulling=False)
    try:
        _default_tag_note(reference, view)
        store = open_store()
        push_image(store, reference, insecure=insecure, view=view)  # type: ignore[arg-type]
    finally:
        view.close()
    events.record(store.root, "image", "push", reference, {"name": reference})


@app.command("login")
def login(
    server: str | None = typer.Argument(None, metavar="[SERVER]", help="The registry (default Docker Hub)."),
    username: str | None = typer.Option(None, "-u", "--username", help="Username."),
    password: str | None = typer.Option(None, "-p", "--password", help="Password (prefer --password-stdin)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Take the password from stdin."),
) -> None:
    """Log in to a registry; the credentials are saved (mode 0600) for pull and push."""
    from minirun.distribution import credentials

    if password is not None and password_stdin:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if password_stdin:
        if not username:
            raise UsageError("Must provide --username with --password-stdin")
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    key = credentials.server_key(server or "docker.io")
    if username is None or password is None:
        username, password = _prompt(key, username)
    credentials.login(key, username, password)
    print(f"WARNING! Your password will be stored unencrypted in {credentials.auth_path()}.", file=sys.stderr)
    print("Login Succeeded")


def _prompt(key: str, username: str | None) -> tuple[str, str]:
    import getpass

    if not sys.stdin.isatty():
        raise UsageError("Cannot perform an interactive login from a non TTY device")
    if username is None:
        username = input("Username: ").strip()
    return username, getpass.getpass("Password: ")


@app.command("logout")
def logout(
    server: str | None = typer.Argument(None, metavar="[SERVER]", help="The registry (default Docker Hub)."),
) -> None:
    """Log out from a registry: forget its saved credentials."""
    from minirun.distribution import credentials

    key = credentials.server_key(server or "docker.io")
    if credentials.remove(key):
        print(f"Removing login credentials for {key}")
    else:
        print(f"Not logged in to {key}")
