"""Two pipes between the runtime and a child it forked: requests up, answers down (runc's sync
pipe). The user namespace's maps (userns.py) and the hooks PID 1 waits for (hooks.py) use one
each. os only."""

from __future__ import annotations

import os


class Channel:
    def __init__(self) -> None:
        self.up_read, self.up_write = os.pipe2(os.O_CLOEXEC)
        self.down_read, self.down_write = os.pipe2(os.O_CLOEXEC)

    def child_fds(self) -> list[int]:
        return [self.up_write, self.down_read]

    def close_parent_side(self) -> None:
        os.close(self.up_read)
        os.close(self.down_write)

    def close_child_side(self) -> None:
        os.close(self.up_write)
        os.close(self.down_read)
