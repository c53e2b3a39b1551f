"""The views' nodes in the tree: what the views show at the root, their folders, files and
symbolic links, made from what each view (fs.views) lists. Part of `Namespace` (a mixin), as
refresh is.
"""
from __future__ import annotations

import errno
import logging

from ..core.records import Entry
from .nodes import _VIEW_KINDS, LINK, VFILE, FsError, Node

log = logging.getLogger("ifcbfs")


class ViewNodes:
    """The views' part of a `Namespace`."""

    def _tops(self) -> tuple:
        """What each view shows at the root now: (view, item), for those that show (no lock held)."""
        return tuple((view, item) for view in self.views for item in [view.top()] if item is not None)

    def _with_views(self, children: dict[str, Node], tops: tuple) -> None:
        """Add the views to the root's children. A source folder or bin of the same name is
        shown instead, and says so once."""
        self._view_tops = tops
        for view, item in tops:
            taken = children.get(item.name)
            if taken is not None and taken.view is None:
                if self._said.first_time(f"view {item.name}"):
                    log.warning("the source has %s at its root: it is shown, and the %s view is not "
                                "(rename that folder to see the view)", item.name, item.name)
                continue
            children[item.name] = self._view_node(self.root, view, item)[0]

    def _view_node(self, parent: Node, view, item) -> tuple[Node, bool]:
        """The node of a view's item (the one already kept for its path, updated); and whether
        its attributes changed."""
        node = self._add(parent, item.name, _VIEW_KINDS[item.kind], item.mtime_ns)
        changed = (node.size, node.mtime_ns, node.target) != (item.size, item.mtime_ns, item.target)
        node.view = view
        node.source = "" if parent.view is None else f"{parent.source}/{item.name}" if parent.source else item.name
        node.size, node.mtime_ns, node.target = item.size, item.mtime_ns, item.target
        if node.kind == VFILE:  # changes as the view does: opened past the page cache
            node.entry = Entry(item.name, item.size, None, 0, True)
        return node, changed

    def _view_items(self, node: Node) -> tuple[int, list]:
        """A view folder's stamp and items (the stamp first: a change in between shows next time)."""
        stamp = node.view.stamp()
        return stamp, node.view.items(node.source)

    def _load_view(self, node: Node) -> dict[str, Node]:
        stamp, items = self._view_items(node)
        with self._lock:
            if node.children is None:
                node.stamp = stamp
                node.children = {item.name: self._view_node(node, node.view, item)[0]
                                 for item in sorted(items, key=lambda i: i.name)}
            return node.children

    def _view_content(self, node: Node) -> bytes:
        """A view file's bytes, as long as they still have the size it was listed with."""
        key = (node.ino, node.size, node.mtime_ns)
        data = self.cache.get(key)
        if data is None:
            data = node.view.read(node.source)
            if len(data) != node.size:
                raise FsError(errno.EIO, f"{node.path}: changed since it was listed")
            self.cache.put(key, data)
        return data

    def readlink(self, ino: int) -> str:
        """Where a symbolic link points."""
        node = self.node(ino)
        if node.kind != LINK:
            raise FsError(errno.EINVAL)
        return node.target
