"""The emulator checked by someone else: the providers' own SDKs, pointed at it, must submit,
poll and fetch as they do against the real APIs. Our adapters and our emulator were written
from one reading of the docs; where that reading was wrong, both would be wrong together, but
these clients were not written by us.

- Replicate's client (`replicate.Client(base_url=...)`), over plain HTTP;
- WaveSpeedAI's SDK (`wavespeed.Client(base_url=...)`), over plain HTTP;
- fal's client (`fal-client`), which speaks HTTPS only: the emulator serves TLS with a
  certificate made here, the client finds it as `FAL_QUEUE_RUN_HOST` and trusts it through
  `SSL_CERT_FILE`. It reads the host when imported, so it runs in a child process.

Not checked this way: Runware's SDK talks to a WebSocket (the emulator speaks Runware's REST
API); GMI Cloud's SDK hard-codes its hosts and logs in through its IAM service first; MiniMax
and Apiframe publish no Python SDK that takes a base URL.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hailuo_emulator import Emulator, run_emulator
from hailuo_pipe import providers
from hailuo_pipe.errors import SubmitUncertain
from hailuo_pipe.storyboard.model import Scene

replicate = pytest.importorskip("replicate")
wavespeed = pytest.importorskip("wavespeed")

PROMPT = "[Push in] the harbor at dawn"


def scene(provider: str, **kw: Any) -> Scene:
    base: dict[str, Any] = dict(
        id="s", prompt=PROMPT, provider=provider, duration=6, resolution="768p",
        prompt_optimizer=False,
    )  # fmt: skip
    return Scene(**{**base, **kw})


def mp4(url: str, verify: Any = True) -> bytes:
    data = httpx.get(url, verify=verify).content
    assert data[4:8] == b"ftyp", "a real MP4"
    return data


# -- Replicate's client -------------------------------------------------------------------------


@pytest.fixture
def client(emulator: Emulator) -> Any:
    return replicate.Client(api_token=emulator.key, base_url=emulator.url)


def test_replicate_client_submits_polls_and_fetches_from_the_emulator(
    client: Any, emulator: Emulator
) -> None:
    # the input exactly as our adapter builds it: the client sends it as it is
    ours = providers.get("replicate")().build_request(scene("replicate"), {}).body["input"]
    prediction = client.models.predictions.create(model="minimax/hailuo-02", input=ours)
    assert prediction.status == "starting" and prediction.output is None
    prediction.wait()  # polls GET /v1/predictions/{id} until it ends
    assert prediction.status == "succeeded", prediction.error
    assert prediction.input == ours and prediction.model == "minimax/hailuo-02"
    mp4(prediction.output)
    assert client.predictions.get(prediction.id).status == "succeeded"
    [job] = emulator.job_list()
    assert job["id"] == prediction.id
    # and the same prediction seen through our adapter
    adapter = providers.get("replicate")(base_url=emulator.url, api_key=emulator.key)

    async def poll() -> Any:
        async with httpx.AsyncClient() as http:
            return await adapter.poll(http, prediction.id)

    assert asyncio.run(poll()).output_url == prediction.output


def test_replicate_client_run_waits_for_the_output(client: Any) -> None:
    output = client.run("minimax/hailuo-02", input={"prompt": PROMPT, "resolution": "768p"})
    mp4(str(output))


def test_replicate_client_reads_the_emulators_errors(client: Any, emulator: Emulator) -> None:
    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client.models.predictions.create(
            model="minimax/hailuo-02", input={"prompt": PROMPT, "resolution": "4k"}
        )
    assert caught.value.status == 422 and "resolution" in str(caught.value.detail)
    wrong = replicate.Client(api_token="sk-wrong", base_url=emulator.url)
    with pytest.raises(replicate.exceptions.ReplicateError) as denied:
        wrong.predictions.list()
    assert denied.value.status == 401
    assert emulator.job_list() == []


def test_replicate_client_retries_polls_the_emulator_fails_and_lists_in_pages(
    client: Any, emulator: Emulator
) -> None:
    emulator.configure(list_page_size=2)
    made = [
        client.models.predictions.create(
            model="minimax/hailuo-02", input={"prompt": f"{PROMPT} {i}", "resolution": "768p"}
        )
        for i in range(3)
    ]
    emulator.configure(server_error={"on": "poll", "status": 503, "count": 2})
    made[0].wait()  # the client retries a GET answered 503, as it does against Replicate
    assert made[0].status == "succeeded" and emulator.faults()["server_error"] == 2
    listed = [p.id for page in replicate.pagination.paginate(client.predictions.list) for p in page]
    assert listed == [p.id for p in reversed(made)]  # newest first, across pages


def test_replicate_lost_answer_the_client_never_resends_is_found_in_the_list(
    client: Any, emulator: Emulator
) -> None:
    """What our reconcile does, done with Replicate's own client: the prediction whose answer
    was lost is the one in the list with the input that was sent."""
    emulator.configure(drop={"on": "submit", "count": 1})
    data = {"prompt": PROMPT, "duration": 6, "resolution": "768p"}
    with pytest.raises(httpx.HTTPError):
        client.models.predictions.create(model="minimax/hailuo-02", input=data)
    assert len(emulator.requests("submit")) == 1  # a POST is not retried by the client
    [job] = emulator.job_list()
    found = [p for p in client.predictions.list() if p.input == data]
    assert [p.id for p in found] == [job["id"]]


# -- WaveSpeedAI's SDK --------------------------------------------------------------------------


@pytest.fixture
def ws(emulator: Emulator) -> Any:
    return wavespeed.Client(api_key=emulator.key, base_url=emulator.url, retry_interval=0.01)


def test_wavespeed_sdk_submits_polls_and_fetches_from_the_emulator(
    ws: Any, emulator: Emulator
) -> None:
    ours = providers.get("wavespeed")().build_request(scene("wavespeed"), {})
    model = ours.path.removeprefix("/api/v3/")  # the SDK takes the model path
    result = ws.run(model, ours.body, poll_interval=0.05)
    mp4(result["outputs"][0])
    [submitted] = emulator.requests("submit")
    assert (submitted["path"], submitted["body"]) == (ours.path, ours.body)
    fast = ws.run(
        "minimax/hailuo-02/fast",
        {"prompt": PROMPT, "image": "https://example.com/a.png", "go_fast": True},
        poll_interval=0.05,
    )
    mp4(fast["outputs"][0])


def test_wavespeed_sdk_retries_result_polls_and_reports_failed_tasks(
    ws: Any, emulator: Emulator
) -> None:
    emulator.configure(server_error={"on": "poll", "status": 503, "count": 3})
    result = ws.run("minimax/hailuo-02/standard", {"prompt": PROMPT}, poll_interval=0.05)
    assert result["outputs"] and emulator.faults()["server_error"] == 3
    emulator.configure(fail_jobs=1.0)
    with pytest.raises(RuntimeError, match="Prediction failed"):
        ws.run("minimax/hailuo-02/standard", {"prompt": PROMPT}, poll_interval=0.05)


def test_wavespeed_sdk_never_resends_a_submit_whose_answer_was_lost(
    ws: Any, emulator: Emulator
) -> None:
    """The SDK's rule is ours: the task may exist, so the POST is not sent again; the task it
    created is still there to be looked up by id, as `--adopt` does."""
    emulator.configure(drop={"on": "submit", "count": 1})
    with pytest.raises(RuntimeError, match="may already have been created"):
        ws.run("minimax/hailuo-02/standard", {"prompt": PROMPT}, poll_interval=0.05)
    assert len(emulator.requests("submit")) == 1
    [job] = emulator.job_list()
    assert ws.get_result(job["id"])["data"]["id"] == job["id"]


# -- fal's client, over HTTPS --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def https_emulator(tls: tuple[str, str]) -> Iterator[Emulator]:
    pytest.importorskip("fal_client")
    with run_emulator(tls=tls) as emu:
        yield emu


@pytest.fixture
def secure(https_emulator: Emulator) -> Emulator:
    https_emulator.reset(job_seconds=0.3)
    return https_emulator


FAL_SCRIPT = """
import json, sys, time
import fal_client

endpoint, arguments = sys.argv[1], json.loads(sys.argv[2])
try:
    handle = fal_client.submit(endpoint, arguments=arguments)
except Exception as err:
    print(json.dumps({"error": type(err).__name__}))
    raise SystemExit(0)
seen = []
while not isinstance(status := handle.status(), fal_client.Completed):
    seen.append(type(status).__name__)
    time.sleep(0.05)
try:
    result, result_error = handle.get(), None
except fal_client.client.FalClientHTTPError as err:
    result, result_error = None, [err.status_code, str(err)]
print(json.dumps({
    "request_id": handle.request_id,
    "status_url": handle.status_url,
    "seen": seen,
    "error": status.error,
    "result": result,
    "result_error": result_error,
}))
"""


def run_fal_client(emu: Emulator, endpoint: str, arguments: dict[str, Any]) -> dict[str, Any]:
    assert emu.ca is not None
    env = {
        **os.environ,
        "FAL_KEY": emu.key,
        "FAL_QUEUE_RUN_HOST": emu.url.removeprefix("https://"),
        "SSL_CERT_FILE": emu.ca,
        "HOME": str(Path(emu.ca).parent),  # no ~/.fal credentials of anyone's
    }
    done = subprocess.run(
        [sys.executable, "-c", FAL_SCRIPT, endpoint, json.dumps(arguments)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_fal_client_submits_follows_the_status_url_and_fetches(secure: Emulator) -> None:
    ours = providers.get("fal")().build_request(scene("fal"), {})
    got = run_fal_client(secure, ours.path.lstrip("/"), ours.body)
    job = got["request_id"]
    assert got["status_url"] == f"{secure.url}/fal-ai/minimax/requests/{job}/status"
    assert got["error"] is None
    mp4(got["result"]["video"]["url"], verify=ssl.create_default_context(cafile=secure.ca))
    [submitted] = secure.requests("submit")
    assert (submitted["path"], submitted["body"]) == (ours.path, ours.body)
    assert {k.lower(): v for k, v in submitted["headers"].items()}["authorization"] == (
        f"Key {secure.key}"
    )
    polled = {p["path"] for p in secure.requests("poll")}
    assert polled == {f"/fal-ai/minimax/requests/{job}/status", f"/fal-ai/minimax/requests/{job}"}


def test_fal_client_reads_a_failed_request_from_its_status(secure: Emulator) -> None:
    secure.configure(fail_jobs=1.0)
    got = run_fal_client(
        secure,
        "fal-ai/minimax/hailuo-02-fast/image-to-video",
        {"prompt": PROMPT, "image_url": "https://example.com/a.png"},
    )
    assert got["error"] and got["result"] is None  # the Completed status carries the failure
    assert got["result_error"] == [500, "generation failed: internal inference error"]


def test_fal_client_resends_a_lost_submit_where_our_adapter_never_does(
    secure: Emulator,
) -> None:
    """fal-client 1.0.3 retries a queue submit after a dropped connection: each resend is a
    new paid request (fal documents no way to dedupe one). Our adapter sends it once and parks
    the scene instead."""
    arguments = {"prompt": PROMPT, "duration": "6", "prompt_optimizer": False}
    secure.configure(drop={"on": "submit", "count": 1})
    run_fal_client(secure, "fal-ai/minimax/hailuo-02/standard/text-to-video", arguments)
    sent = len(secure.requests("submit"))
    assert sent >= 2 and secure.jobs()["fal"] == sent  # every resend was paid for

    secure.reset(job_seconds=0.3, drop={"on": "submit", "count": 1})
    fal = providers.get("fal")(base_url=secure.url, api_key=secure.key)
    request = fal.build_request(scene("fal"), {})

    async def submit() -> str:
        trust = ssl.create_default_context(cafile=secure.ca)
        async with httpx.AsyncClient(verify=trust) as http:
            return await fal.submit(http, request, "k")

    with pytest.raises(SubmitUncertain):
        asyncio.run(submit())
    assert len(secure.requests("submit")) == 1 and secure.jobs()["fal"] == 1
