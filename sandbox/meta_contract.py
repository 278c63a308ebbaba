"""What the Meta simulator's Send API accepts (as Meta documents it), as pure checks.

Each check returns the Graph error Meta would answer with, or None.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
WINDOW_MS = DAY_MS  # a reply is allowed within 24 h of the customer's last message
TAG_WINDOW_MS = 7 * DAY_MS  # HUMAN_AGENT-tagged replies: up to 7 days
TEXT_LIMIT_BYTES = 1000  # bytes of UTF-8, not characters
WINDOW_SUBCODE = 2534022
NO_USER_SUBCODE = 2018001
MAX_QUICK_REPLIES = 13
QUICK_REPLY_TITLE = 20
MAX_ELEMENTS = 10
MAX_BUTTONS = 3
MEDIA_ATTACHMENTS = frozenset({"image", "audio", "video", "file"})
ATTACHMENT_TYPES = MEDIA_ATTACHMENTS | {"template"}
SENDER_ACTIONS = frozenset({"typing_on", "typing_off", "mark_seen", "react", "unreact"})
MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
MB = 1024 * 1024
HANDOVER_SUBCODE = 2018300  # another app controls the thread (reported; unconfirmed)
TAGS = frozenset({"HUMAN_AGENT"})  # the only tag Instagram supports


@dataclass(frozen=True, slots=True)
class GraphProblem:
    status: int
    code: int
    message: str
    subcode: int | None = None
    kind: str = "OAuthException"

    def response(self) -> JSONResponse:
        err: dict[str, Any] = {
            "message": self.message,
            "type": self.kind,
            "code": self.code,
            "fbtrace_id": uuid.uuid4().hex[:12],
        }
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        return JSONResponse({"error": err}, status_code=self.status)


def graph_error(
    status: int, code: int, message: str, subcode: int | None = None, kind: str = "OAuthException"
) -> JSONResponse:
    return GraphProblem(status, code, message, subcode, kind).response()


def invalid(message: str) -> GraphProblem:
    return GraphProblem(400, 100, f"(#100) {message}")


BAD_TOKEN = GraphProblem(401, 190, "Invalid OAuth access token - Cannot parse access token")
OUTSIDE_WINDOW = GraphProblem(
    400, 10, "(#10) This message is sent outside of allowed window.", WINDOW_SUBCODE
)
NO_USER = GraphProblem(400, 100, "No matching user found", NO_USER_SUBCODE)
ANOTHER_APP = GraphProblem(
    400, 10, "(#10) Another app is controlling this thread now.", HANDOVER_SUBCODE
)


@dataclass(frozen=True, slots=True)
class MediaFormat:
    extensions: frozenset[str]
    mimes: frozenset[str]
    limit: int


# What an Instagram message may carry, from Meta's "Upload Media for Instagram Messaging"
# page (updated April 2026): image png, jpeg, gif up to 8 MB; video mp4, ogg, avi, mov,
# webm, audio aac, m4a, wav, mp4 and file pdf up to 25 MB each.
MEDIA_FORMATS: dict[str, MediaFormat] = {
    "image": MediaFormat(
        frozenset({"png", "jpg", "jpeg", "gif"}),
        frozenset({"image/png", "image/jpeg", "image/gif"}),
        8 * MB,
    ),
    "video": MediaFormat(
        frozenset({"mp4", "ogg", "ogv", "avi", "mov", "webm"}),
        frozenset(
            {
                "video/mp4",
                "video/ogg",
                "video/x-msvideo",
                "video/avi",
                "video/quicktime",
                "video/webm",
            }
        ),
        25 * MB,
    ),
    "audio": MediaFormat(
        frozenset({"aac", "m4a", "wav", "mp4"}),
        frozenset(
            {"audio/aac", "audio/mp4", "audio/x-m4a", "audio/m4a", "audio/wav", "audio/x-wav"}
        ),
        25 * MB,
    ),
    "file": MediaFormat(frozenset({"pdf"}), frozenset({"application/pdf"}), 25 * MB),
}


def media_refused(why: str) -> GraphProblem:
    # Meta's exact code for a fetched attachment it will not take is unconfirmed; Messenger's
    # table names "(#100) Upload attachment failure" (subcode 2018047).
    return GraphProblem(400, 100, f"(#100) Upload attachment failure: {why}", 2018047)


def media_problem(kind: str, url: str, mime: str | None, size: int | None) -> GraphProblem | None:
    """An attachment Meta fetched from ``url``: its type (the served MIME type, else the
    URL's extension) and size against Meta's list."""
    rule = MEDIA_FORMATS.get(kind)
    if rule is None:
        return None
    extension = PurePosixPath(urlsplit(url).path).suffix.lower().lstrip(".")
    if mime is not None and mime.split(";")[0].strip().lower() not in rule.mimes:
        return media_refused(f"{mime} is not a supported {kind} format")
    if mime is None and extension and extension not in rule.extensions:
        return media_refused(f".{extension} is not a supported {kind} format")
    if size is not None and size > rule.limit:
        return GraphProblem(400, 100, "(#100) Attachment size exceeds allowable limit", 2018047)
    return None


def _check_quick_replies(replies: Any) -> GraphProblem | None:
    if not isinstance(replies, list) or not replies or len(replies) > MAX_QUICK_REPLIES:
        return invalid(f"quick_replies must be a list of 1 to {MAX_QUICK_REPLIES} items")
    for reply in replies:
        if not isinstance(reply, dict):
            return invalid("each quick reply must be an object")
        if reply.get("content_type", "text") != "text":
            continue  # user_phone_number / user_email carry no title
        title = reply.get("title")
        if not isinstance(title, str) or not title:
            return invalid("quick_replies[].title is required")
        if len(title) > QUICK_REPLY_TITLE:
            return invalid(f"quick_replies[].title must be at most {QUICK_REPLY_TITLE} characters")
        if not reply.get("payload"):
            return invalid("quick_replies[].payload is required")
    return None


def _check_template(payload: dict[str, Any]) -> GraphProblem | None:
    if payload.get("template_type") != "generic":
        return invalid("template_type must be generic")
    elements = payload.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= MAX_ELEMENTS:
        return invalid(f"a generic template has 1 to {MAX_ELEMENTS} elements")
    for element in elements:
        if not isinstance(element, dict) or not element.get("title"):
            return invalid("each element needs a title")
        buttons = element.get("buttons", [])
        if not isinstance(buttons, list) or len(buttons) > MAX_BUTTONS:
            return invalid(f"an element has at most {MAX_BUTTONS} buttons")
    return None


def _check_message(message: Any) -> GraphProblem | None:
    if not isinstance(message, dict):
        return invalid("param message must be an object")
    text, attachment = message.get("text"), message.get("attachment")
    if (text is None) == (attachment is None):
        return invalid("message needs exactly one of text or attachment")
    if text is not None:
        if not isinstance(text, str) or not text:
            return invalid("param message[text] must be a non-empty string")
        if len(text.encode("utf-8")) > TEXT_LIMIT_BYTES:
            return invalid(f"Length of param message[text] must be <= {TEXT_LIMIT_BYTES}")
    if attachment is not None:
        kind = attachment.get("type") if isinstance(attachment, dict) else None
        if kind not in ATTACHMENT_TYPES:
            return invalid("Invalid attachment type")
        payload = attachment.get("payload")
        if not isinstance(payload, dict):
            return invalid("param message[attachment][payload] must be an object")
        if kind in MEDIA_ATTACHMENTS and not (payload.get("url") or payload.get("attachment_id")):
            return invalid("an attachment needs payload.url or payload.attachment_id")
        url = payload.get("url")
        if kind in MEDIA_ATTACHMENTS and isinstance(url, str):
            problem = media_problem(kind, url, None, None)
            if problem is not None:
                return problem
        if kind == "template" and (problem := _check_template(payload)):
            return problem
    if "quick_replies" in message:
        return _check_quick_replies(message["quick_replies"])
    return None


def _check_sender_action(body: dict[str, Any]) -> GraphProblem | None:
    action = body["sender_action"]
    if action not in SENDER_ACTIONS:
        return invalid("param sender_action is not a supported action")
    if action in ("react", "unreact"):
        payload = body.get("payload")
        if not isinstance(payload, dict) or not payload.get("message_id"):
            return invalid("a reaction needs payload.message_id")
        if action == "react" and not payload.get("reaction"):
            return invalid("a reaction needs payload.reaction")
    return None


def check_send_body(body: Any) -> GraphProblem | None:
    """The body's shape, before anything about the recipient is known."""
    if not isinstance(body, dict):
        return invalid("the request body must be a JSON object")
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or ("id" in recipient) == ("comment_id" in recipient):
        return invalid("param recipient must have exactly one of id or comment_id")
    if ("message" in body) == ("sender_action" in body):
        return invalid("exactly one of message or sender_action is required")
    messaging_type, tag = body.get("messaging_type"), body.get("tag")
    if messaging_type is not None and messaging_type not in MESSAGING_TYPES:
        return invalid("param messaging_type must be RESPONSE, UPDATE or MESSAGE_TAG")
    if (messaging_type == "MESSAGE_TAG") != (tag is not None):
        return invalid("a tag goes with messaging_type MESSAGE_TAG, and only with it")
    if tag is not None and tag not in TAGS:
        return invalid("param tag must be HUMAN_AGENT")
    if "sender_action" in body:
        if "comment_id" in recipient:
            return invalid("a private reply carries a message, not a sender action")
        return _check_sender_action(body)
    return _check_message(body["message"])


def is_human_agent_tagged(body: dict[str, Any]) -> bool:
    return body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") == "HUMAN_AGENT"


def window_problem(age_ms: float, tagged: bool) -> GraphProblem | None:
    """The 24-hour rule: ``age_ms`` since the customer's last message (or the comment)."""
    if age_ms <= WINDOW_MS or (tagged and age_ms <= TAG_WINDOW_MS):
        return None
    return OUTSIDE_WINDOW
