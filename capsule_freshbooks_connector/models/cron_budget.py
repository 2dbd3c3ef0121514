"""How long one execution of a scheduled job may work: well inside Odoo's worker limits.

Odoo's prefork server kills a cron worker whose unit of work (every job it runs in one pass,
each up to 10 times in a row when it reports remaining work) outlasts `--limit-time-real-cron`
(by default `--limit-time-real`, 120 s) or `--limit-time-cpu` (60 s). It sets a new CPU limit
(RLIMIT_CPU) for each such unit: an execution takes a share of what the limits leave of it,
so that the next executions of the same pass still fit.
"""

import resource
import threading
import time

from odoo.tools import config

# Of what the limits leave, one execution works this share; the rest is for what follows it
# (the queue, the pushes, its log) and for the next executions of the same pass.
SHARE = 0.4
# However generous the limits, an execution stops after this long: webhook hints and pushes
# then get their turn, and a deploy waits for no more than this.
MAX_SECONDS = 60.0
# Less than this left: the pass is spent; the job is triggered again, for a pass of its own.
MIN_SECONDS = 1.0

# The prefork worker's current unit of work: its CPU limit, and when this process first saw it.
_pass = {}


def cpu_seconds():
    """CPU time of this process, every thread included (what RLIMIT_CPU counts)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def real_limit():
    """Odoo's real-time limit of a cron job, in seconds (None: no limit)."""
    limit = config.get("limit_time_real_cron")
    if limit is None or limit < 0:
        limit = config.get("limit_time_real")
    return limit if limit and limit > 0 else None


class Budget:
    """A deadline in real time and one in CPU time; None is no limit."""

    def __init__(self, real=None, cpu=None):
        self.real_deadline = None if real is None else time.monotonic() + real
        self.cpu_deadline = None if cpu is None else cpu_seconds() + cpu

    def spent(self):
        return (self.real_deadline is not None and time.monotonic() >= self.real_deadline) or (
            self.cpu_deadline is not None and cpu_seconds() >= self.cpu_deadline)

    def left(self):
        """Seconds left, the tighter of the two (None: no limit)."""
        lefts = [deadline - now for deadline, now in (
            (self.real_deadline, time.monotonic()), (self.cpu_deadline, cpu_seconds()))
            if deadline is not None]
        return min(lefts) if lefts else None


def for_cron():
    """The budget of this execution of a cron job."""
    soft = resource.getrlimit(resource.RLIMIT_CPU)[0]
    started = getattr(threading.current_thread(), "start_time", None)  # threaded server
    if started is None and soft != resource.RLIM_INFINITY:
        # Prefork: a new CPU limit is a new unit of work, and so is one we said was spent.
        if _pass.get("soft") != soft or _pass.get("spent"):
            _pass.clear()
            _pass.update(soft=soft, started=time.time())
        started = _pass["started"]
    limit = real_limit()
    real_left = limit - (time.time() - started) if limit and started else None
    cpu_left = soft - cpu_seconds() if soft != resource.RLIM_INFINITY else None
    shares = [SHARE * left for left in (real_left, cpu_left) if left is not None]
    budget = min([MAX_SECONDS, *shares])
    return Budget(real=budget, cpu=SHARE * cpu_left if cpu_left is not None else None)


def end_pass():
    """This pass is spent: the next execution, in a pass of its own, measures afresh."""
    _pass["spent"] = True
