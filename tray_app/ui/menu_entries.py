"""What the menu offers, as plain data, so the tray menu and the fallback window show the same thing.

The list is rebuilt from the current state each time the menu opens (vorta's pattern): no entry is
ever stale, and an entry whose feature does not exist is simply not in the list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu


@dataclass(frozen=True)
class MenuEntry:
    text: str
    on_click: Callable[[], object] | None = None  # None = an information line (disabled)
    enabled: bool = True
    separator_before: bool = False
    children: tuple[MenuEntry, ...] = field(default=())  # a submenu when not empty
    checked: bool | None = None  # a check box when not None


def fill_menu(menu: QMenu, entries: list[MenuEntry]) -> None:
    """Replace the menu's content with ``entries`` (called each time the menu opens).

    The actions and submenus are made in Python (``QAction(text, menu)``), not by ``addAction(text)``
    / ``addMenu(text)``: objects Qt makes itself keep their Python wrappers (and the connected callbacks)
    alive after ``clear()`` deletes them (PySide6 6.11), about 5 kB a rebuild, for ever. And ``clear()``
    deletes the actions but not the submenus, so those are deleted here.
    """
    for action in menu.actions():
        sub = action.menu()
        if sub is not None and sub.parent() is menu:
            sub.deleteLater()
    menu.clear()
    for entry in entries:
        if entry.separator_before:
            separator = QAction(menu)
            separator.setSeparator(True)
            menu.addAction(separator)
        if entry.children:
            sub = QMenu(entry.text, menu)
            menu.addMenu(sub)
            fill_menu(sub, list(entry.children))
            sub.setEnabled(entry.enabled)
            continue
        action = QAction(entry.text, menu)
        menu.addAction(action)
        if entry.checked is not None:
            action.setCheckable(True)
            action.setChecked(entry.checked)
        if entry.on_click is None:
            action.setEnabled(False)
        else:
            action.setEnabled(entry.enabled)
            action.triggered.connect(lambda _checked=False, f=entry.on_click: f())
