"""The players: the ward screen (pygame, libVLC video) and the loudspeakers (PortAudio output,
Piper/espeak-ng speech, libVLC audio, the amplifier), with null players for devices without
them, and the Vietnamese text they render and speak (``normalize`` and its reading tables).

Players import only ``protocol`` and each other; each takes its own small settings (built by
``agent.players`` from the configuration) and reports through ``player.base.PlayerEvents``.
"""
