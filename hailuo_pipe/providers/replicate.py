"""Replicate: the official model minimax/hailuo-02 through the predictions API.

Facts (read 2026-12-02): providers.md; replicate.com/minimax/hailuo-02/versions/c43b610e…/api
(input prompt, first_frame_image, last_frame_image, duration 6|10 (10 s at 768p only),
resolution 512p|768p|1080p, **default 1080p**, prompt_optimizer default true; output a URI);
Replicate's HTTP API as its official client (replicate 1.0.7) and its OpenAPI description speak
it: `POST /v1/models/{owner}/{name}/predictions` `{input}` answers 201 with a prediction `{id,
model, version, input, output, error, status, created_at, data_removed, urls}`; status
`starting | processing | succeeded | failed | canceled` (and `aborted`); `GET /v1/predictions`
lists every prediction of the account, newest first, 100 a page, `next` an absolute URL, and
takes `created_after` (ISO 8601, inclusive). Inputs and outputs of API predictions are deleted
about an hour after they finish (`data_removed` turns true): the executor downloads a clip as
soon as a poll says succeeded; one missed is reported as gone, not as still there.

unsure: the price (Replicate's page was not found in the stored sources: the dearest known
per-clip price of the other hosts stands in, so budgets are not understated); whether 512p
needs a first frame and refuses a last one (as MiniMax's own API does: assumed); whether the
list echoes data-URI inputs exactly as sent (a prediction with our prompt whose other input
differs makes the answer "cannot tell", never "absent").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from hailuo_pipe.errors import OutputExpired, ProviderError, TransientError
from hailuo_pipe.providers.base import (
    ABSENT,
    CLOCK_SKEW,
    Capabilities,
    JobStatus,
    Reconciled,
    State,
    WireRequest,
    epoch_of,
    settled,
    state_of,
    submitted_job_id,
    wire_int,
    wire_str,
)
from hailuo_pipe.providers.fal import origin
from hailuo_pipe.providers.http import HostedProvider, Reply, segment
from hailuo_pipe.providers.wavespeed import is_refusal
from hailuo_pipe.storyboard.model import Scene

if TYPE_CHECKING:
    import httpx

MODEL = "minimax/hailuo-02"
SUBMIT_PATH = f"/v1/models/{MODEL}/predictions"
PREDICTION_PATH = "/v1/predictions/{id}"
LIST_PATH = "/v1/predictions"
PRICES = {  # unsure (see above)
    ("512p", 6): Decimal("0.11"),
    ("512p", 10): Decimal("0.17"),
    ("768p", 6): Decimal("0.28"),
    ("768p", 10): Decimal("0.56"),
    ("1080p", 6): Decimal("0.49"),
}
STATES: dict[str, State] = {
    "starting": "queued",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "cancelled",
    "aborted": "cancelled",  # terminated before it started (Replicate's newer status)
}
OUTPUT_LIFETIME = "about an hour"
# options that belong beside `input`, not in it
TOP_LEVEL_OPTIONS = ("webhook", "webhook_events_filter")
# A lost submission is looked for in at most this many pages of 100 predictions created since
# it was sent; an account busier than that is read in part, and a part proves nothing absent.
MAX_LIST_PAGES = 10


def _check(reply: Reply) -> None:
    if not isinstance(reply.body, dict):
        raise TransientError(f"Replicate: unexpected answer: {str(reply.body)[:200]}")


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class ReplicateProvider(HostedProvider):
    name = "replicate"
    title = "Replicate"
    env_prefix = "REPLICATE"
    api_key_variable = "REPLICATE_API_TOKEN"  # the name Replicate's own clients read
    base_url_variable = "REPLICATE_BASE_URL"
    default_base_url = "https://api.replicate.com"
    version_suffixes = ("/v1",)
    capabilities = Capabilities(
        durations={"512p": (6, 10), "768p": (6, 10), "1080p": (6,)},
        end_image=True,
        local_images=True,  # file inputs take a data URI as well as a URL
        no_end_image=("512p",),
    )
    prices = PRICES
    field_origins: ClassVar[Mapping[str, str]] = {
        "prompt": "prompt",
        "first_frame_image": "image",
        "last_frame_image": "end_image",
        "duration": "duration",
        "resolution": "resolution",
        "prompt_optimizer": "prompt_optimizer",
    }

    def build_request(self, scene: Scene, images: Mapping[str, str]) -> WireRequest:
        data: dict[str, Any] = {"prompt": scene.prompt}
        if "image" in images:
            data["first_frame_image"] = images["image"]
        if "end_image" in images:
            data["last_frame_image"] = images["end_image"]
        data["duration"] = scene.duration
        data["resolution"] = scene.resolution  # always said: Replicate's default is 1080p
        data["prompt_optimizer"] = scene.prompt_optimizer  # its default is true
        options = dict(scene.options)
        top = {k: options.pop(k) for k in TOP_LEVEL_OPTIONS if k in options}
        data.update(options)
        return WireRequest("POST", SUBMIT_PATH, {"input": data, **top})

    def priced_as(self, request: WireRequest) -> tuple[str, int] | None:
        body = request.body if isinstance(request.body, dict) else {}
        found = body.get("input")
        data: dict[str, Any] = found if isinstance(found, dict) else {}
        # Replicate's defaults apply to what the request leaves out
        return wire_str(data.get("resolution", "1080p")), wire_int(data.get("duration", 6)) or 0

    async def submit(self, client: httpx.AsyncClient, request: WireRequest, key: str) -> str:
        reply = await self.call(
            client, "POST", request.path, body=request.body, idempotent=False, check=_check
        )
        return submitted_job_id(self.title, "id", reply.body.get("id", ABSENT))

    async def poll(self, client: httpx.AsyncClient, job_id: str) -> JobStatus:
        reply = await self.call(
            client,
            "GET",
            PREDICTION_PATH.format(id=segment(job_id)),
            idempotent=True,
            check=_check,
            job_id=job_id,
        )
        return status_of(reply.body, job_id)

    async def reconcile(
        self,
        client: httpx.AsyncClient,
        key: str,
        request: WireRequest,
        since: float | None = None,
    ) -> Reconciled:
        """The prediction a lost submission created, found in the account's list by its input.

        Read newest first from `since` (less the clocks' skew): exactly one prediction of the
        model whose input is ours is adopted; none at all is proof only when every page was
        read, no prediction's input is unknown or merely close to ours, and the submission is
        old enough that no request can still be in flight. Anything else cannot tell."""
        if since is None:
            return Reconciled.unknown("the submission's time is not recorded")
        try:
            seen = await self._list_since(client, since - CLOCK_SKEW)
        except ProviderError as err:
            return Reconciled.unknown(f"Replicate's prediction list could not be read ({err})")
        if isinstance(seen, Reconciled):
            return seen
        wanted = request.body.get("input") if isinstance(request.body, dict) else None
        exact, close, blind = [], 0, 0
        for item in seen:
            if item.get("model") not in (None, MODEL):
                continue
            given = item.get("input")
            if item.get("data_removed") or not isinstance(given, dict):
                blind += 1  # its input is gone: it may be ours
            elif given == wanted:
                exact.append(item.get("id"))
            elif isinstance(wanted, dict) and given.get("prompt") == wanted.get("prompt"):
                close += 1  # our prompt, other input: perhaps ours, rewritten by the API
        if len(exact) == 1 and isinstance(exact[0], str):
            return Reconciled.found(exact[0], "by its input in Replicate's prediction list")
        if exact:
            return Reconciled.unknown(f"{len(exact)} predictions have exactly its input")
        if blind or close:
            return Reconciled.unknown(
                f"{blind + close} predictions since then could be it (input removed or close)"
            )
        if not settled(since):
            return Reconciled.unknown("it was sent too recently to be sure none is on the way")
        return Reconciled.none("Replicate's prediction list since it was sent has no such job")

    async def _list_since(
        self, client: httpx.AsyncClient, after: float
    ) -> list[dict[str, Any]] | Reconciled:
        """Every prediction created at or after `after`, or why the list cannot be read whole.
        Pages come newest first: the first older prediction ends the walk."""
        items: list[dict[str, Any]] = []
        url: str = LIST_PATH
        params: dict[str, str] | None = {"created_after": iso(after)}
        for _ in range(MAX_LIST_PAGES):
            reply = await self.call(
                client, "GET", url, params=params, idempotent=True, check=_check
            )
            page = reply.body.get("results")
            if not isinstance(page, list):
                return Reconciled.unknown("Replicate's prediction list was not readable")
            for item in page:
                if not isinstance(item, dict):
                    return Reconciled.unknown("Replicate's prediction list was not readable")
                created = epoch_of(item.get("created_at"))
                if created is not None and created < after:
                    return items  # newest first: all the rest are older still
                items.append(item)
            following = reply.body.get("next")
            if following is None:
                return items
            if not isinstance(following, str) or origin(following) != origin(self.base_url):
                return Reconciled.unknown("Replicate's next page is on another host: not read")
            url, params = following, None
        return Reconciled.unknown(f"more than {MAX_LIST_PAGES} pages of predictions since then")


def output_of(value: Any) -> str | None:
    """The clip's URL: a string, or the first of a list (some models answer with a list)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and isinstance(value[0], str) and value[0]:
        return value[0]
    return None


def status_of(body: Mapping[str, Any], job_id: str = "") -> JobStatus:
    state = state_of(body.get("status"), STATES)
    if state == "succeeded":
        url = output_of(body.get("output"))
        if body.get("data_removed") or url is None:
            # deleted with its output: no download can ever get this clip back
            raise OutputExpired(
                f"Replicate: the clip of prediction {job_id} was deleted by Replicate, which "
                f"keeps outputs {OUTPUT_LIFETIME} after a prediction ends; it was never "
                "downloaded here and cannot be fetched any more",
                provider="replicate",
                job_id=job_id,
            )
        return JobStatus("succeeded", output_url=url)  # Replicate reports no cost
    if state in ("failed", "cancelled"):
        error = str(body.get("error") or f"the prediction ended {body.get('status')}")
        return JobStatus(state, error=error, refused=is_refusal(error))
    return JobStatus(state)
