"""The players as the configuration describes them, each given its own small settings.

The players never read ``AgentConfig``: this module turns ``[screen]``, ``[speaker]`` and
``[tts]`` into what each player takes, and opens them (or the null players, when a display or
a sound output cannot be opened: the rest of the agent carries on).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.config import AgentConfig, ScreenConfig
from agent.events import Inbox
from agent.outbox import Outbox
from agent.stage import AMPLIFIER_MODE_SETTING, saved_volume
from agent.store import Store
from player.base import PlayerEvents, ScreenPlayer, SpeakerPlayer
from player.layout import Geometry
from player.null import NullScreen, NullSpeaker

if TYPE_CHECKING:  # pygame, numpy and PortAudio load only on a device that has them
    from player.screen import ScreenSettings
    from player.speaker import AudioSpeaker

log = logging.getLogger(__name__)
Report = Callable[[str, str, str], None]  # (severity, code, detail)


def screen_settings(config: ScreenConfig, ward: str, tz: tzinfo) -> ScreenSettings:
    """What the screen takes from ``[screen]`` (``ward``: the device id when no ward name)."""
    from player.screen import ScreenSettings

    return ScreenSettings(
        geometry=Geometry((config.width, config.height), config.frame_region, config.rotation),
        profile=config.profile,
        driver=config.driver,
        fullscreen=config.fullscreen,
        ward=config.ward_name or ward,
        fonts=config.fonts,
        ticker_fps=config.ticker_fps,
        tz=tz,
        video_aout=config.video_aout,
    )


def build_speaker(
    config: AgentConfig, events: PlayerEvents, report: Report, volume: int
) -> AudioSpeaker:
    """The loudspeakers as ``[speaker]`` and ``[tts]`` describe them: output, voices, chime,
    amplifier (raises ``player.output.OutputError`` when the output cannot be opened)."""
    from player.amplifier import Amplifier, GpioSwitch, Switch
    from player.output import open_output
    from player.power import PowerHook
    from player.speaker import AudioSpeaker, audio_decoder
    from player.tts import Tts

    s = config.speaker
    output = open_output(s.output)
    switch: Switch | None = None
    if s.amplifier_gpio:
        chip, line = s.amplifier_gpio.rsplit(":", 1)
        try:
            switch = GpioSwitch(chip, int(line), s.amplifier_active_low)
        except Exception as exc:  # no such chip or line, no gpiod
            log.error("amplifier GPIO %s: %s", s.amplifier_gpio, exc)
            report("error", "amplifier_failed", f"{s.amplifier_gpio}: {exc}")
    elif s.amplifier_on or s.amplifier_off:
        switch = PowerHook(
            "amplifier",
            s.amplifier_on,
            s.amplifier_off,
            10,
            lambda detail: report("warning", "amplifier_power_failed", detail),
        )
    tts = Tts(
        config.tts.voices,
        config.tts.default_voice,
        config.paths.cache_dir,
        lambda code, detail: report("warning", code, detail),
    )
    return AudioSpeaker(
        output,
        tts,
        events,
        decoder=audio_decoder,
        amplifier=Amplifier(switch, s.amplifier_warmup_s, s.amplifier_hold_s),
        chime_file=s.chime_file,
        volume=volume,
        report=report,
    )


def open_screen(
    config: AgentConfig, inbox: Inbox, outbox: Outbox, events: PlayerEvents
) -> ScreenPlayer:
    """The pygame screen when ``[screen] enabled``; the logging null screen otherwise.

    A display that cannot be opened is reported (log and event) and the agent carries on with
    the null screen: the loudspeakers and the proof of play keep working.
    """
    if not config.screen.enabled:
        return NullScreen()
    # Imported here: pygame and libVLC are loaded only on a device with a screen.
    from player.power import PowerHook
    from player.screen import PygameScreen, ScreenError

    def power_failed(detail: str) -> None:
        inbox.report("warning", "screen_power_failed", detail)

    s = config.screen
    hook = None
    if s.power_on or s.power_off:
        hook = PowerHook("screen", s.power_on, s.power_off, s.power_timeout_s, power_failed)
    settings = screen_settings(s, config.device_id, ZoneInfo(config.timezone))
    screen = PygameScreen(settings, events, hook)
    try:
        screen.start()
    except ScreenError as exc:
        log.error("screen: %s; carrying on without it", exc)
        outbox.event("error", "screen_failed", str(exc))
        screen.close()
        return NullScreen()
    return screen


def open_speaker(
    config: AgentConfig, store: Store, inbox: Inbox, outbox: Outbox, events: PlayerEvents
) -> SpeakerPlayer:
    """The audio speaker when ``[speaker] enabled``; the logging null speaker otherwise.

    An output that cannot be opened is reported (log and event) and the agent carries on with
    the null speaker: the screen and the proof of play keep working. The default voice is
    loaded in the background, so that the first announcement (an emergency, perhaps) does not
    wait for it.
    """
    if not config.speaker.enabled:
        return NullSpeaker(events)
    # Imported here: numpy, PortAudio and Piper only on a device with loudspeakers.
    from player.output import OutputError

    volume = saved_volume(store, config.speaker.default_volume)
    try:
        speaker = build_speaker(config, events, inbox.report, volume)
    except OutputError as exc:
        log.error("speaker: %s; carrying on without it", exc)
        outbox.event("error", "speaker_failed", str(exc))
        return NullSpeaker(events)
    if config.tts.voices:
        threading.Thread(target=speaker.tts.warm, name="tts-warm", daemon=True).start()
    mode = store.get_setting(AMPLIFIER_MODE_SETTING)
    if mode in ("on", "off"):
        speaker.set_amplifier("on" if mode == "on" else "off")
    return speaker
