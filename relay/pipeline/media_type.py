"""How an Instagram attachment is shown in Genesys: a picture, a video, a file or a link.

A MIME type the CDN verified decides; when the URL could not be checked, the attachment
type the webhook declared does.
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
