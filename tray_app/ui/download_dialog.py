"""« Télécharger un modèle… »: the catalogue with a badge for this computer, one recommended file, and the
download (progress, speed, time left, pause, resume, cancel), then « Utiliser ce modèle » / « Optimiser… ».

Slow work never runs on the UI thread: the badges (each file's header read from the hub, then planned)
are computed one file after the other in a worker thread; the download runs in another
(:class:`~tray_app.models.download.Download`). Both report through queued signals.

Signals:
    use_model_requested(object): the downloaded file's ``Path``, to use now.
    optimize_requested(object): the same, to use and then measure with « Optimiser ».
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QCloseEvent, QColor, QFont
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from tray_app.format_fr import about_duration_fr, no_break_fr, percent_fr, size_fr
from tray_app.models.catalogue import CatalogueError, CatalogueFile, catalogue
from tray_app.paths import AppPaths
from tray_app.settings import Settings

if TYPE_CHECKING:
    from tray_app.models.download import Download, DownloadProgress
    from tray_app.planning.catalogue_fit import EntryFit
    from tray_app.planning.fit import Machine

log = logging.getLogger(__name__)

BADGE_COLOURS = {"gpu": "#1b7a3a", "partial": "#8a5a00", "cpu": "#555555", "too_big": "#b00020"}
COLUMNS = ("Modèle", "Taille", "Sur cet ordinateur")


class DownloadDialog(QDialog):
    use_model_requested = Signal(object)
    optimize_requested = Signal(object)
    _fit_ready = Signal(object)
    _fits_done = Signal()
    _progress = Signal(object)
    _finished = Signal(object, str, str)  # (path or None, French message, outcome: done/paused/cancelled/error)

    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        machine: Callable[[], Machine],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.paths = paths
        self._machine = machine  # called in the worker thread (reads NVML)
        self.setWindowTitle(self.tr("Télécharger un modèle — Desktop-Mate"))
        self.setMinimumSize(820, 560)
        self.fits: dict[str, EntryFit] = {}
        self.recommended: str | None = None
        self.download: Download | None = None
        self.downloaded: Path | None = None
        self._closing = threading.Event()
        queued = Qt.ConnectionType.QueuedConnection
        self._fit_ready.connect(self._show_fit, queued)
        self._fits_done.connect(self._show_recommendation, queued)
        self._progress.connect(self._show_progress, queued)
        self._finished.connect(self._on_finished, queued)

        intro = QLabel(no_break_fr(self.tr(
            "Des modèles qui parlent bien français. Pour chacun, Desktop-Mate lit le début du fichier sur "
            "Internet (quelques Mo, sans le télécharger) et calcule comment il tournerait sur cet ordinateur. "
            "Entre parenthèses, la compression du fichier : Q4_K_M est le bon compromis, un chiffre plus petit "
            "donne un fichier plus léger mais des réponses un peu moins justes."
        )))
        intro.setWordWrap(True)
        self.advice = QLabel(self.tr("Calcul de la place de chaque modèle sur cet ordinateur…"))
        self.advice.setWordWrap(True)
        self.advice.setStyleSheet("background: #eef5ee; border: 1px solid #b9d8bd; padding: 8px;")
        self.take_advice = QPushButton(self.tr("Choisir le modèle conseillé"))
        self.take_advice.setEnabled(False)
        self.take_advice.clicked.connect(self._select_recommended)
        advice_row = QHBoxLayout()
        advice_row.addWidget(self.advice, 1)
        advice_row.addWidget(self.take_advice)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels([self.tr(c) for c in COLUMNS])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.items: dict[str, QTreeWidgetItem] = {}
        try:
            entries = catalogue()
        except CatalogueError:
            log.exception("catalogue unreadable")
            entries = ()
        for entry in entries:
            item = QTreeWidgetItem([entry.label, size_fr(entry.size), self.tr("calcul…")])
            item.setData(0, Qt.ItemDataRole.UserRole, entry.key)
            item.setToolTip(0, entry.description_fr)
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.tree.addTopLevelItem(item)
            self.items[entry.key] = item
        self.entries = {e.key: e for e in entries}
        self.tree.currentItemChanged.connect(self._on_selected)

        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setMinimumHeight(40)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.hide()
        self.status = QLabel()
        self.status.setWordWrap(True)

        self.start_button = QPushButton(self.tr("Télécharger"))
        self.start_button.setEnabled(False)
        self.start_button.clicked.connect(self.start_download)
        self.pause_button = QPushButton(self.tr("Pause"))
        self.pause_button.clicked.connect(self.pause_or_resume)
        self.pause_button.hide()
        self.cancel_button = QPushButton(self.tr("Annuler le téléchargement"))
        self.cancel_button.clicked.connect(self.cancel_download)
        self.cancel_button.hide()
        self.use_button = QPushButton(self.tr("Utiliser ce modèle"))
        self.use_button.clicked.connect(self._use)
        self.use_button.hide()
        self.optimize_button = QPushButton(self.tr("Optimiser…"))
        self.optimize_button.clicked.connect(self._optimize)
        self.optimize_button.hide()
        close = QPushButton(self.tr("Fermer"))
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.cancel_button, self.use_button, self.optimize_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(advice_row)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._paused_file: str | None = None
        self._show_pending()
        threading.Thread(target=self._evaluate_all, name="catalogue-badges", daemon=True).start()

    # -- badges (worker thread) --------------------------------------------------------------------
    def _evaluate_all(self) -> None:
        from tray_app.planning.catalogue_fit import PlanWishes, evaluate

        try:
            machine = self._machine()
        except Exception:  # the badges are a help: without them the list still downloads
            log.exception("cannot read this machine for the badges")
            self._fits_done.emit()
            return
        v = self.settings.values
        wishes = PlanWishes(v.context_size, "f16", v.cores_left_for_avatar, v.threads)
        cache = self.paths.cache_dir / "hub-headers"
        for entry in list(self.entries.values()):
            if self._closing.is_set():
                return
            try:
                fit = evaluate(entry, machine, wishes, cache_dir=cache)
            except Exception:  # one file's surprise must not stop the others
                log.exception("badge of %s failed", entry.key)
                continue
            self._fit_ready.emit(fit)
        self._fits_done.emit()

    def _show_fit(self, fit: EntryFit) -> None:
        self.fits[fit.entry.key] = fit
        item = self.items.get(fit.entry.key)
        if item is None:
            return
        if fit.badge is None:
            item.setText(2, self.tr("inconnu (site des modèles injoignable)"))
            item.setToolTip(2, fit.error_fr)
            return
        item.setText(2, fit.badge.text_fr)
        item.setForeground(2, QBrush(QColor(BADGE_COLOURS.get(fit.badge.kind, "#000000"))))
        if fit.header is not None:
            item.setText(1, size_fr(fit.header.file_size))
        if self.tree.currentItem() is item:
            self._on_selected(item, None)

    def _show_recommendation(self) -> None:
        from tray_app.planning.catalogue_fit import recommended_key

        self.recommended = recommended_key(self.fits.values())
        if self.recommended is None:
            if not self.fits or all(f.badge is None for f in self.fits.values()):
                text = self.tr("Le site des modèles (Hugging Face) est injoignable : vérifiez la connexion à "
                               "Internet, puis rouvrez cette fenêtre.")
            else:
                text = self.tr("Aucun de ces modèles ne tiendrait sur cet ordinateur. Le petit modèle de "
                               "démonstration reste disponible.")
            self.advice.setText(no_break_fr(text))
            return
        entry = self.entries[self.recommended]
        fit = self.fits[self.recommended]
        assert fit.badge is not None
        item = self.items[self.recommended]
        font = QFont(item.font(0))
        font.setBold(True)
        for column in range(len(COLUMNS)):
            item.setFont(column, font)
        item.setText(0, f"★ {entry.label}")
        text = self.tr("Notre conseil pour cet ordinateur : <b>{0}</b> ({1}) — {2}. {3}")
        self.advice.setText(no_break_fr(
            text.replace("{0}", entry.label).replace("{1}", size_fr(fit.header.file_size if fit.header else entry.size))
            .replace("{2}", fit.badge.text_fr).replace("{3}", entry.description_fr)
        ))
        self.take_advice.setEnabled(self.download is None)

    def _select_recommended(self) -> None:
        if self.recommended is not None:
            self.tree.setCurrentItem(self.items[self.recommended])

    def _on_selected(self, item: QTreeWidgetItem | None, _previous: object) -> None:
        entry = self._entry_of(item)
        if entry is None:
            self.details.clear()
            self.start_button.setEnabled(False)
            return
        fit = self.fits.get(entry.key)
        where = ""
        if fit is not None and fit.badge is not None:
            plan = fit.badge.plan
            where = self.tr(" Sur cet ordinateur : {0} ({1} couches sur {2} dans la carte graphique).")
            where = where.replace("{0}", fit.badge.text_fr).replace("{1}", str(plan.gpu_layers))
            where = where.replace("{2}", str(plan.n_layers))
        self.details.setText(no_break_fr(
            f"<b>{entry.label}</b> — {entry.params} de paramètres, licence {entry.licence}. "
            f"{entry.description_fr}{where}"
        ))
        self.start_button.setEnabled(self.download is None and not self._too_big(entry))

    def _too_big(self, entry: CatalogueFile) -> bool:
        fit = self.fits.get(entry.key)
        return fit is not None and fit.badge is not None and fit.badge.kind == "too_big"

    def _entry_of(self, item: QTreeWidgetItem | None) -> CatalogueFile | None:
        if item is None:
            return None
        return self.entries.get(str(item.data(0, Qt.ItemDataRole.UserRole)))

    # -- the download -----------------------------------------------------------------------------------
    def _show_pending(self) -> None:
        """A download paused earlier (even before the program was closed): say it can be resumed."""
        from tray_app.models.download import pending_downloads, staging_dir_for

        for pending in pending_downloads(staging_dir_for(self.paths.data_dir)):
            key = f"{pending.repo}/{pending.file}"
            if key in self.items and pending.done:
                self.tree.setCurrentItem(self.items[key])
                self.status.setText(no_break_fr(self.tr(
                    "Téléchargement en pause : {0} sur {1}. Cliquez sur « Télécharger » pour le reprendre."
                ).replace("{0}", size_fr(pending.done)).replace("{1}", size_fr(pending.total))))
                return

    def start_download(self) -> None:
        entry = self._entry_of(self.tree.currentItem())
        if entry is None or self.download is not None:
            return
        from tray_app.models.download import Download, staging_dir_for

        self.download = Download(entry.repo, entry.file, models_dir=self.paths.models_dir,
                                 staging_dir=staging_dir_for(self.paths.data_dir), on_progress=self._progress.emit)
        self._paused_file = entry.key
        self.downloaded = None
        self.tree.setEnabled(False)
        self.start_button.setEnabled(False)
        self.take_advice.setEnabled(False)
        self.use_button.hide()
        self.optimize_button.hide()
        self.pause_button.setText(self.tr("Pause"))
        self.pause_button.show()
        self.cancel_button.show()
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.status.setText(self.tr("Connexion au site des modèles…"))
        job = self.download
        threading.Thread(target=self._run, args=(job,), name="model-download", daemon=True).start()

    def _run(self, job: Download) -> None:
        from tray_app.models.download import DownloadError, DownloadStopped

        try:
            path = job.run()
        except DownloadStopped as stop:
            self._finished.emit(None, "", "cancelled" if stop.cancelled else "paused")
        except DownloadError as exc:
            self._finished.emit(None, exc.message_fr, "error")
        except Exception:  # never a traceback for the user: the log has it
            log.exception("download failed")
            self._finished.emit(None, self.tr("Une erreur inattendue a arrêté le téléchargement ; les détails "
                                              "sont dans le journal. Réessayez."), "error")
        else:
            self._finished.emit(path, "", "done")

    def _show_progress(self, p: DownloadProgress) -> None:
        if self.download is None:
            return
        if p.phase == "metadata":
            return
        self.progress_bar.setValue(int(p.fraction * 1000))
        if p.phase == "download":
            text = self.tr("{0} sur {1} ({2}) — {3}/s").replace("{0}", size_fr(p.done)).replace(
                "{1}", size_fr(p.total)).replace("{2}", percent_fr(p.fraction)).replace("{3}", size_fr(p.speed))
            if p.eta_s is not None:
                text += self.tr(" — reste {0}").replace("{0}", about_duration_fr(p.eta_s))
        elif p.phase == "verify":
            text = self.tr("Vérification du fichier ({0})…").replace("{0}", percent_fr(p.fraction))
        else:
            text = self.tr("Rangement du modèle…")
        self.status.setText(no_break_fr(text))

    def pause_or_resume(self) -> None:
        if self.download is not None:
            self.download.pause()
            self.pause_button.setEnabled(False)
            self.status.setText(self.tr("Mise en pause…"))
        else:
            self.tree.setEnabled(True)
            self.start_download()

    def cancel_download(self) -> None:
        if self.download is not None:
            self.download.cancel()
            self.status.setText(self.tr("Annulation…"))
            return
        from tray_app.models.download import delete_pending, staging_dir_for

        if self._paused_file is not None:  # paused: delete what was downloaded
            repo, _, file = self._paused_file.rpartition("/")
            delete_pending(staging_dir_for(self.paths.data_dir), repo, file)
        self.progress_bar.hide()
        self.status.setText(self.tr("Téléchargement annulé ; la place qu'il prenait est libérée."))
        self._idle_buttons()

    def _on_finished(self, path: Path | None, message: str, outcome: str) -> None:
        self.download = None
        self.pause_button.setEnabled(True)
        if outcome == "paused":
            self.pause_button.setText(self.tr("Reprendre"))
            self.status.setText(no_break_fr(self.tr(
                "En pause. « Reprendre » repart là où le téléchargement s'est arrêté, même après avoir fermé "
                "le programme."
            )))
            return
        self._idle_buttons()
        if outcome == "done" and path is not None:
            self.downloaded = path
            self.progress_bar.setValue(1000)
            self.status.setText(no_break_fr(self.tr(
                "Modèle téléchargé et vérifié : {0}. Utilisez-le maintenant, ou lancez « Optimiser » pour "
                "trouver ses meilleurs réglages sur cet ordinateur (environ une minute)."
            ).replace("{0}", path.name)))
            self.use_button.show()
            self.optimize_button.show()
            self.use_button.setDefault(True)
        elif outcome == "cancelled":
            self.progress_bar.hide()
            self.status.setText(self.tr("Téléchargement annulé ; la place qu'il prenait est libérée."))
        else:
            self.progress_bar.hide()
            self.status.setText(no_break_fr(message))

    def _idle_buttons(self) -> None:
        self.tree.setEnabled(True)
        self.pause_button.hide()
        self.cancel_button.hide()
        self.take_advice.setEnabled(self.recommended is not None)
        entry = self._entry_of(self.tree.currentItem())
        self.start_button.setEnabled(entry is not None and not self._too_big(entry))

    def _use(self) -> None:
        if self.downloaded is not None:
            self.use_model_requested.emit(self.downloaded)
            self.close()

    def _optimize(self) -> None:
        if self.downloaded is not None:
            self.optimize_requested.emit(self.downloaded)
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing pauses a running download (resumed the next time); the badges stop being computed."""
        self._closing.set()
        if self.download is not None:
            self.download.pause()
        super().closeEvent(event)
