"""The UI report the Windows check reads (tray_app/ui/ui_report.py): off by default, and when on it
describes what is on screen, with the accessible names Qt gives screen readers."""

from __future__ import annotations

import json

from PySide6.QtCore import QPoint
from PySide6.QtWidgets import QCheckBox, QDialog, QGridLayout, QLabel, QMenu

from tray_app.ui.ui_report import UI_REPORT_ENV, start_ui_report


def test_off_unless_asked(qapp, monkeypatch):
    monkeypatch.delenv(UI_REPORT_ENV, raising=False)
    assert start_ui_report(lambda: "En veille") is None


def test_menus_and_windows_with_their_texts_and_places(qapp, qtbot, tmp_path, monkeypatch):
    path = tmp_path / "ui.json"
    monkeypatch.setenv(UI_REPORT_ENV, str(path))
    status = ["En veille"]
    report = start_ui_report(lambda: status[0])
    assert report is not None
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["status"] == "En veille" and data["windows"] == []

    menu = QMenu()
    menu.addAction("Paramètres…")
    menu.addSeparator()
    off = menu.addAction("Desktop-Mate : Prêt")
    off.setEnabled(False)
    menu.addAction("Quitter")
    dialog = QDialog()
    dialog.setWindowTitle("Paramètres — Desktop-Mate")
    grid = QGridLayout(dialog)
    box, label = QCheckBox(), QLabel("Journal détaillé")
    label.setBuddy(box)
    grid.addWidget(label, 0, 0)
    grid.addWidget(box, 0, 1)
    dialog.show()
    qtbot.waitExposed(dialog)
    menu.popup(QPoint(100, 100))  # after the dialog: a popup closes when another window comes up
    status[0] = "Prêt"

    def written():
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["status"] == "Prêt" and len(data["windows"]) == 2
        return data

    qtbot.waitUntil(lambda: bool(written()), timeout=3000)
    data = written()
    shown = {w["kind"]: w for w in data["windows"]}
    items = [e for e in shown["menu"]["elements"] if e["role"] == "MenuItem"]
    assert [e["name"] for e in items] == ["Paramètres…", "Desktop-Mate : Prêt", "Quitter"]
    assert [e["enabled"] for e in items] == [True, False, True]
    assert items[0]["rect"][:2] == [100, 100] and items[0]["rect"][2] > 0
    settings = shown["QDialog"]
    assert settings["title"] == "Paramètres — Desktop-Mate"
    check = next(e for e in settings["elements"] if e["role"] == "CheckBox")
    assert check["name"] == "Journal détaillé" and check["checked"] is False

    box.setChecked(True)
    qtbot.waitUntil(lambda: any(e["role"] == "CheckBox" and e["checked"] for w in
                                json.loads(path.read_text(encoding="utf-8"))["windows"] for e in w["elements"]),
                    timeout=3000)
    menu.close()
    dialog.close()
    report.deleteLater()
