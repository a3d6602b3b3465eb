"""How a stored file reaches the browser, once the view has checked who may see it.

Web processes are few and a file may be large, so in production they do not stream it:
- from a bucket, the answer is a redirect to a signed link that expires soon (the bucket
  itself stays private, and the check already happened here);
- from local disk behind nginx, the answer is an X-Accel-Redirect to an internal location
  that nginx serves;
- otherwise (development) the file is streamed as Django always has.
Each answer says the same about the file: its type, inline or as a download under a name,
and that only this browser may cache it.
"""

from urllib.parse import quote

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage
from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from django.utils.http import content_disposition_header

# Stored files never change: their path holds their sha256, a published key its hash too.
IMMUTABLE = "private, max-age=31536000, immutable"


def file_response(
    storage: Storage,
    name: str,
    *,
    content_type: str,
    as_attachment: bool = False,
    accel_location: str = "",
) -> HttpResponse:
    """Answer with the file `name` of `storage`, under its own base name: a signed redirect
    for a bucket, an X-Accel-Redirect to `accel_location` for local files when it is set,
    else the bytes."""
    disposition = content_disposition_header(as_attachment, name.rsplit("/", 1)[-1])
    if not isinstance(storage, FileSystemStorage):
        return _signed_redirect(storage, name, content_type=content_type, disposition=disposition)
    if accel_location:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = f"{accel_location.rstrip('/')}/{quote(name)}"
    else:
        response = FileResponse(storage.open(name, "rb"), content_type=content_type)
    response["Content-Disposition"] = disposition
    response["Cache-Control"] = IMMUTABLE
    return response


def _signed_redirect(
    storage: Storage, name: str, *, content_type: str, disposition: str
) -> HttpResponseRedirect:
    expire = settings.MEDIA_URL_EXPIRE
    url = storage.url(
        name,
        parameters={
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
            "ResponseCacheControl": IMMUTABLE,
        },
        expire=expire,
    )
    response = HttpResponseRedirect(url)
    # The browser may reuse the redirect while the link is still good, and no one else may.
    response["Cache-Control"] = f"private, max-age={max(expire // 2, 0)}"
    return response
