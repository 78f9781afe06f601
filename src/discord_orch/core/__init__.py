"""The core of a pass: the hub (its loop, inbox, timers, lanes, signals, the end of a pass), the step
interface and the context steps share, the lanes, the waker and the watchdog. It knows no capability:
those are steps (discord_orch.steps), given to it as a list; it imports nothing of the project but errors.
"""
