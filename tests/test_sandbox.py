import base64
import hashlib
import hmac
import io
import json
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from imagereview.providers.sandbox import SandboxConfig, SandboxServer, render
from imagereview.providers.sandbox.callbacks import CallbackPoster

KEY = "test-key"
INSTANT = {"waiting": 0.0, "queuing": 0.0, "generating": 0.0}


@dataclass
class Callback:
    received: float
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    url: str
    callbacks: "queue.Queue[Callback]" = field(default_factory=queue.Queue)

    def next(self, timeout: float = 5.0) -> Callback:
        return self.callbacks.get(timeout=timeout)


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(api_key=KEY, latency=dict(INSTANT), query_limit=1000)
    server = SandboxServer(config).start()
    yield server
    server.stop()


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with _http(sandbox, headers=headers) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    callbacks: queue.Queue[Callback] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            callbacks.put(Callback(time.monotonic(), dict(self.headers), body))
            reply = b'{"code": 200, "msg": "success"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/callbacks/1", callbacks)
    server.shutdown()
    server.server_close()
    thread.join()


def _http(sandbox: SandboxServer, **options: Any) -> httpx.Client:
    # The sandbox is plain http; skipping the CA bundle keeps each test fast.
    return httpx.Client(base_url=sandbox.url, timeout=10, verify=False, **options)


def _create(
    client: httpx.Client,
    prompt: str = "a lighthouse at dusk",
    *,
    callback: str | None = None,
    **params: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"model": "nano-banana-pro", "input": {"prompt": prompt, **params}}
    if callback:
        body["callBackUrl"] = callback
    return client.post("/api/v1/jobs/createTask", json=body)


def _task_id(response: httpx.Response) -> str:
    assert response.json()["code"] == 200, response.text
    return response.json()["data"]["taskId"]


def _record(client: httpx.Client, task_id: str) -> dict[str, Any]:
    reply = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()
    assert reply["code"] == 200, reply
    return reply["data"]


def _wait_final(client: httpx.Client, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}).json()
        if reply["code"] == 429:
            # Polled past the query limit while the render was slow: wait, as a client must.
            time.sleep(0.5)
            continue
        assert reply["code"] == 200, reply
        if reply["data"]["state"] in ("success", "fail"):
            return reply["data"]
        time.sleep(0.02)
    raise AssertionError(f"{task_id} did not finish in {timeout} s")


def _result_url(record: dict[str, Any]) -> str:
    return json.loads(record["resultJson"])["resultUrls"][0]


def _generate(client: httpx.Client, prompt: str = "a lighthouse at dusk", **params: Any) -> bytes:
    record = _wait_final(client, _task_id(_create(client, prompt, **params)))
    response = client.get(_result_url(record))
    assert response.status_code == 200
    return response.content


def _reference_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return buffer.getvalue()


def _upload(client: httpx.Client, content: bytes, name: str = "ref.jpg") -> dict[str, Any]:
    response = client.post(
        "/api/file-stream-upload",
        files={"file": (name, content, "application/octet-stream")},
        data={"uploadPath": "references/tests"},
    )
    assert response.json()["success"] is True, response.text
    return response.json()["data"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", KEY])
def test_create_task_rejects_bad_key(sandbox: SandboxServer, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with _http(sandbox, headers=headers) as anonymous:
        response = _create(anonymous)

    assert response.status_code == 200
    assert response.json()["code"] == 401
    assert sandbox.tasks == []


@pytest.mark.parametrize(
    ("change", "field_name"),
    [
        ({"prompt": ""}, "input.prompt"),
        ({"prompt": "x" * 10_001}, "input.prompt"),
        ({"aspect_ratio": "7:5"}, "input.aspect_ratio"),
        ({"resolution": "8K"}, "input.resolution"),
        ({"output_format": "jpeg"}, "input.output_format"),
        ({"image_input": ["ftp://example.com/a.png"]}, "input.image_input"),
        ({"image_input": ["https://example.com/a.png"] * 9}, "input.image_input"),
    ],
)
def test_create_task_rejects_invalid_input(
    client: httpx.Client, sandbox: SandboxServer, change: dict[str, Any], field_name: str
) -> None:
    body = {"model": "nano-banana-pro", "input": {"prompt": "a lighthouse", **change}}

    reply = client.post("/api/v1/jobs/createTask", json=body).json()

    assert reply["code"] == 422
    assert field_name in reply["msg"]
    assert sandbox.tasks == []


def test_create_task_rejects_unknown_model(client: httpx.Client) -> None:
    body = {"model": "nano-banana", "input": {"prompt": "a lighthouse"}}

    reply = client.post("/api/v1/jobs/createTask", json=body).json()

    assert reply["code"] == 422
    assert "model" in reply["msg"]


def test_create_task_accepts_the_longest_prompt(client: httpx.Client) -> None:
    assert _create(client, "x" * 10_000).json()["code"] == 200


def test_task_ids_are_unique(client: httpx.Client) -> None:
    ids = {_task_id(_create(client)) for _ in range(5)}

    assert len(ids) == 5
    assert all(task_id.startswith("task_nano-banana-pro_") for task_id in ids)


def test_task_moves_through_states_to_success(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.configure(latency={"waiting": 0.15, "queuing": 0.15, "generating": 0.15})
    balance = client.get("/api/v1/chat/credit").json()["data"]
    task_id = _task_id(_create(client, "a red fox", aspect_ratio="1:1", resolution="1K"))

    states = []
    while not states or states[-1] not in ("success", "fail"):
        record = _record(client, task_id)
        if not states or states[-1] != record["state"]:
            states.append(record["state"])
        time.sleep(0.02)

    assert states == ["waiting", "queuing", "generating", "success"]
    assert record["taskId"] == task_id
    assert record["model"] == "nano-banana-pro"
    assert json.loads(record["param"])["input"]["prompt"] == "a red fox"
    assert record["failCode"] == ""
    assert record["creditsConsumed"] == 18
    assert record["completeTime"] >= record["createTime"] + 450
    assert record["costTime"] == record["completeTime"] - record["createTime"]
    assert client.get("/api/v1/chat/credit").json()["data"] == balance - 18
    response = client.get(_result_url(record))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert (image.format, image.size) == ("PNG", (1024, 1024))


def test_record_info_has_no_completion_before_the_end(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.configure(latency={"generating": 60})
    record = _record(client, _task_id(_create(client)))

    assert record["state"] == "generating"
    assert record["completeTime"] is None
    assert record["resultJson"] == ""
    assert record["creditsConsumed"] == 0


def test_result_has_requested_size_and_format(client: httpx.Client) -> None:
    content = _generate(client, aspect_ratio="16:9", resolution="2K", output_format="jpg")

    image = Image.open(io.BytesIO(content))
    assert (image.format, image.size) == ("JPEG", (2752, 1536))


def test_result_is_served_with_its_content_type(client: httpx.Client) -> None:
    record = _wait_final(client, _task_id(_create(client, output_format="jpg")))

    response = client.get(_result_url(record))

    assert _result_url(record).endswith("/0.jpg")
    assert response.headers["Content-Type"] == "image/jpeg"


def test_same_prompt_renders_the_same_sequence_of_variants(client: httpx.Client) -> None:
    first = hashlib.sha256(_generate(client, "a blue whale")).hexdigest()
    second = hashlib.sha256(_generate(client, "a blue whale")).hexdigest()
    other = hashlib.sha256(_generate(client, "a green whale")).hexdigest()
    config = SandboxConfig(api_key=KEY, latency=dict(INSTANT))
    fresh = SandboxServer(config).start()
    try:
        with _http(fresh, headers={"Authorization": f"Bearer {KEY}"}) as fresh_client:
            replayed = hashlib.sha256(_generate(fresh_client, "a blue whale")).hexdigest()
    finally:
        fresh.stop()

    assert first != second, "two variants of one prompt must differ"
    assert first != other
    assert replayed == first


def test_signed_callback_arrives(
    client: httpx.Client, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure(webhook_hmac_key="hook-secret")
    task_id = _task_id(_create(client, callback=receiver.url))

    callback = receiver.next()

    timestamp = callback.headers["X-Webhook-Timestamp"]
    digest = hmac.new(b"hook-secret", f"{task_id}.{timestamp}".encode(), hashlib.sha256)
    expected = base64.b64encode(digest.digest()).decode()
    assert hmac.compare_digest(callback.headers["X-Webhook-Signature"], expected)
    assert abs(int(timestamp) - time.time()) < 5
    assert callback.body["code"] == 200
    assert callback.body["msg"] == "Playground task completed successfully."
    assert callback.body["data"]["taskId"] == task_id
    assert callback.body["data"]["state"] == "success"
    assert callback.body["data"]["creditsConsumed"] == 18
    assert client.get(_result_url(callback.body["data"])).status_code == 200


def test_callback_is_unsigned_without_a_key(client: httpx.Client, receiver: Receiver) -> None:
    _create(client, callback=receiver.url)

    callback = receiver.next()

    assert "X-Webhook-Signature" not in callback.headers


@pytest.mark.parametrize(
    ("switch", "fail_code", "fail_msg"),
    [
        ("[fail]", "500", "Internal server error"),
        ("[prohibited]", "422", "Invalid prompt: prompt contains prohibited content"),
    ],
)
def test_prompt_switch_fails_the_task(
    client: httpx.Client, receiver: Receiver, switch: str, fail_code: str, fail_msg: str
) -> None:
    balance = client.get("/api/v1/chat/credit").json()["data"]
    task_id = _task_id(_create(client, f"a castle {switch}", callback=receiver.url))

    record = _wait_final(client, task_id)

    assert (record["state"], record["failCode"], record["failMsg"]) == ("fail", fail_code, fail_msg)
    assert record["resultJson"] == ""
    assert record["creditsConsumed"] == 0
    assert client.get("/api/v1/chat/credit").json()["data"] == balance
    callback = receiver.next()
    assert (callback.body["code"], callback.body["msg"]) == (501, "Playground task failed.")
    assert callback.body["data"]["failCode"] == fail_code


def test_edit_transforms_uploaded_reference(client: httpx.Client) -> None:
    reference = _reference_jpeg((640, 480))
    upload = _upload(client, reference)

    content = _generate(client, "make it stormy", image_input=[upload["downloadUrl"]])

    result = Image.open(io.BytesIO(content)).convert("RGB")
    assert result.size == (1024, 1024)
    before = Image.open(io.BytesIO(reference)).convert("RGB").resize(result.size)
    difference = ImageStat.Stat(ImageChops.difference(before, result)).mean
    assert sum(difference) / 3 > 30


def test_edit_with_auto_ratio_follows_the_reference(client: httpx.Client) -> None:
    upload = _upload(client, _reference_jpeg((900, 1600)))

    content = _generate(
        client, "make it stormy", image_input=[upload["downloadUrl"]], aspect_ratio="auto"
    )

    assert Image.open(io.BytesIO(content)).size == (768, 1376)


def test_prompt_only_auto_ratio_is_square(client: httpx.Client) -> None:
    assert Image.open(io.BytesIO(_generate(client, aspect_ratio="auto"))).size == (1024, 1024)


@pytest.mark.parametrize("reference", ["missing", "not-an-image"])
def test_edit_fails_when_reference_is_unusable(
    client: httpx.Client, sandbox: SandboxServer, reference: str
) -> None:
    if reference == "missing":
        url = f"{sandbox.url}/files/uploads/references/none.png"
    else:
        url = _upload(client, b"plain text, not pixels", name="notes.txt")["downloadUrl"]

    record = _wait_final(client, _task_id(_create(client, image_input=[url])))

    assert (record["state"], record["failCode"]) == ("fail", "422")
    assert "image_input" in record["failMsg"]


def test_stream_upload_serves_the_file_back(client: httpx.Client) -> None:
    content = _reference_jpeg()

    upload = _upload(client, content, name="photo.jpg")

    assert upload["fileName"] == "photo.jpg"
    assert upload["filePath"] == "references/tests/photo.jpg"
    assert upload["fileSize"] == len(content)
    assert upload["mimeType"] == "image/jpeg"
    response = client.get(upload["downloadUrl"])
    assert response.content == content
    assert response.headers["Content-Type"] == "image/jpeg"


def test_upload_with_same_name_overwrites(client: httpx.Client) -> None:
    first = _upload(client, _reference_jpeg((64, 64)), name="same.jpg")
    second = _upload(client, _reference_jpeg((128, 128)), name="same.jpg")

    assert first["downloadUrl"] == second["downloadUrl"]
    assert len(client.get(second["downloadUrl"]).content) == second["fileSize"]


def test_base64_upload_accepts_a_data_url(client: httpx.Client) -> None:
    content = _reference_jpeg()
    data_url = "data:image/jpeg;base64," + base64.b64encode(content).decode()

    reply = client.post(
        "/api/file-base64-upload",
        json={"base64Data": data_url, "uploadPath": "refs", "fileName": "b64.jpg"},
    ).json()

    assert reply["success"] is True
    assert reply["data"]["mimeType"] == "image/jpeg"
    assert client.get(reply["data"]["downloadUrl"]).content == content


def test_url_upload_copies_a_hosted_file(client: httpx.Client) -> None:
    source = _upload(client, _reference_jpeg(), name="source.jpg")

    reply = client.post(
        "/api/file-url-upload",
        json={"fileUrl": source["downloadUrl"], "uploadPath": "copies", "fileName": "copy.jpg"},
    ).json()

    assert reply["data"]["filePath"] == "copies/copy.jpg"
    assert reply["data"]["fileSize"] == source["fileSize"]


def test_stream_upload_rejects_file_over_30_mb(client: httpx.Client) -> None:
    response = client.post(
        "/api/file-stream-upload",
        files={"file": ("big.bin", b"\0" * (30 * 1024 * 1024 + 1))},
        data={"uploadPath": "big"},
    )

    assert response.json()["code"] == 422
    assert client.get("/api/v1/chat/credit").json()["code"] == 200


def test_create_task_rate_limit_answers_429(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.configure(latency={"generating": 60})
    for _ in range(20):
        assert _create(client).json()["code"] == 200

    response = _create(client)

    assert response.status_code == 429
    assert response.json()["code"] == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    assert len(sandbox.tasks) == 20


def test_create_task_rate_limit_frees_slots_as_the_window_slides(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.configure(submit_limit=2, submit_window=0.2, latency={"generating": 60})
    assert [_create(client).json()["code"] for _ in range(3)] == [200, 200, 429]

    time.sleep(0.25)

    assert _create(client).json()["code"] == 200


def test_record_info_rate_limit_answers_429(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.configure(query_limit=3, query_window=5.0)
    task_id = _task_id(_create(client))
    for _ in range(3):
        _record(client, task_id)

    response = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})

    assert response.status_code == 429
    assert response.json()["code"] == 429
    assert "Retry-After" in response.headers


def test_record_info_answers_400_and_404(client: httpx.Client) -> None:
    assert client.get("/api/v1/jobs/recordInfo").json()["code"] == 400
    missing = client.get("/api/v1/jobs/recordInfo", params={"taskId": "task_nope"}).json()
    assert missing["code"] == 404


def test_create_task_answers_402_when_credits_run_out(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.configure(credits=30, latency={"generating": 0.2})
    task_id = _task_id(_create(client))

    # The running task holds its price, so a second one cannot be paid for.
    assert _create(client).json() == {"code": 402, "msg": "insufficient credits", "data": None}
    _wait_final(client, task_id)
    assert client.get("/api/v1/chat/credit").json()["data"] == 12
    assert _create(client).json()["code"] == 402
    assert len(sandbox.tasks) == 1


def test_4k_costs_more(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.configure(credits=20)

    assert _create(client, resolution="4K").json()["code"] == 402
    assert _create(client, resolution="2K").json()["code"] == 200


def test_download_url_gives_a_fresh_link(client: httpx.Client, sandbox: SandboxServer) -> None:
    record = _wait_final(client, _task_id(_create(client)))

    reply = client.post("/api/v1/common/download-url", json={"url": _result_url(record)}).json()

    assert reply["code"] == 200
    assert reply["data"].startswith(_result_url(record) + "?t=")
    expiry = int(reply["data"].rpartition("=")[2])
    assert 19 * 60 < expiry - time.time() <= 20 * 60
    assert client.get(reply["data"]).status_code == 200


def test_download_url_rejects_foreign_and_unknown_urls(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    foreign = {"url": "https://example.com/files/results/x/0.png"}
    unknown = {"url": f"{sandbox.url}/files/results/task_nope/0.png"}

    assert client.post("/api/v1/common/download-url", json=foreign).json()["code"] == 422
    assert client.post("/api/v1/common/download-url", json=unknown).json()["code"] == 404


def test_admin_config_applies_knobs(sandbox: SandboxServer) -> None:
    with _http(sandbox) as admin:
        reply = admin.post("/sandbox/config", json={"rate_455": 0.5, "latency": {"waiting": 2}})
        bad_name = admin.post("/sandbox/config", json={"rate_teapot": 1}).json()
        bad_rate = admin.post("/sandbox/config", json={"rate_429": 2}).json()
        current = admin.get("/sandbox/config").json()["data"]

    assert reply.json()["code"] == 200
    assert current["rate_455"] == 0.5
    assert current["latency"] == {"waiting": 2.0, "queuing": 0.0, "generating": 0.0}
    assert (bad_name["code"], bad_rate["code"]) == (422, 422)
    assert sandbox.config.rate_429 == 0.0


def test_admin_tasks_lists_the_snapshot(client: httpx.Client, sandbox: SandboxServer) -> None:
    task_id = _task_id(_create(client))
    _wait_final(client, task_id)

    with _http(sandbox) as admin:
        tasks = admin.get("/sandbox/tasks").json()["data"]

    assert [(t["taskId"], t["state"], t["credits"]) for t in tasks] == [(task_id, "success", 18)]


def test_fault_429_answers_http_429(client: httpx.Client, sandbox: SandboxServer) -> None:
    task_id = _task_id(_create(client))
    sandbox.configure(rate_429=1.0)

    created = _create(client)
    queried = client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id})

    for response in (created, queried):
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.json()["code"] == 429
    assert len(sandbox.tasks) == 1


def test_fault_5xx_answers_http_or_envelope_500(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.configure(rate_5xx=1.0)

    responses = [_create(client) for _ in range(10)]

    assert {response.json()["code"] for response in responses} == {500}
    assert {response.status_code for response in responses} == {200, 500}
    assert sandbox.tasks == []


def test_fault_455_answers_maintenance(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.configure(rate_455=1.0)

    reply = _create(client).json()

    assert reply["code"] == 455
    assert "maintenance" in reply["msg"]


def test_fault_timeout_creates_the_task_but_answers_late(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.configure(rate_timeout=1.0, timeout_sleep=1.0)

    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/api/v1/jobs/createTask",
            json={"model": "nano-banana-pro", "input": {"prompt": "slow"}},
            timeout=0.3,
        )

    [task] = sandbox.tasks
    assert _wait_final(client, task["taskId"])["state"] == "success"


def test_fault_fail_501_fails_the_task(
    client: httpx.Client, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure(rate_fail_501=1.0)

    record = _wait_final(client, _task_id(_create(client, callback=receiver.url)))

    assert (record["state"], record["failCode"], record["creditsConsumed"]) == ("fail", "501", 0)
    assert receiver.next().body["code"] == 501


def test_fault_drop_callback_sends_nothing(
    client: httpx.Client, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure(rate_drop_callback=1.0)

    _wait_final(client, _task_id(_create(client, callback=receiver.url)))

    with pytest.raises(queue.Empty):
        receiver.next(timeout=0.3)
    assert sandbox.tasks[0]["callbacks_sent"] == 0


def test_fault_duplicate_callback_sends_twice(
    client: httpx.Client, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure(rate_duplicate_callback=1.0)
    task_id = _task_id(_create(client, callback=receiver.url))

    first, second = receiver.next(), receiver.next()

    assert first.body["data"]["taskId"] == second.body["data"]["taskId"] == task_id
    assert sandbox.tasks[0]["callbacks_sent"] == 2


def test_fault_delay_callback_sends_late(
    client: httpx.Client, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure(rate_delay_callback=1.0, callback_delay=0.4)
    _wait_final(client, _task_id(_create(client, callback=receiver.url)))
    completed = time.monotonic()

    with pytest.raises(queue.Empty):
        receiver.next(timeout=0.2)
    callback = receiver.next()

    assert callback.received - completed >= 0.2


def test_fault_early_callback_arrives_before_the_create_reply(
    client: httpx.Client, sandbox: SandboxServer, receiver: Receiver
) -> None:
    sandbox.configure(rate_early_callback=1.0, latency={"generating": 60})

    task_id = _task_id(_create(client, callback=receiver.url))

    callback = receiver.callbacks.get_nowait()
    assert callback.body["data"]["taskId"] == task_id
    assert callback.body["data"]["state"] == "success"
    assert client.get(_result_url(callback.body["data"])).status_code == 200


def test_fault_result_404_once_then_serves(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.configure(rate_result_404_once=1.0)
    url = _result_url(_wait_final(client, _task_id(_create(client))))

    assert client.get(url).status_code == 404
    assert client.get(url).status_code == 200


def test_fault_result_expired_needs_a_download_url(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.configure(rate_result_expired=1.0)
    url = _result_url(_wait_final(client, _task_id(_create(client))))

    fresh = client.post("/api/v1/common/download-url", json={"url": url}).json()["data"]

    assert client.get(url).status_code == 410
    assert client.get(fresh).status_code == 200


def test_result_url_expires_after_the_ttl(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.configure(result_ttl=0.1)
    url = _result_url(_wait_final(client, _task_id(_create(client))))

    time.sleep(0.15)

    assert client.get(url).status_code == 410


def test_seeded_faults_repeat() -> None:
    def faults(seed: int) -> list[list[str]]:
        config = SandboxConfig(
            api_key=KEY, seed=seed, latency={"generating": 60}, rate_drop_callback=0.5
        )
        server = SandboxServer(config).start()
        try:
            with _http(server, headers={"Authorization": f"Bearer {KEY}"}) as c:
                for _ in range(8):
                    _create(c)
            return [task["faults"] for task in server.tasks]
        finally:
            server.stop()

    assert faults(7) == faults(7)
    assert faults(7) != faults(8)


def test_a_client_that_dies_mid_request_leaves_no_traceback(
    sandbox: SandboxServer, capfd: pytest.CaptureFixture
) -> None:
    host, port = sandbox.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"GET /api/v1/chat/cre")
        # Close with a reset, as the kernel does for a killed process with data unread.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(0.3)
    assert "Traceback" not in capfd.readouterr().err
    assert httpx.get(f"{sandbox.url}/sandbox/config", timeout=5).status_code == 200


def test_unthrottled_preset_takes_latency_limits_and_faults_away() -> None:
    config = SandboxConfig(rate_429=0.3, rate_drop_callback=0.5).with_knobs(mode="unthrottled")

    assert config == SandboxConfig.unthrottled()
    assert config.latency == INSTANT
    assert (config.submit_limit, config.query_limit) == (100_000, 100_000)
    assert config.callback_delay == 0.0
    assert not [name for name, value in vars(config).items() if name.startswith("rate_") and value]
    assert config.log_requests is False


def test_knobs_given_with_a_mode_win_over_its_preset() -> None:
    config = SandboxConfig.unthrottled(latency={"generating": 2}, submit_limit=5)

    assert config.latency == {**INSTANT, "generating": 2.0}
    assert config.submit_limit == 5


def test_unknown_mode_and_bad_knob_values_are_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of unthrottled"):
        SandboxConfig().with_knobs(mode="turbo")
    with pytest.raises(ValueError, match="texture must be one of"):
        SandboxConfig().with_knobs(texture="oil")
    with pytest.raises(ValueError, match="log_requests must be true or false"):
        SandboxConfig().with_knobs(log_requests="no")


def test_admin_config_switches_to_unthrottled_mode(sandbox: SandboxServer) -> None:
    with _http(sandbox) as admin:
        reply = admin.post("/sandbox/config", json={"mode": "unthrottled"}).json()
        refused = admin.post("/sandbox/config", json={"mode": "turbo"}).json()

    assert reply["data"]["submit_limit"] == 100_000
    assert refused["code"] == 422
    assert sandbox.config.api_key == KEY


def test_unthrottled_mode_takes_far_more_than_the_limit_and_finishes_at_once(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    sandbox.configure(mode="unthrottled")
    task_ids = [_task_id(_create(client, f"a kite, take {n}")) for n in range(45)]

    records = [_wait_final(client, task_id, timeout=10) for task_id in task_ids]

    assert {record["state"] for record in records} == {"success"}
    assert sandbox.stats["answered_429"] == {}


def test_unthrottled_mode_logs_no_line_per_request(
    client: httpx.Client, sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    def request_lines() -> list[str]:
        # The server thread logs after it has answered: give its line a moment to arrive.
        caplog.clear()
        client.get("/api/v1/chat/credit")
        deadline = time.monotonic() + 0.5
        while True:
            lines = [
                r.getMessage() for r in caplog.records if "/api/v1/chat/credit" in r.getMessage()
            ]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.01)

    with caplog.at_level(logging.INFO, logger="imagereview.sandbox"):
        assert len(request_lines()) == 1
        sandbox.configure(mode="unthrottled")
        assert request_lines() == []


def test_distinct_pictures_are_rendered_once_and_shared(
    client: httpx.Client, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = []

    def counting_render(prompt: str, **options: Any) -> bytes:
        rendered.append(prompt)
        return original(prompt, **options)

    original = render.render
    monkeypatch.setattr(render, "render", counting_render)
    sandbox.configure(distinct_pictures=2)

    pictures = {_generate(client, f"a kite, take {n}") for n in range(8)}

    assert len(pictures) <= 2
    assert len(rendered) == len(set(rendered)) <= 2


def test_each_task_has_its_own_picture_by_default(client: httpx.Client) -> None:
    pictures = {_generate(client, f"a kite, take {n}") for n in range(3)}

    assert len(pictures) == 3


def test_photo_texture_weighs_far_more_than_a_flat_picture(
    client: httpx.Client, sandbox: SandboxServer
) -> None:
    flat = _generate(client, "a harbour at noon")
    sandbox.configure(texture="photo")
    photo = _generate(client, "a harbour at noon", output_format="png")
    photo_jpeg = _generate(client, "a harbour at noon", output_format="jpg")

    assert len(photo) > 10 * len(flat)
    with Image.open(io.BytesIO(photo)) as image:
        assert (image.format, image.size) == ("PNG", (1024, 1024))
    with Image.open(io.BytesIO(photo_jpeg)) as image:
        assert (image.format, image.size) == ("JPEG", (1024, 1024))


def test_callbacks_reconnect_when_the_receiver_closed_a_kept_alive_connection() -> None:
    arrived: list[bytes] = []

    class ClosingHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            arrived.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            # Close without saying so, as a server does when an idle connection times out.
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), ClosingHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}).start()
    poster = CallbackPoster()
    url = f"http://127.0.0.1:{server.server_address[1]}/callbacks/1"
    try:
        first = poster.post(url, {"n": 1}, {})
        time.sleep(0.1)
        second = poster.post(url, {"n": 2}, {})
    finally:
        poster.close()
        server.shutdown()
        server.server_close()

    assert (first, second) == (200, 200)
    assert [json.loads(body) for body in arrived] == [{"n": 1}, {"n": 2}]
