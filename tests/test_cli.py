"""The `imagereview` command line, run in-process against the real API on a live server."""

import hashlib
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from imagereview import batch as web_batch
from imagereview.actions.review import decide
from imagereview.actions.tokens import issue_token, revoke_token
from imagereview.cli import batch as cli_batch
from imagereview.cli import client as cli_client
from imagereview.cli import commands, waiting
from imagereview.cli import output as cli_output
from imagereview.cli.config import Connection
from imagereview.cli.main import main
from imagereview.models import ApiToken, Asset, Decision, Generation, ImageRequest
from imagereview.roles import REQUESTERS
from tests.conftest import make_user, wait_for
from tests.factories import picture, publication_of, request_in_review

pytestmark = pytest.mark.django_db(transaction=True)

ALL_SCOPES = tuple(ApiToken.Scope.values)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No config or environment of the machine running the tests; quick retries."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("IMAGEREVIEW_URL", raising=False)
    monkeypatch.delenv("IMAGEREVIEW_TOKEN", raising=False)
    monkeypatch.setattr(cli_client, "RETRY_BASE_DELAY", 0.01)
    monkeypatch.setattr(waiting, "FIRST_POLL_DELAY", 0.05)
    monkeypatch.setattr(waiting, "MAX_POLL_DELAY", 0.2)
    return tmp_path / "config" / "imagereview" / "config.toml"


@pytest.fixture
def cli(live_server, capsys):
    """Run the command line against the live server: `cli(user, "show", "5")`."""

    def run(user, *args: str, url: str | None = None, scopes=ALL_SCOPES) -> Run:
        connection = []
        if user is not None:
            connection += ["--token", token_for(user, *scopes)]
        connection += ["--url", url or live_server.url]
        capsys.readouterr()
        code = main([*args, *connection])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def token_for(user, *scopes: str) -> str:
    return issue_token(user=user, name="command line", scopes=scopes)[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def set_later(delay: float, apply) -> threading.Thread:
    """Change the database from another thread while the command waits."""

    def change() -> None:
        from django.db import connection

        time.sleep(delay)
        try:
            apply()
        finally:
            connection.close()

    thread = threading.Thread(target=change)
    thread.start()
    return thread


def newest_request() -> ImageRequest:
    return wait_for(lambda: ImageRequest.objects.order_by("-pk").first(), timeout=10)


# Identity and configuration


def test_whoami_shows_the_token_owner_and_scopes(cli, requester):
    run = cli(requester, "whoami", "--json", scopes=("read",))
    assert run.code == 0
    assert run.json["username"] == "alice"
    assert run.json["scopes"] == ["read"]

    human = cli(requester, "whoami")
    assert human.code == 0
    assert "alice" in human.out and "requester" in human.out


def test_login_stores_url_and_token_readable_by_the_owner_only(
    live_server, requester, isolated_config, capsys
):
    token = token_for(requester, "read")
    assert main(["login", "--url", f"{live_server.url}/api/v1/", "--token", token]) == 0
    assert "Logged in" in capsys.readouterr().out

    assert stat.S_IMODE(isolated_config.stat().st_mode) == 0o600
    assert main(["whoami", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["username"] == "alice"


def test_environment_gives_url_and_token(live_server, requester, monkeypatch, capsys):
    monkeypatch.setenv("IMAGEREVIEW_URL", live_server.url)
    monkeypatch.setenv("IMAGEREVIEW_TOKEN", token_for(requester, "read"))
    assert main(["whoami", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["username"] == "alice"


def test_login_with_a_wrong_token_stores_nothing(live_server, requester, isolated_config, capsys):
    code = main(["login", "--url", live_server.url, "--token", "ir_nothere_nosecret"])
    assert code == 3
    assert not isolated_config.exists()


def test_missing_token_is_a_usage_error(live_server, capsys):
    assert main(["whoami", "--url", live_server.url]) == 2
    assert f"Create a token at {live_server.url}/account/tokens/" in capsys.readouterr().err


# Wrong URL, wrong token, usage


def test_unreachable_server_exits_6(cli, requester):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = cli(requester, "whoami", url=f"http://127.0.0.1:{port}")
    assert run.code == 6
    assert f"Cannot reach the server at http://127.0.0.1:{port}" in run.err


def test_a_site_that_is_not_the_api_is_named_as_such(cli, requester, live_server):
    run = cli(requester, "whoami", url=f"{live_server.url}/library")
    assert run.code == 6
    assert "does not look like an imagereview server" in run.err
    assert "text/html" in run.err


def test_wrong_token_exits_3_and_says_where_to_make_one(cli, live_server, capsys):
    code = main(["whoami", "--url", live_server.url, "--token", "ir_abc_wrong"])
    err = capsys.readouterr().err
    assert code == 3
    assert f"The token was refused: create one at {live_server.url}/account/tokens/" in err
    assert "not valid" in err


def test_revoked_token_is_refused(live_server, requester, capsys):
    token, text = issue_token(user=requester, name="old", scopes=["read"])
    revoke_token(token_id=token.pk)
    assert main(["whoami", "--url", live_server.url, "--token", text]) == 3
    assert "revoked" in capsys.readouterr().err


def test_token_without_the_scope_exits_3(cli, requester):
    run = cli(requester, "generate", "a kite", scopes=("read",))
    assert run.code == 3
    assert "lacks the 'request' scope" in run.err
    assert not ImageRequest.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["generate"],
        ["generate", "x", "--variants", "two"],
        ["list", "--limit", "0"],
        ["download"],
        ["download", "out", "--approved", "--published"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2(args, capsys):
    assert main(args) == 2
    assert "usage: imagereview" in capsys.readouterr().err


def test_the_console_script_runs_without_django():
    script = Path(sys.executable).parent / "imagereview"
    shown = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert "Exit codes" in shown.stdout
    probe = (
        "import sys, imagereview.cli.main; print(sorted(m for m in sys.modules if 'django' in m))"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert imported.stdout.strip() == "[]"


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "Exit codes" in capsys.readouterr().out


# Creating requests


def test_generate_creates_the_request_with_its_parameters(cli, requester, enqueued):
    run = cli(
        requester,
        "generate",
        "a paper boat",
        "--aspect-ratio",
        "16:9",
        "--resolution",
        "2K",
        "--format",
        "jpg",
        "--variants",
        "2",
        "--json",
    )
    assert run.code == 0, run.err
    created = ImageRequest.objects.get()
    assert run.json["id"] == created.pk
    assert run.json["status"] == "generating"
    assert (created.prompt, created.aspect_ratio, created.resolution) == (
        "a paper boat",
        "16:9",
        "2K",
    )
    assert (created.output_format, created.variants, created.requester) == ("jpg", 2, requester)
    assert created.generations.count() == 2


def test_generate_prints_a_table_by_default(cli, requester):
    run = cli(requester, "generate", "a paper boat")
    assert run.code == 0, run.err
    created = ImageRequest.objects.get()
    assert f"Request {created.pk} created" in run.err
    assert "a paper boat" in run.out and "generating" in run.out


def test_generate_refused_by_validation_exits_5_with_field_errors(cli, requester):
    run = cli(requester, "generate", "a paper boat", "--variants", "9", "--aspect-ratio", "7:3")
    assert run.code == 5
    assert "Some fields are invalid" in run.err
    assert "variants: Choose between 1 and 4 variants." in run.err
    assert "aspect_ratio: 7:3 is not a valid aspect ratio" in run.err
    assert not ImageRequest.objects.exists()


class AnswerLost(httpx.HTTPTransport):
    """Deliver the first POST to the server, then lose its answer, as a dropped connection
    would."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.method == "POST":
            self.posts.append(request.headers.get("Idempotency-Key"))
            if len(self.posts) == 1:
                response.close()
                raise httpx.ReadError("connection lost", request=request)
        return response


def test_a_retried_create_makes_one_request(cli, requester, monkeypatch):
    transport = AnswerLost()
    monkeypatch.setattr(
        commands,
        "ApiClient",
        lambda connection: cli_client.ApiClient(connection, transport=transport),
    )
    run = cli(requester, "generate", "a paper boat", "--json")
    assert run.code == 0, run.err
    assert len(transport.posts) == 2
    assert transport.posts[0] == transport.posts[1] is not None
    assert ImageRequest.objects.get().pk == run.json["id"]


def test_each_command_has_its_own_idempotency_key(cli, requester):
    assert cli(requester, "generate", "a paper boat").code == 0
    assert cli(requester, "generate", "a paper boat").code == 0
    assert ImageRequest.objects.count() == 2


def test_edit_uploads_reference_files(cli, requester, tmp_path):
    reference = tmp_path / "before.png"
    reference.write_bytes(picture("a reference", "4:3"))
    run = cli(requester, "edit", "make it night", "--reference", str(reference), "--json")
    assert run.code == 0, run.err
    created = ImageRequest.objects.get()
    assert created.mode == ImageRequest.Mode.EDIT
    stored = Asset.objects.get(request=created, kind=Asset.Kind.REFERENCE)
    assert stored.sha256 == sha256(reference)
    assert [r["id"] for r in run.json["references"]] == [stored.pk]


def test_edit_from_an_earlier_output(cli, requester):
    earlier = request_in_review(requester, variants=1, real_images=False)
    output = Asset.objects.get(request=earlier, kind=Asset.Kind.OUTPUT)
    run = cli(requester, "edit", "warmer light", "--from-output", str(output.pk), "--json")
    assert run.code == 0, run.err
    assert run.json["mode"] == "edit"
    [reference] = run.json["references"]

    shown = cli(requester, "show", str(run.json["id"]))
    assert f"references  {reference['id']} (64x64)" in shown.out


def test_edit_without_references_is_a_usage_error(cli, requester):
    run = cli(requester, "edit", "make it night")
    assert run.code == 2
    assert "--reference FILE" in run.err


def test_edit_with_a_missing_file_is_a_usage_error(cli, requester, tmp_path):
    run = cli(requester, "edit", "night", "--reference", str(tmp_path / "nope.png"))
    assert run.code == 2
    assert "Cannot read the reference" in run.err
    assert not ImageRequest.objects.exists()


# Waiting


def test_wait_returns_once_the_request_is_in_review(cli, requester):
    def to_review() -> None:
        image_request = newest_request()
        image_request.generations.update(state=Generation.State.STORED)
        ImageRequest.objects.filter(pk=image_request.pk).update(
            status=ImageRequest.Status.IN_REVIEW
        )

    thread = set_later(0.5, to_review)
    run = cli(requester, "generate", "a paper boat", "--wait", "--json")
    thread.join()
    assert run.code == 0, run.err
    assert run.json["status"] == "in_review"


def test_wait_shows_the_generations_stored_at_a_terminal(cli, requester, monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(
        cli_output, "err", Console(file=screen, force_terminal=True, color_system=None, width=100)
    )

    def store_one_then_review() -> None:
        image_request = newest_request()
        first = image_request.generations.order_by("variant").first()
        Generation.objects.filter(pk=first.pk).update(state=Generation.State.STORED)
        time.sleep(0.5)
        image_request.generations.update(state=Generation.State.STORED)
        ImageRequest.objects.filter(pk=image_request.pk).update(
            status=ImageRequest.Status.IN_REVIEW
        )

    thread = set_later(0.3, store_one_then_review)
    run = cli(requester, "generate", "a paper boat", "--variants", "2", "--wait")
    thread.join()
    assert run.code == 0, run.err
    shown = screen.getvalue()
    assert "1/2 generations stored" in shown
    assert "in_review" in shown


def test_wait_exits_1_when_the_request_fails(cli, requester):
    def to_failed() -> None:
        image_request = newest_request()
        ImageRequest.objects.filter(pk=image_request.pk).update(status=ImageRequest.Status.FAILED)

    thread = set_later(0.5, to_failed)
    run = cli(requester, "generate", "a paper boat", "--wait", "--json")
    thread.join()
    assert run.code == 1
    assert run.json["status"] == "failed"


def test_wait_gives_up_after_the_timeout_with_exit_7(cli, requester):
    started = time.monotonic()
    run = cli(requester, "generate", "a paper boat", "--wait", "--timeout", "0.5")
    assert run.code == 7
    assert time.monotonic() - started < 10
    created = ImageRequest.objects.get()
    assert f"Request {created.pk} is still generating after 0.5 seconds" in run.err
    assert created.status == ImageRequest.Status.GENERATING


# Reading


def test_show_prints_outputs_and_decisions(cli, requester, reviewer):
    image_request = request_in_review(requester, prompt="a lighthouse", real_images=False)
    first = image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("pk").first()
    assert cli(reviewer, "approve", str(first.pk)).code == 0

    run = cli(requester, "show", str(image_request.pk))
    assert run.code == 0, run.err
    assert "a lighthouse" in run.out
    assert first.sha256[:12] in run.out
    assert "approve" in run.out

    as_json = cli(requester, "show", str(image_request.pk), "--json").json
    assert [o["id"] for o in as_json["outputs"]] == list(
        image_request.assets.filter(kind=Asset.Kind.OUTPUT)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def test_show_of_a_missing_request_exits_4(cli, requester):
    run = cli(requester, "show", "987654")
    assert run.code == 4


def test_show_of_another_requesters_request_exits_4(cli, requester):
    other = request_in_review(make_user("bob", REQUESTERS), real_images=False)
    assert cli(requester, "show", str(other.pk)).code == 4


def test_list_follows_the_cursor_without_skipping_or_repeating(cli, requester, monkeypatch):
    monkeypatch.setattr(commands, "MAX_PAGE", 4)
    made = [
        ImageRequest.objects.create(requester=requester, prompt=f"prompt {n}").pk for n in range(11)
    ]
    everything = cli(requester, "list", "--all", "--json").json
    assert [item["id"] for item in everything["items"]] == sorted(made, reverse=True)
    assert everything["next_cursor"] is None

    first = cli(requester, "list", "--limit", "6", "--json").json
    assert len(first["items"]) == 6 and first["next_cursor"]
    rest = cli(requester, "list", "--all", "--cursor", first["next_cursor"], "--json").json
    assert [i["id"] for i in first["items"] + rest["items"]] == sorted(made, reverse=True)

    table = cli(requester, "list", "--limit", "3")
    assert table.code == 0
    assert "prompt 10" in table.out and "prompt 7" not in table.out
    assert "more with --limit or --all" in table.out


def test_list_filters_by_status_and_mine(cli, requester, reviewer):
    mine = request_in_review(reviewer, real_images=False)
    request_in_review(requester, real_images=False)
    ImageRequest.objects.create(requester=reviewer, prompt="still going")
    run = cli(reviewer, "list", "--mine", "--status", "in_review", "--json")
    assert [item["id"] for item in run.json["items"]] == [mine.pk]


# Batch


def test_batch_columns_are_the_web_batchs():
    assert cli_batch.COLUMNS == web_batch.COLUMNS


def test_batch_creates_one_request_per_row_and_a_rerun_creates_none(cli, requester, tmp_path):
    csv_file = tmp_path / "batch.csv"
    csv_file.write_text(
        "Prompt,aspect_ratio,variants,auto_publish\n"
        "a lighthouse at dusk,3:2,2,yes\n"
        "\n"
        '"a red fox, in snow",,,\n'
    )
    run = cli(requester, "batch", str(csv_file), "--json")
    assert run.code == 0, run.err
    rows = run.json["rows"]
    assert [row["row"] for row in rows] == [2, 4]
    lighthouse = ImageRequest.objects.get(pk=rows[0]["request"]["id"])
    assert (lighthouse.aspect_ratio, lighthouse.variants, lighthouse.auto_publish) == (
        "3:2",
        2,
        True,
    )
    fox = ImageRequest.objects.get(pk=rows[1]["request"]["id"])
    assert (fox.prompt, fox.aspect_ratio, fox.variants) == ("a red fox, in snow", "1:1", 1)

    again = cli(requester, "batch", str(csv_file), "--json")
    assert again.code == 0
    assert [row["request"]["id"] for row in again.json["rows"]] == [lighthouse.pk, fox.pk]
    assert ImageRequest.objects.count() == 2


def test_batch_reports_a_bad_row_and_creates_the_others(cli, requester, tmp_path):
    csv_file = tmp_path / "batch.csv"
    csv_file.write_text("prompt,variants\na good one,1\na bad one,7\nanother good one,2\n")
    run = cli(requester, "batch", str(csv_file))
    assert run.code == 5
    assert "2 of 3 rows created" in run.out
    assert "row 3: variants: Choose between 1 and 4 variants." in run.out
    assert sorted(ImageRequest.objects.values_list("prompt", flat=True)) == [
        "a good one",
        "another good one",
    ]


def test_batch_stopped_by_the_server_resumes_where_it_stopped(
    cli, requester, tmp_path, monkeypatch
):
    csv_file = tmp_path / "batch.csv"
    csv_file.write_text("prompt\nfirst\nsecond\nthird\n")

    class DownAfterOne(httpx.HTTPTransport):
        posts = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST":
                DownAfterOne.posts += 1
                if DownAfterOne.posts > 1:
                    raise httpx.ConnectError("connection refused", request=request)
            return super().handle_request(request)

    real_client = cli_client.ApiClient
    monkeypatch.setattr(
        commands, "ApiClient", lambda connection: real_client(connection, transport=DownAfterOne())
    )
    stopped = cli(requester, "batch", str(csv_file))
    assert stopped.code == 6
    assert "Stopped at row 3" in stopped.err
    assert list(ImageRequest.objects.values_list("prompt", flat=True)) == ["first"]

    monkeypatch.setattr(commands, "ApiClient", real_client)
    resumed = cli(requester, "batch", str(csv_file), "--json")
    assert resumed.code == 0, resumed.err
    assert sorted(ImageRequest.objects.values_list("prompt", flat=True)) == [
        "first",
        "second",
        "third",
    ]


def test_batch_with_an_unknown_column_sends_nothing(cli, requester, tmp_path):
    csv_file = tmp_path / "batch.csv"
    csv_file.write_text("prompt,colour\na kite,red\n")
    run = cli(requester, "batch", str(csv_file))
    assert run.code == 2
    assert "Unknown columns in the header" in run.err and "colour" in run.err
    assert not ImageRequest.objects.exists()


# Deciding


def test_reviewer_approves_and_rejects_outputs(cli, requester, reviewer):
    image_request = request_in_review(requester, real_images=False, approval_quota=2)
    first, second = image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("pk")

    approved = cli(reviewer, "approve", str(first.pk), "--comment", "lovely")
    assert approved.code == 0, approved.err
    assert f"Approved output {first.pk}" in approved.out
    rejected = cli(reviewer, "reject", str(second.pk), "--reason", "artefacts", "--json")
    assert rejected.code == 0, rejected.err

    decisions = {d.output_id: d for d in Decision.objects.all()}
    assert (decisions[first.pk].verdict, decisions[first.pk].comment) == ("approve", "lovely")
    assert (decisions[second.pk].verdict, decisions[second.pk].reason) == ("reject", "artefacts")
    assert rejected.json["id"] == image_request.pk


def test_reject_with_an_unknown_reason_exits_5(cli, requester, reviewer):
    output = request_in_review(requester, real_images=False).assets.filter(kind=Asset.Kind.OUTPUT)[
        0
    ]
    run = cli(reviewer, "reject", str(output.pk), "--reason", "ugly")
    assert run.code == 5
    assert "reason" in run.err
    assert not Decision.objects.exists()


def test_self_approval_is_refused(cli, reviewer):
    own = request_in_review(reviewer, real_images=False)
    output = own.assets.filter(kind=Asset.Kind.OUTPUT)[0]
    run = cli(reviewer, "approve", str(output.pk))
    assert run.code == 3
    assert "someone else has to review it" in run.err
    assert not Decision.objects.exists()


def test_a_requester_cannot_decide(cli, requester):
    output = request_in_review(requester, real_images=False).assets.filter(kind=Asset.Kind.OUTPUT)[
        0
    ]
    assert cli(requester, "approve", str(output.pk)).code == 3
    assert not Decision.objects.exists()


def test_changes_starts_a_revision(cli, requester, reviewer):
    image_request = request_in_review(requester, prompt="a fox", real_images=False)
    output = image_request.assets.filter(kind=Asset.Kind.OUTPUT)[0]
    run = cli(reviewer, "changes", str(output.pk), "--prompt", "a red fox", "--json")
    assert run.code == 0, run.err
    revision = ImageRequest.objects.get(pk=run.json["id"])
    assert (revision.parent_id, revision.prompt) == (image_request.pk, "a red fox")
    shown = cli(requester, "show", str(revision.pk))
    assert f"1: {image_request.pk} changes_requested, 2: {revision.pk} generating" in shown.out


# Downloading


def approved_outputs(requester, reviewer) -> list[Asset]:
    image_request = request_in_review(requester, real_images=False, approval_quota=2)
    outputs = list(image_request.assets.filter(kind=Asset.Kind.OUTPUT).order_by("pk"))
    for output in outputs:
        decide(output=output, reviewer=reviewer, verdict=Decision.Verdict.APPROVE)
    return outputs


def test_download_saves_approved_outputs_verified_and_skips_them_next_time(
    cli, requester, reviewer, tmp_path
):
    outputs = approved_outputs(requester, reviewer)
    request_in_review(requester, real_images=False)  # not approved: not downloaded
    folder = tmp_path / "approved"

    run = cli(requester, "download", str(folder), "--json")
    assert run.code == 0, run.err
    saved = sorted(folder.iterdir())
    assert sorted(sha256(path) for path in saved) == sorted(o.sha256 for o in outputs)
    assert {r["outcome"] for r in run.json["downloads"]} == {"saved"}
    assert not list(folder.glob(".*"))

    damaged = saved[0]
    damaged.write_bytes(b"not the image")
    again = cli(requester, "download", str(folder))
    assert again.code == 0
    assert "1 saved, 1 already there with the same sha256" in again.out
    assert sorted(sha256(path) for path in folder.iterdir()) == sorted(o.sha256 for o in outputs)


def test_download_of_published_outputs_only(cli, requester, reviewer, tmp_path):
    first, second = approved_outputs(requester, reviewer)
    publication_of(second)
    run = cli(requester, "download", str(tmp_path), "--published", "--json")
    assert run.code == 0, run.err
    assert [r["output_id"] for r in run.json["downloads"]] == [second.pk]


def test_download_refuses_a_file_whose_sha256_differs(cli, requester, reviewer, tmp_path):
    output, _ = approved_outputs(requester, reviewer)
    Asset.objects.filter(pk=output.pk).update(sha256="0" * 64)
    run = cli(requester, "download", str(tmp_path / "out"), "--request", str(output.request_id))
    assert run.code == 6
    assert f"Output {output.pk} arrived damaged" in run.err
    assert not [
        p for p in (tmp_path / "out").iterdir() if "0" * 12 in p.name or p.suffix == ".part"
    ]


# The client's retries, against one-off answers


def test_client_retries_unavailable_with_the_same_key_and_honours_retry_after():
    seen, slept = [], []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Idempotency-Key"])
        if len(seen) < 3:
            return httpx.Response(503, headers={"Retry-After": "2"})
        return httpx.Response(201, json={"id": 1})

    client = cli_client.ApiClient(
        Connection(url="http://api.test", token="ir_a_b"),
        transport=httpx.MockTransport(answer),
        sleep=slept.append,
    )
    assert client.post("requests", json={"prompt": "x"}) == {"id": 1}
    assert len(set(seen)) == 1 and len(seen) == 3
    assert slept == [2.0, 2.0]


def test_client_sends_the_token_to_its_own_server_only(tmp_path):
    authorizations = []

    def answer(request: httpx.Request) -> httpx.Response:
        authorizations.append((request.url.host, request.headers.get("Authorization")))
        return httpx.Response(200, content=b"image", headers={"Content-Type": "image/png"})

    client = cli_client.ApiClient(
        Connection(url="http://api.test", token="ir_a_b"), transport=httpx.MockTransport(answer)
    )
    client.download("outputs/1/file", tmp_path / "a")
    client.download("https://bucket.test/1.png", tmp_path / "b")
    assert authorizations == [("api.test", "Bearer ir_a_b"), ("bucket.test", None)]


def test_server_error_exits_6(cli, requester, monkeypatch):
    def answer(request: httpx.Request) -> httpx.Response:
        problem = {"type": "x", "title": "t", "status": 500, "detail": "It broke; it is logged."}
        return httpx.Response(
            500, json=problem, headers={"Content-Type": "application/problem+json"}
        )

    monkeypatch.setattr(
        commands,
        "ApiClient",
        lambda connection: cli_client.ApiClient(connection, transport=httpx.MockTransport(answer)),
    )
    run = cli(requester, "show", "1")
    assert run.code == 6
    assert "It broke; it is logged." in run.err


# The whole flow with a real cluster and the sandbox provider


@pytest.mark.cluster
def test_generate_wait_download_then_approve_and_fetch_the_approved_output(
    cli, start_cluster, requester, reviewer, sandbox, tmp_path
):
    cluster = start_cluster()
    folder = tmp_path / "outputs"
    run = cli(
        requester,
        "generate",
        "a paper boat on a rain puddle",
        "--variants",
        "2",
        "--format",
        "jpg",
        "--download",
        str(folder),
        "--timeout",
        "90",
        "--json",
    )
    assert run.code == 0, f"{run.err}\ncluster log:\n{cluster.log()}"
    detail = run.json
    assert detail["status"] == "in_review"
    listed = {o["sha256"] for o in detail["outputs"]}
    assert len(listed) == 2
    assert {sha256(Path(d["path"])) for d in detail["downloads"]} == listed

    first = detail["outputs"][0]
    assert cli(reviewer, "approve", str(first["id"])).code == 0
    approved = tmp_path / "approved"
    fetched = cli(requester, "download", str(approved), "--request", str(detail["id"]), "--json")
    assert fetched.code == 0, fetched.err
    [saved] = approved.iterdir()
    assert sha256(saved) == first["sha256"]
    assert saved.suffix == ".jpg"
    assert os.access(saved, os.R_OK)
