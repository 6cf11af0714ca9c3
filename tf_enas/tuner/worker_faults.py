"""Lost workers in keras-tuner's distributed search: `WorkerFaults`, a mixin for an Oracle.

keras-tuner's chief holds each running trial in `ongoing_trials` until its worker reports
the end, and its server exits only when no trial is ongoing and every worker was told to
stop. A worker killed in the middle of a trial never reports: its trial stays RUNNING and
the chief never returns. `class MyOracle(WorkerFaults, kt.Oracle)` (PolicyOracle is one)
adds, on the chief:

* Heartbeats: every call of a worker counts (create_trial with its id; get_trial,
  update_trial and end_trial for the trial it holds). keras-tuner's workers make no call
  while a trial runs, so `trial_timeout_s` bounds how long a trial may run.
* Restart: a worker restarted under the same KERASTUNER_TUNER_ID gets its unfinished trial
  again (keras-tuner's create_trial answers a worker that holds a trial with that trial).
* Lost workers: a worker silent for more than `trial_timeout_s` is dropped from the
  workers the chief waits for, and its trial is ended as INVALID with a message naming the
  worker; keras-tuner's end_trial then either puts it in the retry queue (counted against
  `max_retries_per_trial`) or marks it FAILED, never both. This is checked on each
  create_trial and, on the chief of a distributed search, by a watchdog thread (the last
  worker may be the one that died). `lost_trials` (saved in the oracle's state) lists
  each loss and its outcome.
* Waiting for retries: a worker that would be told to stop while another worker's trial
  could still be sent for a retry is answered IDLE (after `idle_poll_s`), so that a worker
  is there to run the retry; it is told to stop once no such trial is left.
* Late reports: update_trial and end_trial for a trial that no worker holds and that has
  ended or waits in the retry queue are ignored (logged), so the presumed-dead worker
  cannot end a trial twice or change an ended one. A report cannot say which worker sent
  it: when a retry is running elsewhere, the first end_trial of the trial ends it and the
  other is ignored.
* A search stopped by `max_consecutive_failed_trials`: the trial that hit the limit is no
  longer held (keras-tuner raises before releasing it), and every later create_trial
  answers STOPPED, so the chief exits instead of waiting on it.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import keras_tuner as kt

log = logging.getLogger(__name__)

Trial = kt.engine.trial.Trial
TrialStatus = kt.engine.trial.TrialStatus

DEFAULT_TRIAL_TIMEOUT_S = 3600.0


def _is_distributed_chief() -> bool:
    """Whether this process is the chief of keras-tuner's distributed mode (its rule)."""
    return ("KERASTUNER_ORACLE_IP" in os.environ
            and "chief" in os.environ.get("KERASTUNER_TUNER_ID", ""))


class WorkerFaults:
    """Mixin for a keras-tuner Oracle (list it before kt.Oracle): lost-worker detection,
    retries of lost trials and late-report filtering (see the module docstring).

    Args:
      trial_timeout_s: seconds without a call from a worker after which it counts as lost
        (None: never). keras-tuner's workers do not call the chief while a trial runs, so
        this must exceed the longest trial; default 3600.
    """

    idle_poll_s = 0.1  # pause before an IDLE answer (a worker asks again at once)

    def __init__(self, *args, trial_timeout_s=DEFAULT_TRIAL_TIMEOUT_S, **kwargs):
        super().__init__(*args, **kwargs)
        if trial_timeout_s is not None and not float(trial_timeout_s) > 0:
            raise ValueError(f"trial_timeout_s must be > 0 seconds or None, got "
                             f"{trial_timeout_s!r}")
        self.trial_timeout_s = None if trial_timeout_s is None else float(trial_timeout_s)
        self.clock = time.monotonic  # replaceable in tests
        self.lost_trials = []        # [{"tuner_id", "trial_id", "silent_s", "outcome"}]
        self._heard = {}             # tuner_id → clock() of its last call
        self._stopped_at = None      # _stop_key() of the last STOPPED answer
        self._stop_message = None    # why the search stopped early, if it did
        self._watchdog = None

    # --- heartbeats -------------------------------------------------------------------------
    def _holder(self, trial_id):
        """The tuner id that runs `trial_id` now, or None."""
        return next((t for t, trial in self.ongoing_trials.items()
                     if trial.trial_id == trial_id), None)

    def _heard_from(self, tuner_id):
        if tuner_id is not None:
            self._heard[tuner_id] = self.clock()

    def _late(self, trial_id) -> bool:
        """A report for a trial that no worker holds and that ended or waits for a retry."""
        return (self._holder(trial_id) is None
                and (trial_id in self.end_order or trial_id in self._retry_queue))

    def _start_watchdog(self):
        if (self._watchdog is not None or self.trial_timeout_s is None
                or not _is_distributed_chief()):
            return
        period = min(max(self.trial_timeout_s / 4, 0.05), 10.0)

        def watch():
            while True:
                time.sleep(period)
                try:
                    self.reap_lost_workers()
                except Exception:  # keep watching; the next call retries
                    log.exception("checking for lost keras-tuner workers failed")

        self._watchdog = threading.Thread(target=watch, name="tf_enas-lost-worker-watchdog",
                                          daemon=True)
        self._watchdog.start()

    # --- keras-tuner's Oracle calls -------------------------------------------------------
    def create_trial(self, tuner_id):
        trial = self._create_trial(tuner_id)
        if trial.status == TrialStatus.IDLE:
            time.sleep(self.idle_poll_s)
        return trial

    @kt.synchronized
    def _create_trial(self, tuner_id):
        self._heard_from(tuner_id)
        self._start_watchdog()
        self.reap_lost_workers()
        held = tuner_id in self.ongoing_trials
        if not held and (self._stop_message is not None or (
                not self._retry_queue and self._stopped_at == self._stop_key())):
            # stopped (by the failure limit, or as before: no new sampling, since an idle
            # worker asks 10 times a second)
            self.tuner_ids.discard(tuner_id)
            trial = Trial(self.get_space(), status=TrialStatus.STOPPED,
                          message=self._stop_message)
        else:
            trial = super().create_trial(tuner_id)
            # the worker starts when it gets the answer (sampling the first trial builds
            # the controller, which takes a while)
            self._heard_from(tuner_id)
            if trial.status == TrialStatus.STOPPED:
                self._stopped_at = self._stop_key()
        if (trial.status == TrialStatus.STOPPED and self._stop_message is None
                and self._retry_may_come(tuner_id)):
            self.tuner_ids.add(tuner_id)  # keras-tuner forgot it with the STOPPED answer
            return Trial(self.get_space(), status=TrialStatus.IDLE)
        return trial

    def _stop_key(self):
        """What a STOPPED answer depended on (the budget, the trials, the space)."""
        return self.max_trials, len(self.trials), len(self.hyperparameters.space)

    def _retry_may_come(self, tuner_id) -> bool:
        """Whether a trial of another worker could still be sent for a retry."""
        return any(self._run_times.get(trial.trial_id, 0) < self.max_retries_per_trial
                   for t, trial in self.ongoing_trials.items() if t != tuner_id)

    @kt.synchronized
    def get_trial(self, trial_id):
        self._heard_from(self._holder(trial_id))
        return super().get_trial(trial_id)

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        if self._late(trial_id):
            log.warning("ignored metrics for trial %s: no worker holds it (it %s)", trial_id,
                        self._fate(trial_id))
            return self.trials[trial_id]
        holder = self._holder(trial_id)
        self._heard_from(holder)
        trial = super().update_trial(trial_id, metrics, step)
        self._heard_from(holder)
        return trial

    @kt.synchronized
    def end_trial(self, trial):
        if self._late(trial.trial_id):
            log.warning("ignored the end of trial %s (status %s): no worker holds it (it %s)",
                        trial.trial_id, trial.status, self._fate(trial.trial_id))
            return
        holder = self._holder(trial.trial_id)
        self._heard_from(holder)
        try:
            super().end_trial(trial)
        except RuntimeError as e:
            if trial.trial_id in self.end_order:  # it ended, then the failure limit hit
                self._stop_search(str(e), trial.trial_id)
            raise
        finally:
            self._heard_from(holder)

    def _fate(self, trial_id) -> str:
        if trial_id in self._retry_queue:
            return "waits in the retry queue"
        return f"ended {self.trials[trial_id].status}"

    def _stop_search(self, message, trial_id):
        self._stop_message = message
        holder = self._holder(trial_id)
        if holder is not None:
            self.ongoing_trials.pop(holder)
        log.error("search stopped: %s", message)
        self.save()

    # --- lost workers -----------------------------------------------------------------------
    @kt.synchronized
    def reap_lost_workers(self):
        """Ends the trial of each worker silent for more than trial_timeout_s (a retry or
        FAILED, by keras-tuner's rules) and forgets the worker; returns the new
        `lost_trials` entries."""
        if self.trial_timeout_s is None:
            return []
        now, lost = self.clock(), []
        for tuner_id in sorted(set(self.tuner_ids) | set(self.ongoing_trials)):
            silent = now - self._heard.setdefault(tuner_id, now)
            if silent <= self.trial_timeout_s:
                continue
            trial = self.ongoing_trials.get(tuner_id)
            if trial is not None:
                lost.append(self._lose(tuner_id, trial, silent))
            self.tuner_ids.discard(tuner_id)
            self._heard.pop(tuner_id, None)
        return lost

    def _lose(self, tuner_id, trial, silent) -> dict:
        report = Trial(trial.hyperparameters.copy(), trial_id=trial.trial_id,
                       status=TrialStatus.INVALID)
        report.message = (f"worker {tuner_id!r} was lost: no call from it for {silent:.1f} s "
                          f"(trial_timeout_s={self.trial_timeout_s:g}) while it ran trial "
                          f"{trial.trial_id}")
        try:
            self.end_trial(report)
        except RuntimeError:  # max_consecutive_failed_trials: the search stopped (above)
            pass
        outcome = ("retry" if trial.trial_id in self._retry_queue
                   else self.trials[trial.trial_id].status)
        event = {"tuner_id": tuner_id, "trial_id": trial.trial_id,
                 "silent_s": round(float(silent), 3), "outcome": outcome}
        self.lost_trials.append(event)
        self.save()
        log.warning("%s; trial %s: %s", report.message, trial.trial_id,
                    "sent for a retry" if outcome == "retry" else f"ended {outcome}")
        return event

    # --- state ------------------------------------------------------------------------------
    def get_state(self):
        state = super().get_state()
        state["lost_trials"] = [dict(e) for e in self.lost_trials]
        return state

    def set_state(self, state):
        super().set_state(state)
        self.lost_trials = [dict(e) for e in state.get("lost_trials", [])]
