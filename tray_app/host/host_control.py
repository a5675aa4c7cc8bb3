"""The model host as the program runs it, without Qt: used by the tray (through a thin Qt adapter) and by
``serve``.

It plans (model file, memory plan, applied tuning; NVML is read, so the planning methods are for a
worker thread, never a UI thread), starts the gateway, follows the supervisor's events, tells the
monitor what the user should hear about (:class:`~tray_app.monitoring.host_metrics.HostNotice`), applies
the monitor's protection requests, and re-plans when the settings, the model or « Optimiser »'s tuning
change.

Callbacks (``on_change``, ``on_notice``, ``notify``) are called from the thread the change happened on:
the supervisor's event thread, or the caller's. A UI re-emits them on its own thread.

Threads: :meth:`start`, :meth:`use_model`, :meth:`apply_settings` and :meth:`apply_optimization` plan
(blocking, seconds at most); they run one at a time (a lock). Everything else only posts to the
supervisor and returns at once.

Where the model runs: here (the runner), or on another computer of the house (``model_location`` =
``remote``: the gateway relays to :attr:`remote`, whose answers set the state; when it stops answering
the user is told and offered :meth:`use_local_model`). Sharing this computer's model (``share_model``,
off by default) opens the gateway's key-protected network listener; never while a remote model is used
(two computers relaying to each other would loop).

The card's calibration (:mod:`tray_app.hardware.gpu_calibration`): after every load with layers on the
GPU, the runner's graphics memory as NVML sees it (:func:`~tray_app.hardware.gpu.runner_vram`) minus the
device buffers llama.cpp logged is kept in the settings for the next plan; a load that failed for lack of
memory, or the spill the monitor detects, raises it. On the supervisor's event thread (one NVML read).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tray_app.hardware.gpu import GpuReading, NvmlReader, runner_vram
from tray_app.hardware.gpu_calibration import CalibrationBook, card_key, default_overhead
from tray_app.hardware.llama_backend import detect_llama_backend
from tray_app.hardware.llama_buffers import device_buffer_total
from tray_app.host.gateway import PortUnavailable
from tray_app.host.host_state import EventKind, HostEvent, HostState
from tray_app.host.hosting import Host, HostPlan, ModelChoiceError, choose_model, keep_alive_from, plan_host
from tray_app.host.remote import RemoteAddressError, RemoteServer, parse_remote_address
from tray_app.host.runner_errors import FailureKind
from tray_app.host.sharing import new_share_key, share_text_fr
from tray_app.monitoring.history import OtherVramUse
from tray_app.monitoring.host_metrics import HostMetrics, HostNotice, HostNoticeKind
from tray_app.monitoring.protection import ProtectionAction, ProtectionReason, ProtectionRequest
from tray_app.paths import AppPaths
from tray_app.planning.runner_config import RunnerConfig
from tray_app.settings import Settings

log = logging.getLogger(__name__)

RUNNER_LOG = "runner.log"
OPTIMIZING_FR = (
    "Desktop-Mate mesure les performances de l'ordinateur (« Optimiser ») : le modèle reviendra à la fin "
    "des mesures. Réessayez dans une minute."
)
NEW_PORT_LATER_FR = "Le nouveau port de l'API sera utilisé au prochain démarrage du programme."


@dataclass(frozen=True)
class HostOptions:
    """What a command line may say instead of the settings (``serve``); None: the settings'."""

    model: str | None = None
    ctx: int | None = None
    port: int | None = None  # 0: any free port
    keep_alive_s: float | None = None
    remote_address: str | None = None  # another computer's server instead of the settings' choice
    remote_key: str | None = None
    remote_model: str | None = None
    share: bool | None = None  # share this computer's model (with the settings' key, made when missing)
    share_port: int | None = None  # 0: any free port


def _plan_inputs(settings: Settings) -> tuple[int, int, int]:
    """The settings a memory plan depends on: a change of any of them means planning again."""
    v = settings.values
    return v.threads, v.cores_left_for_avatar, v.context_size


class HostControl:
    def __init__(
        self,
        settings: Settings,
        paths: AppPaths,
        *,
        notify: Callable[[str, bool], None],
        on_change: Callable[[], None] = lambda: None,
        on_notice: Callable[[HostNotice], None] = lambda notice: None,
        nvml: NvmlReader | None = None,
        options: HostOptions = HostOptions(),
    ) -> None:
        self.settings = settings
        self.options = options
        self.paths = paths
        self.notify = notify  # (French text, is a warning)
        self.on_change = on_change
        self.on_notice = on_notice
        self.nvml = nvml  # shared with the monitor and the re-optimisation check; None: opened per plan
        self.host: Host | None = None
        self.plan: HostPlan | None = None
        self.state = HostState.IDLE
        self.message = ""
        self._planning = threading.Lock()
        self._unload_asked = False
        self._protecting = False  # protection asked to unload when idle (keep-alive 0 until then)
        self._safer_config: RunnerConfig | None = None  # protection: used from the next load
        self._plan_inputs = _plan_inputs(settings)
        self.reply_hooks: list[Callable[[str], None]] = []  # given to the gateway (see add_reply_hook)
        self.start_error: ModelChoiceError | PortUnavailable | None = None  # why the last start failed
        self.remote: RemoteServer | None = None  # another computer's model, while it is the one used
        self.share_note = ""  # French: the address and key to give the other computers, while shared
        self._remote_was_reachable: bool | None = None
        # What the other programs used on the card lately (the tray gives the monitor's history): the
        # plan's margin is sized from it. None: the cautious default margin.
        self.vram_history: Callable[[], OtherVramUse | None] | None = None
        self._card_before: tuple[int | None, frozenset[int]] | None = None  # card use when a load began

    # -- life (planning: off the UI thread) ------------------------------------------------------
    def start(self) -> None:
        """Plan and open the gateway; the model loads at the first request. Errors are told, not raised."""
        with self._planning:
            try:
                model = choose_model(self.options.model, self.settings)
                self.plan = plan = plan_host(model, self.settings, wanted_ctx=self.options.ctx, nvml=self.nvml,
                                             others=self._others())
            except ModelChoiceError as exc:
                self.start_error = exc
                self._set(HostState.ERROR, exc.message_fr)
                self.notify(exc.message_fr, True)
                return
            self._plan_inputs = _plan_inputs(self.settings)
        self._open(plan)

    def _open(self, plan: HostPlan) -> None:
        port = self.options.port
        host = Host(
            plan,
            port=self.settings.values.api_port if port is None else port,
            allow_other_port=port is None,  # a port asked on the command line is that one or none
            keep_alive_s=self.keep_alive_s,
            log_file=self.paths.log_dir / RUNNER_LOG,
        )
        try:
            host.start()
        except PortUnavailable as exc:
            self.start_error = exc
            self._set(HostState.ERROR, exc.message_fr)
            self.notify(exc.message_fr, True)
            return
        self.host = host
        self.start_error = None
        host.gateway.reply_hooks.extend(self.reply_hooks)
        host.supervisor.add_listener(self._on_host_event)
        if host.gateway.port_notice:
            self.notify(host.gateway.port_notice, True)
        self._set(HostState.IDLE, host.supervisor.status().message)
        log.info("host ready at %s with %s (%s)", host.gateway.api_base, plan.model_path, plan.planner)
        self._apply_location()
        self._apply_sharing()

    def stop(self) -> None:
        self._stop_remote()
        if self.host is not None:
            self.host.close()
            self.host = None

    # -- another computer's model, and sharing ------------------------------------------------------
    @property
    def remote_active(self) -> bool:
        return self.remote is not None

    def _wants_remote(self) -> bool:
        return self.options.remote_address is not None or self.settings.values.model_location == "remote"

    def _apply_location(self) -> None:
        """Use the other computer's model or this one's, as the settings (or the command line) say."""
        host = self.host
        if host is None:
            return
        if not self._wants_remote():
            if self.remote is not None:
                self._stop_remote()
                host.gateway.remote = None
                self._set(host.supervisor.state, host.supervisor.status().message)
                self.notify("Le modèle de cet ordinateur répond de nouveau aux programmes.", False)
            return
        v = self.settings.values
        text = self.options.remote_address if self.options.remote_address is not None else v.remote_address
        key = self.options.remote_key if self.options.remote_key is not None else v.remote_key
        wanted = self.options.remote_model if self.options.remote_model is not None else v.remote_model
        try:
            address = parse_remote_address(text)
        except RemoteAddressError as exc:
            self._stop_remote()
            host.gateway.remote = None
            self._set(HostState.ERROR, exc.message_fr)
            self.notify(exc.message_fr, True)
            return
        current = self.remote
        if current is not None and (current.address, current.key, current.wanted_model) == (address, key, wanted):
            return
        self._stop_remote()
        remote = RemoteServer(address, key, wanted)
        remote.on_change = self._on_remote_change
        self.remote = remote
        self._remote_was_reachable = None
        host.gateway.stop_sharing()  # never both: two computers could relay to each other for ever
        self.share_note = ""
        host.gateway.remote = remote
        self._set(HostState.LOADING, f"Connexion à l'autre ordinateur ({address.label})…")
        remote.start_watching()
        log.info("host: the model of %s is used", address.base_url)

    def _stop_remote(self) -> None:
        remote, self.remote = self.remote, None
        if remote is not None:
            remote.on_change = lambda: None
            remote.stop_watching()

    def _on_remote_change(self) -> None:
        remote = self.remote
        if remote is None:
            return
        reachable = bool(remote.reachable)
        if reachable:
            self._set(HostState.READY, f"Modèle « {remote.model_id} » de l'autre ordinateur ({remote.address.label}).")
            if self._remote_was_reachable is False:
                self.notify(f"L'autre ordinateur ({remote.address.label}) répond de nouveau.", False)
        else:
            self._set(HostState.ERROR, remote.problem_fr)
            if self._remote_was_reachable is not False:
                self.notify(f"{remote.problem_fr} Pour continuer sans lui : menu de l'icône, « Utiliser le modèle "
                            "de cet ordinateur ».", True)
        self._remote_was_reachable = reachable

    def use_local_model(self) -> None:
        """Back to this computer's model (the other computer does not answer, or the user prefers)."""
        self.settings.set("model_location", "local")
        self.settings.save()
        self.options = HostOptions(self.options.model, self.options.ctx, self.options.port, self.options.keep_alive_s,
                                   share=self.options.share, share_port=self.options.share_port)
        self._apply_location()
        self._apply_sharing()

    def _apply_sharing(self) -> None:
        host = self.host
        if host is None:
            return
        v = self.settings.values
        wanted = (self.options.share if self.options.share is not None else v.share_model) and self.remote is None
        if not wanted:
            if host.gateway.share_port:
                host.gateway.stop_sharing()
                self.share_note = ""
                self.notify("Le modèle n'est plus partagé avec les autres ordinateurs.", False)
            return
        key = v.share_key
        if not key:
            key = new_share_key()
            self.settings.set("share_key", key)
            self.settings.save()
        port = self.options.share_port if self.options.share_port is not None else v.share_port
        gateway = host.gateway
        if gateway.share_port and gateway.sharing_key == key and port in (0, gateway.share_port):
            return
        try:
            port = host.gateway.start_sharing(port, key)
        except PortUnavailable as exc:
            self.share_note = ""
            self.notify(exc.message_fr, True)
            return
        self.share_note = share_text_fr(port, key)
        self.notify(f"Modèle partagé avec les ordinateurs de la maison. {self.share_note}", False)

    def add_reply_hook(self, hook: Callable[[str], None]) -> None:
        """``hook(text)`` is called on the gateway's thread with each complete assistant reply (now, or
        once the gateway opens)."""
        self.reply_hooks.append(hook)
        if self.host is not None:
            self.host.gateway.reply_hooks.append(hook)

    def use_model(self, path: Path) -> HostPlan | None:
        """Switch to another model file: saved in the settings, loaded at the next request. None (told)
        when it cannot be used."""
        try:
            plan = self._replan(Path(path))
        except ModelChoiceError as exc:
            self.notify(exc.message_fr, True)
            return None
        self.settings.set("model_path", str(path))
        self.settings.save()
        return plan

    def apply_optimization(self) -> None:
        """« Appliquer » saved new settings: plan again with them (used from the next load)."""
        if self.plan is None:
            self.start()
            return
        try:
            self._replan(self.plan.model_path)
        except ModelChoiceError as exc:
            self.notify(exc.message_fr, True)

    def apply_settings(self) -> None:
        """After « Paramètres » : keep-alive at once; a new plan when what it depends on changed."""
        if self.host is None:
            return
        self.host.supervisor.set_keep_alive(self.keep_alive_s)
        self._apply_location()
        self._apply_sharing()
        if _plan_inputs(self.settings) != self._plan_inputs and self.plan is not None:
            try:
                self._replan(self.plan.model_path)
            except ModelChoiceError as exc:
                self.notify(exc.message_fr, True)
        if self.host.gateway.options.port != self.settings.values.api_port:
            self.notify(NEW_PORT_LATER_FR, False)

    def _replan(self, model_path: Path) -> HostPlan:
        with self._planning:
            plan = plan_host(model_path, self.settings, wanted_ctx=self.options.ctx, nvml=self.nvml,
                             others=self._others())
            self.plan = plan
            self._plan_inputs = _plan_inputs(self.settings)
            host = self.host
        if host is None:  # the gateway never opened (port taken…): try again with this plan
            self._open(plan)
        else:
            host.use_plan(plan)
            self.on_change()
        return plan

    # -- facts -----------------------------------------------------------------------------------
    @property
    def keep_alive_s(self) -> float:
        option = self.options.keep_alive_s
        return keep_alive_from(self.settings) if option is None else option

    @property
    def api_base(self) -> str:
        return self.host.gateway.api_base if self.host is not None else ""

    @property
    def paused(self) -> bool:
        return self.host is not None and self.host.supervisor.paused

    def host_metrics(self) -> HostMetrics | None:
        """For the monitor thread, once a second: cheap and thread-safe."""
        host = self.host
        if host is None:
            return None
        last = host.gateway.metrics.last()
        state = host.supervisor.state
        loaded = state in (HostState.READY, HostState.BUSY)
        plan = self.plan
        status = host.supervisor.status() if loaded else None
        return HostMetrics(
            runner_pid=status.pid if status is not None else None,
            runner_pids=status.pids if status is not None else (),
            tokens_per_second=last.tokens_per_s if last is not None else None,
            baseline_tokens_per_second=plan.measured_gen_tps if plan is not None else None,
            model_loaded=loaded,
        )

    def _set(self, state: HostState, message: str) -> None:
        self.state, self.message = state, message
        self.on_change()

    # -- the supervisor's events (its event thread) ------------------------------------------------
    def _on_host_event(self, event: HostEvent) -> None:
        if self.remote is not None:  # the other computer's model is the one used: its state is shown
            return
        previous = self.state
        if event.kind is EventKind.FALLBACK:
            if event.failure is FailureKind.OUT_OF_MEMORY and self._had_gpu_layers():
                self._calibrate_overflow()
            self.on_notice(HostNotice(HostNoticeKind.RUNNER_RESTARTED_SAFER, detail_fr=event.message))
        elif event.kind is EventKind.RESTART:
            # Its state (« En veille ») is taken below: the STATE event that follows is no idle unload.
            self.on_notice(HostNotice(HostNoticeKind.RUNNER_RESTARTED, detail_fr=event.message))
        elif event.kind is EventKind.STATE:
            if event.state is HostState.LOADING and previous is not HostState.LOADING:
                self._note_card_before_load()
            elif event.state is HostState.READY and previous is HostState.LOADING:
                self._calibrate_after_load(event)
            if event.state is HostState.ERROR:
                self.notify(event.message, True)
            elif event.state is HostState.IDLE and previous in (HostState.READY, HostState.BUSY):
                if not self._unload_asked:
                    keep = self.host.supervisor.keep_alive_s if self.host is not None else 0
                    self.on_notice(HostNotice(HostNoticeKind.MODEL_UNLOADED_IDLE, idle_seconds=keep))
                self._unload_asked = False
            if event.state is HostState.IDLE:
                self._apply_protection_when_idle()
        self._set(event.state, event.message)

    # -- actions (post to the supervisor, return at once) -------------------------------------------
    def load_now(self) -> None:
        if self.host is not None:
            self.host.supervisor.load()

    def unload(self) -> None:
        if self.host is not None:
            self._unload_asked = True
            self.host.supervisor.unload()

    def retry(self) -> None:
        """« Réessayer » after « Erreur » (planning again when the host never started: off the UI thread)."""
        if self.host is None:
            self.start()
        else:
            self.host.supervisor.retry()

    def protect(self, request: ProtectionRequest) -> None:
        """The monitor saw graphics memory stay full: act as it asks (its sentence is already shown).

        « next load safer »: the first rung of the plan's fallback ladder becomes the base configuration,
        applied once the model is out of memory (never in the middle of an answer). « unload when idle »:
        keep-alive 0 until the model has left the memory, then the setting again.
        """
        if self.host is None:
            return
        if request.reason is ProtectionReason.VRAM_OVERFLOW and self._had_gpu_layers():
            self._calibrate_overflow()  # it loaded, but did not fit: the driver took more than reserved
        supervisor = self.host.supervisor
        if ProtectionAction.NEXT_LOAD_SAFER in request.actions and self.plan is not None:
            steps = list(self.plan.ladder(supervisor.base_config))
            if steps:
                self._safer_config = steps[0].config
                log.warning("protection: next load with %s", self._safer_config.to_dict())
        if ProtectionAction.UNLOAD_WHEN_IDLE in request.actions:
            self._protecting = True
            supervisor.set_keep_alive(0)
        if supervisor.state is HostState.IDLE:
            self._apply_protection_when_idle()

    def _apply_protection_when_idle(self) -> None:
        if self.host is None:
            return
        if self._protecting:
            self._protecting = False
            self.host.supervisor.set_keep_alive(self.keep_alive_s)
        if self._safer_config is not None and self.plan is not None:
            config, self._safer_config = self._safer_config, None
            self.host.supervisor.configure(config, self.plan.ladder)

    # -- the card's calibration (the supervisor's event thread) ----------------------------------------
    def _others(self) -> OtherVramUse | None:
        source = self.vram_history
        if source is None:
            return None
        try:
            return source()
        except Exception:  # the history is a refinement: never fail planning because of it
            log.exception("reading the graphics-memory history failed")
            return None

    def _read_gpu(self) -> GpuReading | None:
        reader = self.nvml or NvmlReader()
        try:
            readings = reader.read()
        except Exception:  # a broken driver: no calibration this time
            log.exception("NVML read for the calibration failed")
            return None
        finally:
            if self.nvml is None:
                reader.close()
        return readings[0] if readings else None

    def _had_gpu_layers(self) -> bool:
        host = self.host
        return host is not None and host.supervisor.base_config.n_gpu_layers != 0

    @staticmethod
    def _card_key(reading: GpuReading) -> tuple[str, str]:
        backend = detect_llama_backend(ask_library=False).gpu_backend
        return card_key(reading.name, reading.driver_version, backend), backend

    def _note_card_before_load(self) -> None:
        reading = self._read_gpu()
        self._card_before = None if reading is None else (
            reading.memory_used, frozenset(p.pid for p in reading.processes))

    def _calibrate_after_load(self, event: HostEvent) -> None:
        """NVML's figure for the runner minus llama.cpp's device buffers: this card's driver overhead."""
        host = self.host
        if host is None or event.config is None or event.config.n_gpu_layers == 0:
            return
        status = host.supervisor.status()
        buffers = device_buffer_total(status.engine_buffers)
        reading = self._read_gpu() if buffers > 0 else None
        if reading is None:
            return
        used_before, pids_before = self._card_before or (None, None)
        vram, how = runner_vram(reading, status.pids, pids_before=pids_before, used_before=used_before)
        if vram is None:
            return
        key, _backend = self._card_key(reading)
        book = CalibrationBook.from_settings(self.settings)
        entry = book.learn_from_load(key, vram, buffers)
        book.save(self.settings)
        log.info("card calibrated after load (%s): runner %d MiB, buffers %d MiB, overhead %d MiB", how,
                 vram >> 20, buffers >> 20, entry.overhead >> 20)

    def _calibrate_overflow(self) -> None:
        reading = self._read_gpu()
        if reading is None:
            return
        key, backend = self._card_key(reading)
        book = CalibrationBook.from_settings(self.settings)
        book.learn_from_overflow(key, default_overhead(backend))
        book.save(self.settings)

    # -- « Optimiser » ------------------------------------------------------------------------------
    def pause_for_optimization(self) -> None:
        """The wizard starts measuring: new requests are refused (retry later), the model leaves the memory
        once the answer being written, if any, has ended."""
        if self.host is not None:
            self._unload_asked = self.state is not HostState.IDLE  # not an idle unload: not announced
            self.host.supervisor.pause(OPTIMIZING_FR)
            self.on_change()

    def wait_until_unloaded(self, timeout: float = 150.0) -> None:
        """Block (in the wizard's worker thread) until the runner has gone: its memory is needed. An
        answer being written when the pause began is let finish first (see ``Supervisor.pause``)."""
        if self.host is not None:
            self.host.supervisor.unload(wait=True, timeout=timeout)

    def resume_after_optimization(self) -> None:
        if self.host is not None and self.host.supervisor.paused:
            self.host.supervisor.resume()
            self.on_change()
