"""Where the LiveKit server is and how to authenticate: ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``,
``LIVEKIT_API_SECRET``, validated once at start-up.

:func:`settings_from_env` checks what can be checked offline (each variable set,
the URL a ``ws(s)://`` or ``http(s)://`` address with a host) and raises
:class:`LiveKitSettingsError` naming the variable. :func:`check_credentials`
then asks the server once (``RoomService.ListRooms``, a cheap authenticated
call) so that a wrong key, secret or URL fails at once with the variable
named, instead of the worker retrying its registration for minutes.

The key and the secret are :class:`pydantic.SecretStr`: they never appear in a
``repr``, a log line or an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, SecretStr

from ledger.redact import mask_url_secrets

ENV_URL = "LIVEKIT_URL"
ENV_API_KEY = "LIVEKIT_API_KEY"
ENV_API_SECRET = "LIVEKIT_API_SECRET"

# How long the start-up check waits for the server's answer (s): a LiveKit server
# answers ListRooms in tens of ms; a URL that does not answer within this is wrong.
CHECK_TIMEOUT_S = 10.0

_SCHEMES = ("ws", "wss", "http", "https")


class LiveKitSettingsError(ValueError):
    """A LiveKit setting is missing or wrong; ``variable`` names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class LiveKitSettings(BaseModel):
    """A LiveKit server (Cloud project or self-hosted) and the API key pair for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    api_key: SecretStr
    api_secret: SecretStr

    @property
    def http_url(self) -> str:
        """The server's HTTP(S) base (the server API lives there; ``wss`` becomes ``https``)."""
        parsed = urlparse(self.url)
        scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme)
        return parsed._replace(scheme=scheme).geturl().rstrip("/")


def settings_from_env(environ: Mapping[str, str]) -> LiveKitSettings:
    """Read and check the three variables; raise :class:`LiveKitSettingsError` on the first bad one."""
    url = environ.get(ENV_URL, "").strip()
    if not url:
        raise LiveKitSettingsError(
            ENV_URL,
            "not set: the address of your LiveKit server, e.g. wss://my-project.livekit.cloud "
            "or ws://localhost:7880 for a self-hosted one",
        )
    parsed = urlparse(url)
    shown = mask_url_secrets(url)
    if parsed.scheme not in _SCHEMES or not parsed.hostname:
        raise LiveKitSettingsError(
            ENV_URL, f"{shown!r} is not a ws://, wss://, http:// or https:// address with a host"
        )
    if "@" in parsed.netloc:
        # the server API client refused it with "unexpected error: ValueError: Cannot
        # combine AUTHORIZATION header with ... credentials encoded in URL" (hostile7)
        raise LiveKitSettingsError(
            ENV_URL,
            f"{shown!r} carries a user name or password: LiveKit authenticates with "
            f"{ENV_API_KEY} and {ENV_API_SECRET}; remove the 'user:password@' part",
        )
    try:
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise LiveKitSettingsError(ENV_URL, f"{shown!r} has an invalid port") from None
    key = environ.get(ENV_API_KEY, "")
    secret = environ.get(ENV_API_SECRET, "")
    for name, value in ((ENV_API_KEY, key), (ENV_API_SECRET, secret)):
        if not value.strip():
            raise LiveKitSettingsError(
                name, "not set (LiveKit Cloud: project settings → API keys; self-hosted: keys:)"
            )
        if value != value.strip() or any(c.isspace() for c in value):
            raise LiveKitSettingsError(name, "contains whitespace (a copy-paste error?)")
    return LiveKitSettings(url=url, api_key=SecretStr(key), api_secret=SecretStr(secret))


async def check_credentials(
    settings: LiveKitSettings, *, timeout_s: float = CHECK_TIMEOUT_S
) -> None:
    """Ask the server one authenticated question; raise :class:`LiveKitSettingsError` if it fails.

    Unreachable or not a LiveKit server → ``LIVEKIT_URL``; the server refuses the
    token → ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET`` (the server cannot say which
    of the two is wrong, and the message says so).
    """
    import aiohttp
    from livekit import api

    url = mask_url_secrets(settings.url)  # what a message may show of it
    try:
        async with api.LiveKitAPI(
            settings.http_url,
            settings.api_key.get_secret_value(),
            settings.api_secret.get_secret_value(),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as lk:
            await lk.room.list_rooms(api.ListRoomsRequest(names=["voice-agent-settings-check"]))
    except api.ServerError as exc:
        if exc.status in (401, 403) or exc.code in ("unauthenticated", "permission_denied"):
            raise LiveKitSettingsError(
                f"{ENV_API_KEY}/{ENV_API_SECRET}",
                f"the server at {url} refused them ({exc.code}): "
                "check that the key and secret are a pair of this project/server",
            ) from None
        if exc.status == 404:
            raise LiveKitSettingsError(
                ENV_URL, f"{url} answered 404 to the server API: not a LiveKit server?"
            ) from None
        raise LiveKitSettingsError(
            ENV_URL, f"the server at {url} answered an error ({exc.code}, {exc.status})"
        ) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        reason = (
            type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        )
        raise LiveKitSettingsError(ENV_URL, f"cannot reach {url}: {reason}") from None
