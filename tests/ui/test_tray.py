"""The tray shell with real Qt widgets, offscreen."""

import json
import os
import subprocess
import sys
import time

import pytest
from PySide6.QtWidgets import QCheckBox, QLabel, QPushButton, QSpinBox

from tests.conftest import REPO
from tray_app.paths import app_paths
from tray_app.settings import Settings
from tray_app.ui.icons import IconState, state_icon
from tray_app.ui.settings_dialog import SettingsDialog
from tray_app.ui.single_instance import SingleInstance
from tray_app.ui.tray import TrayController, TrayStatus

EXPECTED_MENU = ["Paramètres…", "Ouvrir le dossier des journaux", "À propos", "Quitter"]


@pytest.fixture
def controller(qtbot):
    paths = app_paths()
    c = TrayController(Settings.load(paths.settings_file), paths, use_tray=False)
    qtbot.addWidget(c.window)
    yield c
    c.close()


def menu_texts(c: TrayController) -> list[str]:
    c.rebuild_menu()
    return [a.text() for a in c.menu.actions() if not a.isSeparator()]


def test_menu_is_french_and_lists_only_what_exists(controller):
    texts = menu_texts(controller)
    assert texts[0].startswith("Desktop-Mate : En veille")
    assert texts[1:] == EXPECTED_MENU
    status = controller.menu.actions()[0]
    assert not status.isEnabled()  # an information line, not an action


def test_menu_follows_the_state_each_time_it_opens(controller):
    controller.set_status(TrayStatus("Prêt", IconState.READY))
    assert menu_texts(controller)[0] == "Desktop-Mate : Prêt"


def test_rebuilding_the_menu_and_window_keeps_no_old_widgets(controller, qtbot):
    """Each open of the menu and each state change (fallback window) rebuilds them: nothing may pile up."""
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QMenu, QWidget

    from tray_app.ui.menu_entries import MenuEntry

    sub = MenuEntry("Choisir un modèle", children=(MenuEntry("a", lambda: None), MenuEntry("b", lambda: None)))
    controller.sections.append(lambda: [sub])

    def widgets() -> tuple[int, int, int]:
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        wrappers = sum(1 for o in gc.get_objects() if isinstance(o, QAction))  # Python side, callbacks held
        return len(controller.menu.findChildren(QMenu)), len(controller.window.findChildren(QWidget)), wrappers

    controller.rebuild_menu()
    first = widgets()
    for n in range(30):
        controller.set_status(TrayStatus(f"Occupé {n}", IconState.BUSY))  # the window is rebuilt
        controller.rebuild_menu()
    assert widgets() == first and first[0] == 1


def test_fallback_window_messages_share_one_box_showing_the_latest(controller, qtbot):
    from PySide6.QtWidgets import QMessageBox

    for n in range(5):
        controller.notify(f"Message {n}", warning=n == 4)
    boxes = controller.window.findChildren(QMessageBox)
    assert len(boxes) == 1 and boxes[0].isVisible()
    assert boxes[0].text() == "Message 4" and boxes[0].icon() is QMessageBox.Icon.Warning
    boxes[0].close()
    controller.notify("Encore")
    assert controller.window.findChildren(QMessageBox) == boxes and boxes[0].isVisible()


def test_fallback_window_offers_the_same_actions_and_says_why(controller):
    buttons = [b.text() for b in controller.window.findChildren(QPushButton)]
    assert buttons == EXPECTED_MENU
    labels = " ".join(lbl.text() for lbl in controller.window.findChildren(QLabel))
    assert "zone de notification" in labels


def test_quit_from_the_window_emits_quit(controller, qtbot):
    quit_button = [b for b in controller.window.findChildren(QPushButton) if b.text() == "Quitter"][0]
    with qtbot.waitSignal(controller.quit_requested, timeout=1000):
        quit_button.click()


def test_every_state_has_an_icon():
    for state in IconState:
        assert not state_icon(state).isNull(), state


def test_settings_dialog_saves_valid_values(qtbot):
    settings = Settings.load(app_paths().settings_file)
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    threads = dialog._editors["threads"][1]
    assert isinstance(threads, QSpinBox) and threads.specialValueText() == "Automatique"
    threads.setValue(4)
    verbose = dialog._editors["verbose_log"][1]
    assert isinstance(verbose, QCheckBox)
    verbose.setChecked(True)
    dialog.accept()
    saved = json.loads(app_paths().settings_file.read_text(encoding="utf-8"))["settings"]
    assert saved["threads"] == 4 and saved["verbose_log"] is True


def test_settings_dialog_has_one_tab_per_section_in_order(qtbot):
    from tray_app.settings_schema import SECTIONS, SETTINGS

    dialog = SettingsDialog(Settings.load(app_paths().settings_file))
    qtbot.addWidget(dialog)
    tabs = [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]
    used = {spec.section for spec in SETTINGS if spec.label}
    assert tabs == [name for name in SECTIONS if name in used]
    assert set(dialog._editors) == {spec.key for spec in SETTINGS if spec.label}


def test_settings_dialog_cancel_changes_nothing(qtbot):
    settings = Settings.load(app_paths().settings_file)
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    dialog._editors["threads"][1].setValue(7)
    dialog.reject()
    assert settings.get("threads") == 0
    assert not app_paths().settings_file.exists()


def test_second_instance_asks_the_first_to_show(qtbot):
    name = f"dm-test-{os.getpid()}-{time.monotonic_ns()}"
    first = SingleInstance(name)
    assert not first.ask_running_copy_to_show(200)  # nobody there yet
    assert first.listen()
    second = SingleInstance(name)
    with qtbot.waitSignal(first.show_requested, timeout=3000):
        assert second.ask_running_copy_to_show()
    first.close()


def test_program_without_a_screen_says_so_in_french(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "tray_app"], capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=30)
    assert result.returncode == 2
    assert "Aucun écran" in result.stderr and "serve" in result.stderr


def test_second_copy_of_the_program_exits_and_the_first_stays(tmp_path):
    ready = tmp_path / "ready"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DESKTOP_MATE_READY_FILE=str(ready))
    first = subprocess.Popen([sys.executable, "-m", "tray_app"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "first copy never showed its window"
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-m", "tray_app"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 0
        assert "déjà lancé" in second.stdout
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(10)


def test_wrapped_french_never_breaks_inside_guillemets_or_before_a_colon():
    from tray_app.format_fr import no_break_fr

    assert no_break_fr("Cliquez sur « Optimiser » : c'est fini ? Oui !") == (
        "Cliquez sur «\u00a0Optimiser\u00a0»\u00a0: c'est fini\u00a0? Oui\u00a0!"
    )
