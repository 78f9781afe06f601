"""One orchestrator pass (or a watch loop): the facade over the core and its steps.

A pass is the hub's loop (core/hub.py) turning the steps the registry lists
(steps/__init__.py), in order: recovery, presence, controls, running, intake, budget,
claiming, conversation, progress, reporting, prune. Each step is one capability; they
meet in the context (core/step.py) and share the parts built here, each made the first
time a step asks for it, so that an idle pass loads only what it uses
(tests/test_idle_pass.py). docs/design.md walks one task through the steps.

- Discord down at the start of a pass: with agents to supervise (adopted or recovered)
  the pass keeps supervising them, timeouts included, and polls later; with none it ends
  with exit code 4.
- One pass per home works at a time (the home lock); the others log "pass skipped" and exit 0.
- The home unwritable or the disk full: one line and exit 5 (StateError, from the loop or a
  lane); each record change is one SQLite transaction, so none is half written.
- SIGTERM / SIGINT: the pass stops claiming, terminates every running agent with the
  timeout's sequence, records each as ``killed``, tries for at most STOP_DRAIN_CAP_S to post
  their results (the rest stays in the outbox), logs "pass stopped by SIGTERM" and exits
  143 (SIGINT: 130). Tasks claimed but not started run in the next pass.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from .claim import Claims
from .config import Settings
from .core.hub import Hub
from .core.step import Context, PassStats, load_steps
from .discord_api import DiscordClient
from .errors import OrchError
from .models import User
from .state import Store, TaskRecord
from .steps import REGISTRY

if TYPE_CHECKING:
    from .controls import Controls
    from .conversation import Conversations
    from .intake import Intake
    from .openclaw import AgentConfig
    from .reporter import Reporter

log = logging.getLogger("discord_orch")

STRICT_ENV = "DISCORD_ORCH_STRICT_LOOP"   # set by the test suite: any request on the loop thread raises


class Parts:
    """What several steps share, each built the first time it is asked for."""

    def __init__(self, settings: Settings, client: DiscordClient, store: Store, hub: Hub,
                 wall: Callable[[], float]) -> None:
        self.settings, self.client, self.store, self.hub, self.wall = settings, client, store, hub, wall

    def built(self, name: str) -> bool:
        """Whether a part was asked for already (an idle pass builds none of the results side)."""
        return name in self.__dict__

    @functools.cached_property
    def claims(self) -> Claims:
        claims = Claims(self.settings, self.client, self.store, on_fatal=self.hub.fatal, on_done=self.hub.wake)
        self.hub.adopt(claims.start())   # the task lane: every mark on a task message, in order
        return claims

    @functools.cached_property
    def intake(self) -> Intake:
        from .intake import Intake
        from .order import Order

        order = Order(self.settings.host_tags, self.settings.priority_age_s, self.wall)
        return Intake(self.client, self.store, self.claims, self.settings.task_queue_channel, order)

    @functools.cached_property
    def controls(self) -> Controls:
        from .controls import Controls

        return Controls(self.settings, self.client, self.store, self.claims.access, self.claims.identity)

    @functools.cached_property
    def conversations(self) -> Conversations:
        from .conversation import Conversations

        return Conversations(self.settings, self.client, self.store, allows=self.claims.access.allows,
                             guild=self.claims.identity.guild, on_command=self.on_command)

    @functools.cached_property
    def reporter(self) -> Reporter:
        from .reporter import Reporter

        reporter = Reporter(self.settings, self.client, self.store, self.claims.identity, on_fatal=self.hub.fatal,
                            on_done=self.hub.wake, after_post=self._after_post,
                            keeps_open=self.conversations.keeps_open)
        for lane in reporter.start():
            self.hub.adopt(lane)
        return reporter

    def on_command(self, kind: str, task_id: str, user: User, when: float) -> Optional[str]:
        """``stop`` or ``retry`` typed in a task's thread (conversation.py): the one door to the controls.
        Returns what to answer in the thread (None: taken, nothing to say; else why not, in one line)."""
        answer = self.controls.request(kind, task_id, user, when)
        return None if answer.taken else answer.why

    def _after_post(self, rec: TaskRecord) -> None:
        """After a result post (on the results lane): the task's final reaction (a follow-up's answer has
        none; its thread is left for Discord to archive, as the task's). The follow-up window runs from now."""
        self.conversations.answered(rec, self.wall())
        if self.store.root_of(rec.task_id) is None:
            self.claims.react_final(rec)

    @functools.cached_property
    def agent_config(self) -> AgentConfig:
        """How every agent of this pass is run (the timeout is set per task by the running step)."""
        from .openclaw import AgentConfig

        s = self.settings
        return AgentConfig(openclaw_bin=s.openclaw_bin, local=s.agent_local, timeout_s=float(s.timeout_s or 0),
                           kill_grace_s=s.kill_grace_s, cgroup=s.agent_cgroup, sandbox=s.agent_sandbox,
                           sandbox_read=s.sandbox_read_paths, sandbox_write=s.sandbox_write_paths,
                           user_openclaw_config=s.openclaw_config, extra_pythonpath=s.extra_pythonpath,
                           secret_values=(s.token.reveal(),) if s.token else ())

    def agent_config_for(self, rec: TaskRecord) -> AgentConfig:
        """The pass's agent config with the task's own timeout (by its thinking level)."""
        from dataclasses import replace   # AgentConfig's; only when an agent starts

        return replace(self.agent_config, timeout_s=self.settings.timeout_for(rec.thinking))


class Orchestrator:
    """One pass over a home (see the module docstring)."""

    def __init__(self, settings: Settings, client: DiscordClient, store: Store, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings, self.client, self.store = settings, client, store
        self.stats = PassStats()
        self.hub = Hub(clock=clock, watchdog_s=settings.watchdog_s)
        self.parts = Parts(settings, client, store, self.hub, wall)
        self.ctx = Context(settings=settings, client=client, store=store, hub=self.hub, parts=self.parts,
                           stats=self.stats, clock=clock, wall=wall)

    @property
    def claims(self) -> Claims:
        return self.parts.claims

    @property
    def controls(self) -> Controls:
        return self.parts.controls

    @property
    def agent_config(self) -> AgentConfig:
        return self.parts.agent_config

    def run_pass(self, *, watch: bool = False) -> PassStats:
        """One pass (or, with ``watch``, one that never ends by itself) under the home lock."""
        holder = self.store.try_lock()
        if holder is not None:
            who = f"pid {holder}" if holder else "another process"
            log.info("pass skipped: another pass (%s) is working on this home", who)
            self.stats.skipped_locked = True
            return self.stats
        try:
            if self.settings.allow_anyone:
                log.warning("ALLOW_ANYONE=true: anyone who can post in #task-queue can run an agent on this machine")
            self.ctx.watch = watch
            if os.environ.get(STRICT_ENV) == "1":
                self.client.forbid_thread(threading.get_ident())   # this thread runs the hub's loop
            self.hub.run(load_steps(REGISTRY, self.settings), self.ctx)
            return self.stats
        finally:
            self.store.release_lock()

    def request_stop(self, signum: int) -> None:
        """Called from a signal handler: stop claiming, stop agents, record, exit."""
        self.hub.request_stop(signum)

    def wake(self) -> None:
        """Safe from a signal handler (SIGCHLD: an agent ended) and from any thread."""
        self.hub.wake()
        self.ctx.emit("sigchld")

    def raise_if_fatal(self) -> None:
        """Raise the error that ended the pass, if one did (cli.py turns it into an exit code)."""
        if self.hub.fatal_error is not None:
            raise self.hub.fatal_error


__all__ = ["Orchestrator", "OrchError", "PassStats"]
