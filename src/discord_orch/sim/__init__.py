"""The simulation: discord-orch run against a world of its own, no network, no token.

The loopback Discord (``localdiscord``), the stand-in ``openclaw`` (``standin_openclaw``),
the local world and homes wired to it (``world``), a local model server for the real openclaw
(``model_server``), the installer of the pinned real openclaw (``openclaw_install``, run by
scripts/install-openclaw) and ``discord-orch demo`` (``demo``).
Used by ``discord-orch demo``, the tests and the benchmarks; production modules never
import it (tests/test_layout.py checks), only cli.py's ``demo`` command loads it, lazily.
"""
