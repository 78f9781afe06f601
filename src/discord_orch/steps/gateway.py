"""Live events (issue 25): under ``orchestrate --watch`` with GATEWAY=auto, a Gateway session
(gateway.py, on its own thread) tells the pass what happened the moment it happens.

- a message in #task-queue: event ``poll_now`` (the intake polls at once);
- a 🛑 / 🔁 added anywhere the bot sees: event ``look_now`` (controls look at once);
- a message in a task's thread (its id is a task's): event ``read_threads`` (follow-ups read at once);
- each READY / RESUMED: ``poll_now`` and ``look_now``, so what was posted while the socket was
  down is read from the REST cursor, which stays the one source of truth (an event is only a
  hint: nothing is claimed from it, so nothing is lost or run twice however events come);
- an interaction: ``/status`` answered ephemerally (commands.py registers it);
- while the session is up, filter ``poll_interval`` stretches the polls to SAFETY_NET_S, unless gate
  ``slow_polls`` says no (a step whose work waits on polls: recovery's unsettled thread starts).

A cron pass (or ``--watch`` with GATEWAY=off) never opens a session: ``bind`` stays idle. Without
the ``live`` extra, or past IDENTIFY_MAX_PER_DAY identifies today (counted in state.db meta
``gateway:identifies``), or after a fatal close (4004, 4013, 4014...), the pass polls as it
always did, and says why once.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional

from ..controls import RETRY_EMOJI, STOP_EMOJI
from ..core.step import Context, Step
from ..errors import DiscordError
from ..gateway import DOWN, EVENT, EXHAUSTED, FATAL, IDENTIFIED, UP, GatewaySession, available

log = logging.getLogger("discord_orch")

SAFETY_NET_S = 300.0   # a poll (and a look) this often while the session is up: 12 reads an idle hour
IDENTIFY_MAX_PER_DAY = 100   # of Discord's 1,000 a day per token: room for other hosts on the same bot
COUNT_KEY = "gateway:identifies"
EPHEMERAL = 1 << 6   # an answer only who asked sees
PAST_THE_BOUND = ("GATEWAY=auto: %d Gateway sessions started today (the bound, of Discord's 1,000 a day per bot "
                  "token): --watch polls until tomorrow (UTC)")


class GatewayStep(Step):
    name = "gateway"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self.session: Optional[GatewaySession] = None
        self.up = False
        self._bot_id = ""
        if not ctx.watch:
            return   # a cron pass never identifies
        if not available():
            log.warning("GATEWAY=auto: the websocket library (websockets>=13) is not installed, so --watch polls "
                        "every %gs (pip install 'discord-orch[live]' for live events)", ctx.settings.poll_interval)
            return
        left = IDENTIFY_MAX_PER_DAY - self._identified_today()
        if left <= 0:
            log.warning(PAST_THE_BOUND, IDENTIFY_MAX_PER_DAY)
            return
        hub, client = ctx.hub, ctx.client
        self.session = GatewaySession(token=ctx.settings.token.reveal(), locate=lambda: client.gateway_bot().url,
                                      deliver=lambda kind, value: hub.call_soon(self._on, kind, value), budget=left)
        self._started = False
        ctx.filter("poll_interval", self._interval)
        ctx.filter("buttons", lambda value: value or self.session is not None)   # clicks are answered here

    def turn(self, now: float) -> None:
        if self.session is not None and not self._started:
            self._started = True
            self.session.start()   # a thread of its own: the loop never waits for the socket

    def close(self, stopped_by: Optional[int]) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.up = False
            self.ctx.submit("gateway", session.stop)   # closing a socket is network I/O: not on the loop

    # -- what the session says (on the loop thread) -----------------------------------
    def _on(self, kind: str, value: Any) -> None:
        if self.session is None:
            return   # the pass is closing
        if kind == EVENT:
            self._event(*value)
        elif kind == UP:
            self.up = True
            log.info("Gateway session %s: tasks, stops and follow-ups are picked up as they are posted; "
                     "polls every %gs as a safety net", "up" if value == "READY" else "resumed", SAFETY_NET_S)
            self.ctx.emit("poll_now")    # what was posted while it was down: read from the cursor
            self.ctx.emit("look_now")
        elif kind == DOWN:
            if self.up:
                log.info("Gateway session down (%s): polling every %gs until it is back", value,
                         self.ctx.settings.poll_interval)
            self.up = False
        elif kind == IDENTIFIED:
            self._count_identify()
        else:
            self.up, self.session = False, None
            if kind == FATAL:
                log.warning("%s; --watch polls every %gs instead", value, self.ctx.settings.poll_interval)
            elif kind == EXHAUSTED:
                log.warning(PAST_THE_BOUND, IDENTIFY_MAX_PER_DAY)
            self.ctx.emit("poll_now")

    def _event(self, kind: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        if kind == "READY":
            return
        channel = str(data.get("channel_id") or "")
        if kind == "MESSAGE_CREATE":
            if channel == self.ctx.settings.task_queue_channel:
                self.ctx.emit("poll_now")
            elif self.ctx.store.get(channel) is not None and not (data.get("author") or {}).get("bot"):
                self.ctx.emit("read_threads")   # a task's thread: a follow-up, or `stop` / `retry`
        elif kind == "MESSAGE_REACTION_ADD":
            if (data.get("emoji") or {}).get("name") in (STOP_EMOJI, RETRY_EMOJI):
                self.ctx.emit("look_now")
        elif kind == "INTERACTION_CREATE":
            self._interaction(data)

    def _interaction(self, data: Dict[str, Any]) -> None:
        """/status answered, only to who asked, within Discord's 3 seconds (the answer goes out on a lane of
        its own, behind nothing); anything else (not built yet) answered so, rather than left to fail."""
        from ..status import gather, render

        iid, token = str(data.get("id") or ""), str(data.get("token") or "")
        if data.get("type") == 3:
            self._click(iid, token, data)
            return
        if data.get("type") == 4:
            self._complete(iid, token, data)
            return
        name = (data.get("data") or {}).get("name") if data.get("type") == 2 else None
        if name == "task":
            self._task(iid, token, data)
            return
        if name == "status":
            text = render(gather(self.ctx.settings, self.ctx.store, self.ctx.wall()))
            content = "```\n" + (text if len(text) <= 1900 else text[:1900] + "\n…") + "\n```"
        else:
            content = "discord-orch does not answer this here yet: react 🛑 / 🔁 on the task's message instead."
        answer = {"type": 4, "data": {"content": content, "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}}
        client = self.ctx.client

        def job() -> None:
            try:
                client.answer_interaction(iid, token, answer)
            except DiscordError as exc:   # 10062: too late; 40060: answered already (by another host?)
                log.warning("an interaction (/%s) could not be answered: %s", name or "a button", exc)

        self.ctx.submit("interactions", job)

    def _complete(self, iid: str, token: str, data: Dict[str, Any]) -> None:
        """/task's model, as it is typed: the aliases (this host's, MODEL_ALIASES included) that start so."""
        typed = next((str(o.get("value") or "") for o in (data.get("data") or {}).get("options") or []
                      if o.get("focused")), "").strip().lower()
        aliases = self.ctx.settings.aliases
        choices = [{"name": f"{alias} ({model})"[:100], "value": alias}
                   for alias, model in sorted(aliases.items()) if alias.lower().startswith(typed)][:25]
        client = self.ctx.client

        def job() -> None:
            try:
                client.answer_interaction(iid, token, {"type": 8, "data": {"choices": choices}})
            except DiscordError as exc:
                log.warning("the models could not be offered: %s", exc)

        self.ctx.submit("interactions", job)

    def _task(self, iid: str, token: str, data: Dict[str, Any]) -> None:
        """/task: posted in #task-queue by the bot with a header naming the user (claim.Claims.as_posted makes
        it theirs), after the checks a typed task gets (its tags; may this user run tasks), or why not."""
        from ..errors import AttachmentTooLarge
        from ..models import FileUpload, User
        from ..tasks import format_task_message, posted_for_header, tag_problems

        opts = {str(o.get("name")): o.get("value") for o in (data.get("data") or {}).get("options") or []}
        text = str(opts.get("text") or "").strip()
        needs = [n for n in str(opts.get("needs") or "").replace(",", " ").split() if n]
        tags = {"model_alias": opts.get("model") or None, "thinking": opts.get("thinking") or None,
                "needs": needs, "priority": opts.get("priority") or None}
        user = User.from_json((data.get("member") or {}).get("user") or data.get("user") or {"id": "0"})
        problems = tag_problems(aliases=self.ctx.settings.aliases, **tags) if text else ("the task is empty",)
        ctx, client, access = self.ctx, self.ctx.client, self.ctx.parts.claims.access
        queue, identity = ctx.settings.task_queue_channel, ctx.parts.claims.identity
        resolved = ((data.get("data") or {}).get("resolved") or {}).get("attachments") or {}
        att = resolved.get(str(opts.get("file"))) if opts.get("file") else None
        most = int(ctx.settings.input_max_mb * 1024 * 1024)

        def job() -> None:
            try:
                if problems:
                    said = "not posted: " + "; ".join(problems)
                elif not access.allows(user):
                    said = f"not posted: {user.username or user.id} may not run tasks here"
                else:
                    files = [FileUpload(str(att["filename"]), client.download(str(att["url"]), max_bytes=most))] \
                        if att else []
                    msg = client.create_message(queue, posted_for_header(user.username, user.id) + " "
                                                + format_task_message(text, **tags), files=files)
                    said = f"posted: https://discord.com/channels/{identity.guild()}/{queue}/{msg.id}"
            except AttachmentTooLarge:
                said = f"not posted: the file is larger than INPUT_MAX_MB ({ctx.settings.input_max_mb:g} MiB)"
            except DiscordError as exc:   # roles unknown now, the post refused: said, and the pass goes on
                said = f"not posted: {exc}"
            try:
                client.answer_interaction(iid, token, {"type": 4, "data": {
                    "content": said[:2000], "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}})
            except DiscordError as exc:
                log.warning("/task from %s could not be answered: %s", user.id, exc)

        ctx.submit("interactions", job)

    def _click(self, iid: str, token: str, data: Dict[str, Any]) -> None:
        """A Stop / Retry button (its id: ``stop:<task>``), the same door as 🛑 / 🔁 (controls.Controls.request):
        who may is answered, only to them, when not. A task this host does not hold (another host claimed it)
        is handed over through Discord: the bot's own 🛑 / 🔁 on the task message, which the host that holds it
        looks for (at once with its Gateway, else at its next look)."""
        from ..controls import EMOJI_OF
        from ..models import User

        kind, _, task = str((data.get("data") or {}).get("custom_id") or "").partition(":")
        user = User.from_json((data.get("member") or {}).get("user") or data.get("user") or {"id": "0"})
        ctx, controls, client = self.ctx, self.ctx.parts.controls, self.ctx.client
        rec = ctx.store.get(task) if task.isdigit() else None
        backlog = {m.id: m.author.id for m in ctx.parts.intake.backlog}
        held = (rec is not None and rec.status != "elsewhere") or task in backlog
        queue, wall = ctx.settings.task_queue_channel, ctx.wall

        def job() -> None:
            try:
                if kind not in EMOJI_OF or not task.isdigit():
                    text = "this button is not one discord-orch knows"
                elif held:
                    answer = controls.request(kind, task, user, wall(), author_id=backlog.get(task))
                    text = f"{EMOJI_OF[kind]} {kind} asked" if answer.taken else f"not done: {answer.why}"
                elif controls.may(user, client.get_message(queue, task).author.id):
                    client.add_reaction(queue, task, EMOJI_OF[kind])   # the host that holds the task acts on it
                    text = f"{EMOJI_OF[kind]} {kind} asked (handed to the host that holds the task)"
                else:
                    text = f"{user.username or user.id} may not {kind} this task"
                client.answer_interaction(iid, token, {"type": 4, "data": {
                    "content": text, "flags": EPHEMERAL, "allowed_mentions": {"parse": []}}})
            except DiscordError as exc:
                log.warning("task=%s: a %s button could not be answered: %s", task, kind, exc)

        ctx.submit("interactions", job)

    def _interval(self, value: float) -> float:
        return max(value, SAFETY_NET_S) if self.up and self.ctx.allows("slow_polls") else value

    # -- the daily count of identifies (state.db meta: "<UTC day> <count>") -------------
    def _identified_today(self) -> int:
        day, _, count = (self.ctx.store.get_meta(COUNT_KEY) or "").partition(" ")
        return int(count) if day == _today() and count.isdigit() else 0

    def _count_identify(self) -> None:
        self.ctx.store.set_meta(COUNT_KEY, f"{_today()} {self._identified_today() + 1}")


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


STEP = GatewayStep
