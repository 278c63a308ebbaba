"""How an Instagram attachment is shown in Genesys: a picture, a video, a file or a link.

A MIME type the CDN verified decides; when the URL could not be checked, the attachment
type the webhook declared does. Genesys requires a ``mime`` on every attachment
(OpenContentAttachment), so an unchecked one carries the guess in ``GUESSED_MIMES``.
"""

from __future__ import annotations

from ..genesys.payloads import MediaType
from ..meta.media import MediaInfo

# What the webhook's attachment type means when the URL cannot be checked.
DECLARED_MEDIA_TYPES: dict[str, MediaType] = {
    "image": "Image",
    "sticker": "Image",
    "video": "Video",
    "audio": "Audio",
    "file": "File",
    # A story mention's URL is the story's image or video; Image is the common case and
    # Genesys still shows a link when the story has expired.
    "story_mention": "Image",
}


# The MIME type sent for an attachment the CDN did not vouch for (a share, a reel or post
# page, an expired story, an unreachable CDN), by how Genesys shows it. Instagram serves
# photos as JPEG, videos and voice clips as MP4; a link is a page to open.
GUESSED_MIMES: dict[MediaType, str] = {
    "Image": "image/jpeg",
    "Video": "video/mp4",
    "Audio": "audio/mp4",
    "File": "application/octet-stream",
    "Link": "text/html",
}


def media_type_for_mime(mime: str) -> MediaType:
    major = mime.split("/", 1)[0]
    if major == "image":
        return "Image"
    if major == "video":
        return "Video"
    if major == "audio":
        return "Audio"
    return "File"


def declared_media_type(declared: str) -> MediaType:
    return DECLARED_MEDIA_TYPES.get(declared, "Link")


def verified_media_type(info: MediaInfo | None) -> MediaType | None:
    """The type the CDN vouched for, or None when the URL was not (or could not be) checked."""
    if info is None or not info.verified or info.mime is None:
        return None
    return media_type_for_mime(info.mime)


def media_type(info: MediaInfo | None, declared: str) -> MediaType:
    return verified_media_type(info) or declared_media_type(declared)


def attachment_mime(info: MediaInfo | None, kind: MediaType) -> str:
    """The ``mime`` to send with an attachment shown as ``kind``: the CDN's when it vouched
    for one (and the attachment is not shown as a link), else the guess for ``kind``."""
    if kind != "Link" and info is not None and info.verified and info.mime:
        return info.mime
    return GUESSED_MIMES[kind]
