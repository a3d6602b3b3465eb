"""The task engine: tasks and their states over time, completion, credits and callbacks."""

import heapq
import http.client
import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import render
from .callbacks import CallbackPoster, sign_callback
from .config import MODEL, STATES
from .files import FetchError
from .wire import Rejection, rate_limited

if TYPE_CHECKING:
    from .server import SandboxServer

logger = logging.getLogger("imagereview.sandbox")


@dataclass
class Task:
    task_id: str
    body: dict[str, Any]
    created: float
    latency: tuple[float, ...]
    price: int
    faults: frozenset[str]
    variation: int = 0
    state: str = ""
    fail_code: str = ""
    fail_msg: str = ""
    completed: float | None = None
    result: bytes | None = None
    callbacks_sent: int = 0
    result_404_pending: bool = False

    @property
    def input(self) -> dict[str, Any]:
        return self.body["input"]

    @property
    def extension(self) -> str:
        return self.input.get("output_format", "png")

    @property
    def credits(self) -> int:
        return self.price if self.state == "success" else 0


class Jobs:
    """Run callables after a delay on a few daemon threads."""

    def __init__(self, name: str, workers: int) -> None:
        self._name = name
        self._workers = workers
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, name=f"{self._name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def after(self, delay: float, job: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), job))
            self._wake.notify()

    def stop(self, timeout: float) -> None:
        """Drop pending jobs and give running ones up to `timeout` seconds to finish."""
        with self._wake:
            self._stopped = True
            self._heap.clear()
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    if self._stopped:
                        return
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        job = heapq.heappop(self._heap)[2]
                        break
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(wait)
            try:
                job()
            except Exception:
                logger.exception("sandbox job failed")


class Engine:
    """Hold the tasks and the account: create, follow, complete and call back."""

    def __init__(self, sandbox: "SandboxServer") -> None:
        self._sandbox = sandbox
        self._lock = threading.RLock()
        self.balance = float(sandbox.config.credits)
        self._held = 0
        self._tasks: dict[str, Task] = {}
        self._prompt_counts: dict[str, int] = {}
        self._creates: deque[float] = deque()
        self._queries: deque[float] = deque()
        self._counter = itertools.count(1)
        self._stopping = threading.Event()
        self._completions = Jobs("sandbox-complete", workers=4)
        self._callbacks = Jobs("sandbox-callback", workers=16)
        self._poster = CallbackPoster()
        self._started = False

    # Life cycle

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._completions.start()
            self._callbacks.start()

    def stop(self) -> None:
        self._stopping.set()
        self._completions.stop(timeout=1.0)
        self._callbacks.stop(timeout=2.0)
        self._poster.close()

    # Account

    def reset_credits(self, credits: float) -> None:
        with self._lock:
            self.balance = float(credits)

    # Tasks

    def create(self, body: dict[str, Any]) -> Task:
        """Create a task from a validated body, within the submit limit and the balance."""
        config = self._sandbox.config
        price = 24 if body["input"].get("resolution") == "4K" else 18
        now = time.time()
        with self._lock:
            _take_slot(self._creates, config.submit_limit, config.submit_window, now)
            if self.balance - self._held < price:
                self._creates.pop()
                raise Rejection(402, "insufficient credits")
            self._held += price
            faults = self._sandbox.dice.task_faults(config)
            early = "early_callback" in faults
            latency = tuple(0.0 if early else config.latency.get(s, 0.0) for s in STATES)
            # Variants of one prompt differ, yet a fresh server replays the same sequence.
            prompt = body["input"]["prompt"]
            variation = self._prompt_counts.get(prompt, 0)
            self._prompt_counts[prompt] = variation + 1
            task = Task(
                task_id=f"task_{MODEL}_{_ms(now)}_{next(self._counter)}",
                body=body,
                variation=variation,
                created=now,
                latency=latency,
                price=price,
                faults=faults,
                result_404_pending="result_404_once" in faults,
            )
            self._tasks[task.task_id] = task
        if early:
            self._complete(task, early=True)
        else:
            self._completions.after(sum(task.latency), lambda: self._complete(task))
        if "timeout" in faults:
            self._stopping.wait(config.timeout_sleep)
        return task

    def take_query_slot(self) -> None:
        config = self._sandbox.config
        with self._lock:
            _take_slot(self._queries, config.query_limit, config.query_window, time.time())

    def find(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def take_missing_once(self, task: Task) -> bool:
        """Whether this fetch of the task's result is the one that answers 404."""
        with self._lock:
            missing_once = task.result_404_pending
            task.result_404_pending = False
        return missing_once

    def summaries(self) -> list[dict[str, Any]]:
        with self._lock:
            tasks = list(self._tasks.values())
        now = time.time()
        return [
            {
                "taskId": task.task_id,
                "state": self.state(task, now)[0],
                "callbacks_sent": task.callbacks_sent,
                "credits": task.credits,
                "created": _ms(task.created),
                "faults": sorted(task.faults),
            }
            for task in tasks
        ]

    def state(self, task: Task, now: float) -> tuple[str, float]:
        """Return the task's state and when it was entered, following the clock."""
        if task.state:
            return task.state, task.completed or task.created
        start = task.created
        for name, seconds in zip(STATES, task.latency, strict=True):
            if now < start + seconds or name == STATES[-1]:
                return name, start
            start += seconds
        raise AssertionError("unreachable")

    def record(self, task: Task) -> dict[str, Any]:
        """The task as recordInfo and the callbacks show it."""
        state, updated = self.state(task, time.time())
        result_json = ""
        if state == "success":
            result_json = json.dumps({"resultUrls": [self._sandbox.files.result_url(task)]})
        completed = task.completed if task.state else None
        return {
            "taskId": task.task_id,
            "model": task.body["model"],
            "state": state,
            "param": json.dumps(task.body),
            "resultJson": result_json,
            "failCode": task.fail_code,
            "failMsg": task.fail_msg,
            "costTime": _ms(completed) - _ms(task.created) if completed else 0,
            "createTime": _ms(task.created),
            "completeTime": _ms(completed) if completed else None,
            "updateTime": _ms(updated),
            "creditsConsumed": task.credits,
        }

    # Completion

    def _complete(self, task: Task, *, early: bool = False) -> None:
        """Render the result, settle the task, then send its callbacks."""
        state, result, fail_code, fail_msg = "success", None, "", ""
        prompt = task.input["prompt"]
        if "[prohibited]" in prompt:
            fail_code, fail_msg = "422", "Invalid prompt: prompt contains prohibited content"
        elif "[fail]" in prompt:
            fail_code, fail_msg = "500", "Internal server error"
        elif "fail_501" in task.faults:
            fail_code, fail_msg = "501", "Image generation failed"
        else:
            try:
                result = self._sandbox.files.render(task)
            except (render.BadReference, FetchError) as exc:
                fail_code, fail_msg = "422", f"Invalid image_input: {exc}"
            except Exception:
                logger.exception("rendering %s failed", task.task_id)
                fail_code, fail_msg = "500", "Internal server error"
        if fail_code:
            state = "fail"
        with self._lock:
            task.result = result
            task.fail_code, task.fail_msg = fail_code, fail_msg
            task.completed = time.time()
            task.state = state
            self._held -= task.price
            if state == "success":
                self.balance -= task.price
        self._send_callbacks(task, early=early)

    # Callbacks

    def _send_callbacks(self, task: Task, *, early: bool) -> None:
        url = task.body.get("callBackUrl")
        if not url:
            return
        if "drop_callback" in task.faults:
            logger.info("callback %s dropped", task.task_id)
            return
        copies = 2 if "duplicate_callback" in task.faults else 1
        if early:
            for _ in range(copies):
                self._post_callback(task, url)
            return
        delay = self._sandbox.config.callback_delay if "delay_callback" in task.faults else 0.0
        for _ in range(copies):
            self._callbacks.after(delay, lambda: self._post_callback(task, url))

    def _post_callback(self, task: Task, url: str) -> None:
        if task.state == "success":
            code, msg = 200, "Playground task completed successfully."
        else:
            code, msg = 501, "Playground task failed."
        payload = {"code": code, "msg": msg, "data": self.record(task)}
        headers = {}
        config = self._sandbox.config
        if config.webhook_hmac_key:
            timestamp = str(int(time.time()))
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = sign_callback(
                config.webhook_hmac_key, task.task_id, timestamp
            )
        with self._lock:
            task.callbacks_sent += 1
        try:
            status = self._poster.post(url, payload, headers)
        except (OSError, http.client.HTTPException) as exc:
            logger.info("callback %s -> %s failed: %r", task.task_id, url, exc)
            return
        if config.log_requests:
            logger.info("callback %s -> %s %d", task.task_id, url, status)


def _take_slot(window: deque[float], limit: int, seconds: float, now: float) -> None:
    """Record a call in a sliding window, or reject it when the window is full."""
    while window and window[0] <= now - seconds:
        window.popleft()
    if len(window) >= limit:
        raise rate_limited(max(1, math.ceil(window[0] + seconds - now)))
    window.append(now)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
