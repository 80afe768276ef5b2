"""Phone callers in a LiveKit room: who is calling (``sip.*`` attributes), their keypad, and
call control through the server API (``livekit-api``).

A caller who dials a phone number routed by a LiveKit SIP trunk and dispatch
rule joins the room as a participant of kind ``SIP`` whose attributes carry
the call: ``sip.phoneNumber`` (the caller's number), ``sip.trunkPhoneNumber``
(the number dialled), ``sip.trunkID``, ``sip.callID``, ``sip.callStatus``.
:func:`sip_caller` reads them into a :class:`SipCaller`; the number is masked
(:func:`mask_number`) wherever it is logged or recorded.

:func:`dtmf_event` turns the room's ``sip_dtmf_received`` into the agent's
:class:`DtmfReceived`. :class:`RoomCallControl` implements the call-control
actions: ``transfer`` is ``SIP.TransferSIPParticipant`` (a SIP REFER: the
caller leaves this room for the destination), ``hang_up`` is
``RoomService.DeleteRoom`` (every participant, the phone leg included, is
disconnected). Both are Twirp calls (HTTP POST, protobuf) authenticated with a
token minted from the API key pair; a failure becomes :class:`CallControlError`
with the server's code, never a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..events import DtmfReceived
from .livekit_settings import LiveKitSettings

log = logging.getLogger(__name__)

ATTR_PHONE_NUMBER = "sip.phoneNumber"
ATTR_TRUNK_PHONE_NUMBER = "sip.trunkPhoneNumber"
ATTR_TRUNK_ID = "sip.trunkID"
ATTR_CALL_ID = "sip.callID"
ATTR_CALL_STATUS = "sip.callStatus"

# A transfer dials the destination and waits for it to ring and answer (s); the
# server's own ringing timeout is shorter, this only bounds the HTTP request.
TRANSFER_TIMEOUT_S = 60.0
HANG_UP_TIMEOUT_S = 10.0  # DeleteRoom is immediate on the server (s)


class CallControlError(RuntimeError):
    """A call-control action failed; the message says which and why (no secrets)."""


@dataclass(frozen=True)
class SipCaller:
    """A phone caller's participant and the call its ``sip.*`` attributes describe."""

    identity: str
    phone_number: str  # the caller's number ("" when withheld)
    trunk_phone_number: str  # the number that was dialled
    trunk_id: str
    call_id: str
    call_status: str  # "active", "ringing", "hangup", ... ("" when the server did not say)

    def describe(self) -> dict[str, str]:
        """For the ledger and logs: the caller's number masked."""
        return {
            "caller": mask_number(self.phone_number),
            "dialled": self.trunk_phone_number,
            "trunk": self.trunk_id,
            "call_id": self.call_id,
        }


def mask_number(number: str, keep: int = 2) -> str:
    """``+15105550123`` → ``+*********23``: a phone number as it may be logged."""
    digits = [i for i, c in enumerate(number) if c.isdigit()]
    hide = set(digits[:-keep]) if len(digits) > keep else set(digits)
    return "".join("*" if i in hide else c for i, c in enumerate(number))


def is_sip(participant: Any) -> bool:
    """True for a participant that is a phone leg (kind SIP)."""
    from livekit import rtc

    return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP)


def sip_caller(participant: Any) -> SipCaller | None:
    """The call a SIP participant carries, or ``None`` for any other participant."""
    if not is_sip(participant):
        return None
    attrs: dict[str, str] = dict(participant.attributes or {})
    return SipCaller(
        identity=participant.identity,
        phone_number=attrs.get(ATTR_PHONE_NUMBER, ""),
        trunk_phone_number=attrs.get(ATTR_TRUNK_PHONE_NUMBER, ""),
        trunk_id=attrs.get(ATTR_TRUNK_ID, ""),
        call_id=attrs.get(ATTR_CALL_ID, ""),
        call_status=attrs.get(ATTR_CALL_STATUS, ""),
    )


def dtmf_event(dtmf: Any, caller_identity: str | None = None) -> DtmfReceived | None:
    """The agent's event for a room ``SipDTMF``; ``None`` when it is not from the caller.

    ``caller_identity`` restricts digits to the caller the agent is serving (a
    second phone leg in a conference does not steer this agent).
    """
    sender = getattr(dtmf.participant, "identity", None)
    if caller_identity is not None and sender is not None and sender != caller_identity:
        return None
    digit = str(dtmf.digit or "").strip()
    if len(digit) != 1 or digit not in "0123456789*#ABCD":
        log.warning("ignoring a DTMF event with an unexpected digit %r", dtmf.digit)
        return None
    return DtmfReceived(digit=digit)


class RoomCallControl:
    """Call control for one room through the LiveKit server API.

    ``transfer(to)`` accepts ``tel:+15105550123``, ``sip:agent@pbx.example``
    or a bare number (made ``tel:``). The API client is created per call and
    closed at once (call control is rare; nothing is held between calls).
    """

    def __init__(self, settings: LiveKitSettings, room_name: str) -> None:
        self._settings = settings
        self.room_name = room_name

    def _client(self, timeout_s: float) -> Any:
        import aiohttp
        from livekit import api

        return api.LiveKitAPI(
            self._settings.http_url,
            self._settings.api_key.get_secret_value(),
            self._settings.api_secret.get_secret_value(),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )

    async def transfer(
        self, participant_identity: str, to: str, *, play_dialtone: bool = False
    ) -> None:
        """Transfer the phone caller ``participant_identity`` to ``to`` (SIP REFER)."""
        import aiohttp
        from livekit import api

        target = to if to.startswith(("tel:", "sip:", "sips:")) else f"tel:{to}"
        request = api.TransferSIPParticipantRequest(
            room_name=self.room_name,
            participant_identity=participant_identity,
            transfer_to=target,
            play_dialtone=play_dialtone,
        )
        try:
            async with self._client(TRANSFER_TIMEOUT_S) as lk:
                response = await lk.sip.transfer_sip_participant(request)
        except api.ServerError as exc:
            raise CallControlError(
                f"transfer to {target} failed: {exc.code} {exc.message}".rstrip()
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise CallControlError(
                f"transfer to {target} failed: {exc or type(exc).__name__}"
            ) from None
        if response.status == api.STS_TRANSFER_FAILED:
            raise CallControlError(
                f"transfer to {target} failed: {api.SIPTransferReason.Name(response.reason)}"
            )

    async def hang_up(self) -> None:
        """End the call for everyone: delete the room (the phone leg hangs up)."""
        import aiohttp
        from livekit import api

        try:
            async with self._client(HANG_UP_TIMEOUT_S) as lk:
                await lk.room.delete_room(api.DeleteRoomRequest(room=self.room_name))
        except api.ServerError as exc:
            if exc.code == "not_found":
                return  # already gone: the call is over either way
            raise CallControlError(f"hang-up failed: {exc.code} {exc.message}".rstrip()) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise CallControlError(f"hang-up failed: {exc or type(exc).__name__}") from None
