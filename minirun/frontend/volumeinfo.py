"""`volume ls/prune` and the Engine API's /volumes: which volumes a listing's filters keep and
which a prune removes (containers/mounts.py makes and removes them)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from minirun.frontend.filters import Filters
    from minirun.store import Store
    from minirun.store.volumes import Volume

PRUNE_KEYS = ("label", "label!", "all")


def list_volumes(store: Store, words: list[str]) -> list[Volume]:
    from minirun.store.volumes import VolumeStore

    volumes = VolumeStore(store.root).all()
    if words:
        from minirun.containers.mounts import volume_users
        from minirun.frontend.filters import VOLUME_KEYS, Filters, volume_filter

        keep = volume_filter(Filters(words, VOLUME_KEYS), set(volume_users(store.root)))
        volumes = [v for v in volumes if keep(v)]
    return volumes


def prune_volumes(store: Store, words: list[str], all_: bool = False) -> tuple[list[str], int]:
    """The volumes no container uses that `prunable` lets go: their names, the bytes freed."""
    from minirun.containers.mounts import prune_volumes as prune
    from minirun.frontend.filters import Filters

    filters = Filters(words, PRUNE_KEYS)
    everything = all_ or bool(filters.boolean("all"))
    return prune(store, lambda v: not prunable(v, filters, everything))


def prunable(volume: Volume, filters: Filters, everything: bool) -> bool:
    """docker's prune filters: anonymous only unless -a (or all=true); label= must match,
    label!= must not."""
    labels = volume.labels or {}
    if not everything and not volume.anonymous:
        return False
    return filters.match_labels(labels)
