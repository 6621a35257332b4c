"""What a container's process is exec'd with: its environment (docker's merge and additions)
and its executable (runc's PATH lookup and exec errors, as 126/127 with docker's messages).
Shared by PID 1 (launch.py) and exec (execin.py); also used before any fork by run and build."""

from __future__ import annotations

import os
import stat

from minirun.errors import EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, MinirunError

# A container's processes start with this umask, whatever the caller's (runc's default when a
# config names none, and so docker's and podman's): a CLI run under umask 077 must not make
# every file a container writes private.
DEFAULT_UMASK = 0o022


class ExecFailure(MinirunError):
    """The command cannot be exec'd: docker's 126 (cannot invoke) or 127 (not found)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message, exit_code=code)


def find_executable(name: str, path_env: str | None) -> str:
    """exec.LookPath as runc uses it: a name with a slash is taken as is, else searched in PATH."""
    if "/" in name:
        _check_executable(name, name)
        return name
    for directory in (path_env or "").split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    raise ExecFailure(EXIT_NOT_FOUND, f'exec: "{name}": executable file not found in $PATH')


def _check_executable(shown: str, path: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ExecFailure(EXIT_NOT_FOUND, f'exec: "{shown}": stat {path}: no such file or directory') from None
    except OSError as exc:
        raise ExecFailure(EXIT_CANNOT_INVOKE, f'exec: "{shown}": {(exc.strerror or str(exc)).lower()}') from None
    if stat.S_ISDIR(st.st_mode):
        raise ExecFailure(EXIT_CANNOT_INVOKE, f'exec: "{shown}": is a directory')
    if not st.st_mode & 0o111:
        raise ExecFailure(EXIT_CANNOT_INVOKE, f'exec: "{shown}": permission denied')


def exec_error(name: str, exc: OSError) -> ExecFailure:
    text = (exc.strerror or str(exc)).lower()
    code = EXIT_NOT_FOUND if exc.errno == 2 else EXIT_CANNOT_INVOKE
    return ExecFailure(code, f'exec: "{name}": {text}')


def with_default_env(env: list[str], hostname: str, home: str, tty: bool = False) -> list[str]:
    """docker's additions: PATH when the image has none, HOSTNAME, TERM=xterm with -t (unless the
    image or -e set TERM), HOME from the user's entry."""
    keys = {item.split("=", 1)[0] for item in env}
    extra = []
    if "PATH" not in keys:
        extra.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if "HOSTNAME" not in keys:
        extra.append(f"HOSTNAME={hostname}")
    if tty and "TERM" not in keys:
        extra.append("TERM=xterm")
    result = extra + list(env)
    if "HOME" not in keys:
        result.append(f"HOME={home or '/'}")
    return result


def env_value(env: list[str], key: str) -> str | None:
    value = None
    for item in env:
        k, _, v = item.partition("=")
        if k == key:
            value = v
    return value


def env_dict(env: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in env:
        k, _, v = item.partition("=")
        result[k] = v
    return result


def merged_env(image_env: list[str], extra: list[str]) -> list[str]:
    """Image Env, then -e/--env-file; a later key replaces an earlier one in place."""
    result: list[str] = []
    index: dict[str, int] = {}
    for item in list(image_env) + list(extra):
        key = item.split("=", 1)[0]
        if key in index:
            result[index[key]] = item
        else:
            index[key] = len(result)
            result.append(item)
    return result
