"""Noticing change in the source: which folders and bins a poll re-checks, and what the kernel
must then forget. Part of `Namespace` (a mixin), kept apart because it is the one part that
runs in the background.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import time
from dataclasses import replace

from ..core.bin import Bin
from ..core.settle import settled
from ..core.source import BinFiles, SourceUnreadable
from .nodes import BIN, DIR, LIVE_SECONDS, RETRY_SECONDS, SWEEP_SECONDS, VDIR, FsError, Node

log = logging.getLogger("ifcbfs")


class Refresh:
    """The re-checks of a `Namespace` (see `refresh`)."""

    # --- noticing change in the source ------------------------------------------------
    def refresh(self, everything: bool = False) -> list[tuple]:
        """Re-check what can change: loaded folders (by their stamp) and bins whose files changed
        within LIVE_SECONDS (`everything`: every loaded bin too). Apply what changed. The source
        is read outside the tree's lock; only publishing takes it.

        Returns what the kernel must forget: ("inode", ino) and ("entry", parent_ino, name).
        """
        with self._refreshing:
            changes: list[tuple] = []
            replaced: list[tuple[Node, Bin | None]] = []
            self._refresh_products(changes, replaced)
            folders = [n for n in list(self.nodes.values()) if n.kind == DIR and n.children is not None]
            clock = time.monotonic()
            sweep = everything or clock - self._swept >= SWEEP_SECONDS
            if sweep:
                self._swept = clock
            for node in folders:
                if self.nodes.get(node.ino) is node:  # (not dropped earlier in this pass)
                    self._refresh_dir(node, changes, replaced, sweep or self._frontier(node, clock))
            self._refresh_views(changes)
            bins = list(self._models.values()) if everything else list(self._live)
            now = time.time()
            for node in bins:
                try:
                    files = self.source.stat_bin(node.files)
                except SourceUnreadable:
                    continue  # the source did not answer (an object store's outage): next poll
                if files == node.files:
                    model = node.model
                    since = self._again.get(node)  # kept without a product file that may read now
                    retry = since is not None and (everything or clock - since >= RETRY_SECONDS)
                    if model is not None and (retry or (not model.settled and settled(files, now))):
                        try:  # loaded while growing, now settled: load it as final, first
                            final = self.bin_model(node.path, files)
                        except FsError:
                            continue  # keep serving what was listed; try again at the next poll
                        if final.product_again and final.settled == model.settled and final.listing() == model.listing():
                            with self._lock:  # still not read, nothing else changed: keep what was listed
                                if node in self._again:
                                    self._again[node] = clock
                            continue
                        with self._lock:
                            replaced.append((node, self._replace_files(node, files, changes)))
                            self._keep(node, final)
                    elif now - files.mtime_ns / 1e9 >= LIVE_SECONDS and node not in self._again:
                        self._live.discard(node)
                elif any((files.hdr, files.adc, files.roi)):  # (a bin that is gone goes with its folder)
                    with self._lock:
                        replaced.append((node, self._replace_files(node, files, changes)))
            for node, old in replaced:
                self._changed_entries(node, old, changes)
            return changes

    def _frontier(self, node: Node, clock: float) -> bool:
        """Whether a folder whose source gives no change stamp is re-listed at this poll: when it
        changed within LIVE_SECONDS, or it is the root, or the last of its parent's folders in
        name order (where a chronological archive grows: the newest year, day). The flat root
        stands for the whole source, so it waits for the sweep."""
        if node is self.root and self.options.layout == "flat":
            return False
        if node.parent is None or clock - node.changed < LIVE_SECONDS:
            return True
        siblings = [name for name, child in (node.parent.children or {}).items() if child.kind == DIR]
        return bool(siblings) and siblings[-1] == node.name

    def _refresh_dir(self, node: Node, changes: list, replaced: list, unstamped: bool = True) -> None:
        """Re-read a folder if its stamp moved (or, where the source has no stamps, if
        `unstamped`) and apply what changed."""
        stamp = self._flat_stamp if node is self.root and self.options.layout == "flat" else node.mtime_ns
        try:
            now = self._stamp_of(node)
            if (now and now == stamp) or (not now and not unstamped):
                return
            _, folders, found = self._read_dir(node)
        except SourceUnreadable as err:
            if err.errno == errno.EIO:
                return  # the source did not answer (an object store's outage): try again later
            now, folders, found = 0, {}, []
        tops = self._tops() if node is self.root else ()
        with self._lock:
            old = node.children or {}
            fresh = self._publish_dir(node, folders, found, tops)
            self._set_stamp(node, now)
            for name, files in found:  # a re-read folder is how a settled bin is seen to change
                child = fresh.get(name)
                if child is not None and child is old.get(name) and child.files != files and child.files.folder == files.folder:
                    replaced.append((child, self._replace_files(child, files, changes)))
            if list(fresh) == list(old) and all(fresh[k] is old[k] for k in fresh):
                return
            for name, child in old.items():
                if fresh.get(name) is not child:
                    self._drop(child)
                    changes.append(("entry", node.ino, name))
            node.children = fresh  # published whole: readers never see it half built
            node.changed = time.monotonic()
            changes.append(("inode", node.ino))

    def _refresh_products(self, changes: list, replaced: list) -> None:
        """When the product index changed: point bins whose product files differ at them."""
        finder = self.source.products
        if finder is None or finder.version == self._products_version:
            return
        self._products_version = finder.version
        bins = [n for n in list(self.nodes.values()) if n.kind == BIN and n.files is not None]
        found = finder.find([str(n.files.bin_id) for n in bins])
        for node in bins:
            fresh = found.get(str(node.files.bin_id), ())
            if fresh != node.files.products:
                with self._lock:
                    replaced.append((node, self._replace_files(node, replace(node.files, products=fresh), changes)))

    def _refresh_views(self, changes: list) -> None:
        """Re-check the views: what the root shows of them, and their loaded folders."""
        if not self.views:
            return
        tops = self._tops()
        root = self.root
        if root.children is not None and tops != self._view_tops:
            with self._lock:
                old = root.children
                fresh = {name: n for name, n in old.items() if n.view is None}
                self._with_views(fresh, tops)
                fresh = dict(sorted(fresh.items()))
                for name, child in old.items():
                    if fresh.get(name) is not child:
                        self._drop(child)
                        changes.append(("entry", root.ino, name))
                changes.extend(("inode", n.ino) for n in fresh.values() if n.view is not None)
                root.children = fresh
                changes.append(("inode", root.ino))
        for node in [n for n in list(self.nodes.values()) if n.kind == VDIR and n.children is not None]:
            if node.view.stamp() == node.stamp:
                continue
            stamp, items = self._view_items(node)
            with self._lock:
                if node.children is None or self.nodes.get(node.ino) is not node:
                    continue
                old, fresh = node.children, {}
                for item in sorted(items, key=lambda i: i.name):
                    child, changed = self._view_node(node, node.view, item)
                    fresh[item.name] = child
                    if changed:
                        changes.append(("inode", child.ino))
                for name, child in old.items():
                    if fresh.get(name) is not child:
                        self._drop(child)
                        changes.append(("entry", node.ino, name))
                node.children, node.stamp = fresh, stamp
                if list(fresh) != list(old):
                    changes.append(("inode", node.ino))

    def _replace_files(self, node: Node, files: BinFiles, changes: list) -> Bin | None:
        """Point a bin at its files as they are now; returns the model it had (under the lock)."""
        old = node.model
        node.files, node.mtime_ns = files, files.mtime_ns
        self._unload(node)
        self._live.add(node)
        self._listings.pop(node.ino, None)
        self._rows.pop(node.ino, None)
        changes.append(("inode", node.ino))
        return old

    def _changed_entries(self, node: Node, old: Bin | None, changes: list) -> None:
        """After a bin changed: the kernel forgets its files' attributes and the names now gone.
        A bin that had left memory had its model evicted, not forgotten by the kernel: its files'
        codes are stable, so the new model's say which inodes the kernel may still hold."""
        try:
            new = self.model(node)
            names = {e.name for e in new.entries}
        except FsError:
            new, names = None, set()
        if old is None:
            changes.extend(("inode", node.ino | e.code) for e in (new.entries if new else ()))
            return
        folders = {name.rpartition("/")[0] for name in names}
        gone_folders = set()
        for entry in old.entries:
            changes.append(("inode", node.ino | entry.code))
            if entry.name not in names:
                head, slash, tail = entry.name.rpartition("/")
                parent = node.ino | old.folder_code(head) if slash else node.ino
                changes.append(("entry", parent, tail))
                if slash and head not in folders and head not in gone_folders:
                    gone_folders.add(head)
                    changes.append(("entry", node.ino, head))


def stamp_of_all(stamps: list[tuple[str, int]]) -> int:
    """One stamp for many folders: 0 (cannot tell) if any of them has none."""
    if not stamps or not all(stamp for _, stamp in stamps):
        return 0
    digest = hashlib.blake2b(repr(stamps).encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little") | 1
